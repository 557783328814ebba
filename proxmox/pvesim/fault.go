package pvesim

import (
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// Fault describes one injected failure. Which fields are set decides what it
// does; a Fault with no effect never fires.
//
// Request faults (Status, Latency, DropConn, DropResponse) apply to API
// requests matching Method, Path and VMID, in this order: Latency delays the
// request; DropConn closes the connection before the request is handled;
// Status answers with that status and Message without handling the request;
// DropResponse handles the request and then closes the connection without
// answering (the caller cannot know whether it happened).
//
// Task faults (FailTask or LockTimeout) apply to tasks created by matching
// requests: the task is accepted (a UPID is returned) and then fails with
// Message, or with PVE's lock timeout text when LockTimeout is set.
//
// NextIDTaken makes GET /cluster/nextid (without a vmid parameter) return a
// VMID that already exists, as when another client won the race.
//
// Count and Probability gate every kind: each match fires with Probability
// (0 means always), drawn from a generator seeded with Config.Seed and the
// fault's sequence number, and the fault retires after firing Count times
// (0 means never).
type Fault struct {
	// Method matches the HTTP method; "" matches any.
	Method string
	// Path matches the API path without the "/api2/json" prefix, for
	// example regexp.MustCompile(`/qemu/\d+/clone$`); nil matches any.
	Path *regexp.Regexp
	// VMID matches requests whose path addresses this VM, and for clones
	// the requested newid; 0 matches any.
	VMID int

	// Status is the HTTP status to answer with (500, 503, 595, ...).
	Status int
	// Message is the error text; "" means the status text (request faults)
	// or "simulated task failure" (task faults).
	Message string
	// Latency delays matching requests (before any other effect).
	Latency time.Duration
	// DropConn closes the connection before the request is handled.
	DropConn bool
	// DropResponse handles the request, then closes the connection without
	// sending the response.
	DropResponse bool

	// FailTask is the task type to fail ("qmclone", "qmstart", ...); "*"
	// fails any task type.
	FailTask string
	// LockTimeout makes matching tasks (any type unless FailTask is set)
	// fail with "can't lock file '/var/lock/qemu-server/lock-<id>.conf' -
	// got timeout".
	LockTimeout bool
	// ApplyAnyway makes a failed task still apply its change (the VM
	// starts, the clone exists), as PVE tasks sometimes do; the task
	// reports the failure all the same.
	ApplyAnyway bool

	// NextIDTaken makes /cluster/nextid return a VMID that is in use.
	NextIDTaken bool

	// Count is how many times the fault fires before it retires; 0 means
	// unlimited.
	Count int
	// Probability is the chance that a match fires, in (0, 1]; 0 means 1.
	Probability float64
}

// InjectFault activates f until remove is called or f has fired Count
// times. Faults are checked in injection order; the first request fault that
// fires wins. remove is idempotent and safe for concurrent use.
func (s *Server) InjectFault(f Fault) (remove func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultN++
	fs := &faultState{f: f, rng: rand.New(rand.NewPCG(uint64(s.cfg.Seed), s.faultN))}
	s.faults = append(s.faults, fs)
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		fs.retired = true
	}
}

type faultState struct {
	f       Fault
	rng     *rand.Rand
	fired   int
	retired bool
}

func (f Fault) isRequestFault() bool {
	return f.Status != 0 || f.Latency > 0 || f.DropConn || f.DropResponse
}

func (f Fault) isTaskFault() bool { return f.FailTask != "" || f.LockTimeout }

// fire decides, with s.mu held, whether a matching fault fires now.
func (fs *faultState) fire() bool {
	if fs.retired {
		return false
	}
	if p := fs.f.Probability; p > 0 && p < 1 && fs.rng.Float64() >= p {
		return false
	}
	fs.fired++
	if fs.f.Count > 0 && fs.fired >= fs.f.Count {
		fs.retired = true
	}
	return true
}

func (fs *faultState) matchReq(rq *request, vmids []int) bool {
	f := fs.f
	if f.Method != "" && f.Method != rq.method {
		return false
	}
	if f.Path != nil && !f.Path.MatchString(rq.path) {
		return false
	}
	return f.VMID == 0 || slices.Contains(vmids, f.VMID)
}

// requestFault returns the first request fault that fires for a request.
func (s *Server) requestFault(rq *request) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fs := range s.faults {
		if fs.f.isRequestFault() && fs.matchReq(rq, rq.vmids) && fs.fire() {
			return fs.f, true
		}
	}
	return Fault{}, false
}

// taskFaultLocked returns the failure text of the first task fault that
// fires for a task of type typ, with s.mu held. vmids are the VMIDs the
// task concerns; the last names the lock file of a lock timeout.
func (s *Server) taskFaultLocked(rq *request, typ string, vmids []int) (Fault, bool) {
	for _, fs := range s.faults {
		f := fs.f
		if !f.isTaskFault() || !fs.matchReq(rq, vmids) {
			continue
		}
		if f.FailTask != "" && f.FailTask != "*" && f.FailTask != typ {
			continue
		}
		if !fs.fire() {
			continue
		}
		f.Message = faultTaskMessage(f, vmids[len(vmids)-1])
		return f, true
	}
	return Fault{}, false
}

func faultTaskMessage(f Fault, vmid int) string {
	switch {
	case f.LockTimeout:
		return lockTimeoutMsg(vmid)
	case f.Message != "":
		return f.Message
	}
	return "simulated task failure"
}

func lockTimeoutMsg(vmid int) string {
	return "can't lock file '/var/lock/qemu-server/lock-" + strconv.Itoa(vmid) + ".conf' - got timeout"
}

// nextIDFaultLocked reports whether a NextIDTaken fault fires, with s.mu held.
func (s *Server) nextIDFaultLocked(rq *request) bool {
	for _, fs := range s.faults {
		if fs.f.NextIDTaken && fs.matchReq(rq, nil) && fs.fire() {
			return true
		}
	}
	return false
}

func faultMessage(f Fault) string {
	if f.Message != "" {
		return f.Message
	}
	if t := http.StatusText(f.Status); t != "" {
		return t
	}
	return "simulated failure"
}
