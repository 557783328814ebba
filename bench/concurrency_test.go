package bench

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
)

// Parameters of BenchmarkConcurrentCreate.
const (
	parallelCreates = 100
	cloneLimit      = 4 // proxmox.Config.CloneConcurrency, per node
	cloneDelay      = 200 * time.Millisecond
	configDelay     = 20 * time.Millisecond
	startDelay      = 100 * time.Millisecond
	createPoll      = 20 * time.Millisecond
)

// idealCreateWall is the wall time of the parallel creates if nothing but
// the simulated tasks took time: the clones run cloneLimit at a time, and
// the last batch still has to be configured and started.
func idealCreateWall() time.Duration {
	batches := (parallelCreates + cloneLimit - 1) / cloneLimit
	return time.Duration(batches)*cloneDelay + configDelay + startDelay
}

// BenchmarkConcurrentCreate starts 100 creates at once on a simulator with
// task delays (clone 200 ms, config 20 ms, start 100 ms) and injected lock
// contention: 10% of clone tasks end in PVE's lock timeout and 10% of config
// updates are refused with "VM is locked". It reports the share of creates
// that succeeded, VMID collisions (two creates given one VMID, or a VM and
// its record disagreeing), and the wall time against the ideal for the
// per-node clone limit of 4. The SDK's default retry backoff is used; the
// task poll interval is 20 ms.
//
// Two diagnostic variants are not part of the table: "nofaults" runs
// without the injected lock contention, and "idleconns64" gives the proxmox
// adapter an HTTP transport that keeps 64 idle connections instead of Go's
// default 2.
func BenchmarkConcurrentCreate(b *testing.B) {
	b.Run("default", func(b *testing.B) { runConcurrentCreate(b, nil, true) })
	b.Run("nofaults", func(b *testing.B) { runConcurrentCreate(b, nil, false) })
	b.Run("idleconns64", func(b *testing.B) {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		runConcurrentCreate(b, &http.Client{Transport: tr}, true)
	})
}

func runConcurrentCreate(b *testing.B, hc *http.Client, faults bool) {
	var res createRun
	for b.Loop() {
		b.StopTimer()
		w := newContendedWorld(b, hc, faults)
		b.StartTimer()
		res.add(createAll(w))
	}
	res.report(b)
}

// newContendedWorld is a world with task delays and, when faults is set,
// lock contention.
func newContendedWorld(b *testing.B, hc *http.Client, faults bool) *world {
	w := newWorld(b, worldOptions{
		sim: pvesim.Config{Seed: 8, TaskDelays: map[string]time.Duration{
			"qmclone": cloneDelay, "qmconfig": configDelay, "qmstart": startDelay}},
		cloneLimit: cloneLimit, poll: createPoll,
		retryMin: 250 * time.Millisecond, retryMax: 5 * time.Second, httpClient: hc,
	})
	if !faults {
		return w
	}
	w.sim.InjectFault(pvesim.Fault{FailTask: "qmclone", LockTimeout: true, Probability: 0.1})
	w.sim.InjectFault(pvesim.Fault{Method: "POST", Path: regexp.MustCompile(`/qemu/\d+/config$`),
		Status: 500, Message: "VM is locked (snapshot)", Probability: 0.1})
	return w
}

// createOutcome is the result of one round of parallel creates.
type createOutcome struct {
	wall       time.Duration
	ok         int
	collisions int
	// lockTimeouts counts clone tasks that ended in the injected lock
	// timeout, to show the contention was there.
	lockTimeouts int
	firstErr     error
}

// createAll runs the parallel creates and checks the result against the
// simulator.
func createAll(w *world) createOutcome {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	vmids := make([]int, parallelCreates)
	errs := make([]error, parallelCreates)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range parallelCreates {
		wg.Go(func() {
			sb, err := w.m.Create(ctx, agentlab.CreateRequest{Profile: "bench"})
			errs[i] = err
			if err == nil {
				vmids[i] = sb.VMID()
			}
		})
	}
	wg.Wait()
	out := createOutcome{wall: time.Since(start)}
	for _, err := range errs {
		if err == nil {
			out.ok++
		} else if out.firstErr == nil {
			out.firstErr = err
		}
	}
	out.collisions = collisions(ctx, w, vmids)
	for _, t := range w.sim.Tasks() {
		if t.Type == "qmclone" && strings.Contains(t.ExitStatus, "got timeout") {
			out.lockTimeouts++
		}
	}
	return out
}

// collisions counts VMIDs handed to more than one create, plus VMs and live
// records that do not pair up by VMID and name.
func collisions(ctx context.Context, w *world, vmids []int) int {
	n := 0
	seen := map[int]bool{}
	for _, id := range vmids {
		if id != 0 && seen[id] {
			n++
		}
		seen[id] = true
	}
	recs, err := w.m.List(ctx, agentlab.SandboxFilter{States: liveStates()})
	if err != nil {
		return parallelCreates
	}
	names := map[int]string{}
	for _, r := range recs {
		names[r.VMID] = r.Name
	}
	vms := 0
	for _, vm := range w.sim.VMs() {
		if vm.Template {
			continue
		}
		vms++
		if names[vm.VMID] != vm.Name {
			n++
		}
	}
	if vms != len(recs) {
		n += abs(vms - len(recs))
	}
	return n
}

// liveStates are all states but DESTROYED.
func liveStates() []agentlab.State {
	out := make([]agentlab.State, 0, len(agentlab.AllStates))
	for _, s := range agentlab.AllStates {
		if s != agentlab.StateDestroyed {
			out = append(out, s)
		}
	}
	return out
}

func abs(n int) int { return max(n, -n) }

// createRun accumulates outcomes over iterations.
type createRun struct {
	rounds, ok, collisions, lockTimeouts int
	wall                                 time.Duration
	firstErr                             error
}

func (r *createRun) add(o createOutcome) {
	r.rounds++
	r.ok += o.ok
	r.collisions += o.collisions
	r.lockTimeouts += o.lockTimeouts
	r.wall += o.wall
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
}

func (r *createRun) report(b *testing.B) {
	if r.firstErr != nil {
		b.Logf("first failed create: %v", r.firstErr)
	}
	wall := r.wall / time.Duration(r.rounds)
	b.ReportMetric(100*float64(r.ok)/float64(r.rounds*parallelCreates), "success-%")
	b.ReportMetric(float64(r.collisions)/float64(r.rounds), "collisions")
	b.ReportMetric(float64(r.lockTimeouts)/float64(r.rounds), "clone-lock-timeouts")
	b.ReportMetric(wall.Seconds(), "wall-s")
	b.ReportMetric(idealCreateWall().Seconds(), "ideal-s")
	b.ReportMetric(wall.Seconds()/idealCreateWall().Seconds(), "wall/ideal")
}
