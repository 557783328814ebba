package pvesim

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// errInterrupted is the exit status of a task stopped by DELETE or Close.
const errInterrupted = "received interrupt"

// taskSpec describes a worker task. check and apply run with Server.mu held.
type taskSpec struct {
	typ  string
	id   string // object id in the UPID (the VMID; for clones the source)
	node string
	// flock is the VM whose lock file the task takes; nil for none. A busy
	// lock file makes the task wait up to Config.LockWait. Tasks without a
	// config lock hold the lock file until they finish.
	flock *vm
	// lock is the config lock set on lockVM while the task runs.
	lock   string
	lockVM *vm
	// faultVMIDs are the VMIDs task faults match besides the path's.
	faultVMIDs []int
	// check runs when the task starts; a non-empty result fails the task.
	check func(t *task) string
	// apply runs when the delay has passed; it returns work for after the
	// lock is released and an error text ("" for success).
	apply func(t *task) (after func(), errText string)
	// cleanup runs when the task fails, before the failure is recorded.
	cleanup func()
	// delay replaces the configured delay of the type when fixedDelay is set.
	delay      time.Duration
	fixedDelay bool
}

func (s *Server) taskDelay(typ string) time.Duration {
	if d, ok := s.cfg.TaskDelays[typ]; ok {
		return d
	}
	return s.cfg.DefaultTaskDelay
}

// newTask registers a running task, with s.mu held.
func (s *Server) newTask(rq *request, typ, id, node string) *task {
	c := s.c
	c.pid++
	now := time.Now()
	t := &task{
		node: node, typ: typ, id: id, user: rq.user, tokenID: rq.tokenID,
		pid: c.pid, pstart: uint32(now.Sub(c.booted)/(10*time.Millisecond)) + 1000,
		start: now, running: true, stop: make(chan struct{}),
	}
	t.upid = fmt.Sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:%s:",
		node, t.pid, t.pstart, now.Unix(), typ, id, rq.authID())
	c.tasks = append(c.tasks, t)
	c.byUPID[t.upid] = t
	return t
}

// startTask creates and runs a task, with s.mu held, and returns its UPID.
// The start-time check and config lock happen synchronously when the VM's
// lock file is free, so a caller sees the lock as soon as it has the UPID.
func (s *Server) startTask(rq *request, sp taskSpec) string {
	if sp.lockVM == nil {
		sp.lockVM = sp.flock
	}
	if !sp.fixedDelay {
		sp.delay = s.taskDelay(sp.typ)
	}
	t := s.newTask(rq, sp.typ, sp.id, sp.node)
	fault, faulted := s.taskFaultFor(rq, sp)
	if s.closed {
		s.finishTask(t, sp, errInterrupted)
		return t.upid
	}
	run := &taskRun{t: t, sp: sp, faulted: faulted, fault: fault}
	if sp.flock == nil || tryLock(sp.flock) {
		run.haveFlock = sp.flock != nil
		if !s.beginTask(run) {
			return t.upid
		}
	}
	s.wg.Go(func() { s.runTask(run) })
	return t.upid
}

type taskRun struct {
	t         *task
	sp        taskSpec
	faulted   bool
	fault     Fault
	haveFlock bool
	begun     bool
}

func (s *Server) taskFaultFor(rq *request, sp taskSpec) (Fault, bool) {
	ids := append(slices.Clone(rq.vmids), sp.faultVMIDs...)
	f, ok := s.taskFaultLocked(rq, sp.typ, ids)
	if ok && sp.typ == "qmclone" {
		f.Message = "clone failed: " + f.Message
	}
	return f, ok
}

func tryLock(v *vm) bool {
	select {
	case v.flock <- struct{}{}:
		return true
	default:
		return false
	}
}

// beginTask runs the start-time check and sets the config lock, with s.mu
// held. It reports whether the task goes on; a failed check finishes it.
func (s *Server) beginTask(run *taskRun) bool {
	run.begun = true
	if run.faulted && !run.fault.ApplyAnyway {
		return true
	}
	if run.sp.check != nil {
		if msg := run.sp.check(run.t); msg != "" {
			s.finishTask(run.t, run.sp, msg)
			s.releaseFlock(run)
			return false
		}
	}
	if run.sp.lock != "" && run.sp.lockVM != nil {
		run.sp.lockVM.conf["lock"] = run.sp.lock
		// Like PVE, a task that sets a config lock holds the lock file only
		// while it sets the lock; the config lock guards the rest.
		s.releaseFlock(run)
	}
	return true
}

func (s *Server) releaseFlock(run *taskRun) {
	if run.haveFlock {
		run.haveFlock = false
		<-run.sp.flock.flock
	}
}

// runTask is the task goroutine: wait for the lock file, wait the delay,
// apply the change.
func (s *Server) runTask(run *taskRun) {
	if !run.begun && !s.waitFlock(run) {
		return
	}
	if !s.sleep(run.t, run.sp.delay) {
		s.mu.Lock()
		s.clearTaskLock(run.sp)
		s.finishTask(run.t, run.sp, errInterrupted)
		s.mu.Unlock()
		s.releaseFlock(run)
		return
	}
	s.mu.Lock()
	after, msg := s.applyTask(run)
	s.mu.Unlock()
	if after != nil {
		after()
	}
	s.mu.Lock()
	s.clearTaskLock(run.sp)
	s.finishTask(run.t, run.sp, msg)
	s.mu.Unlock()
	s.releaseFlock(run)
	s.log.Debug("task finished", "upid", run.t.upid, "exit_status", run.t.exit)
}

// applyTask applies the task's change, with s.mu held, and returns the
// work to do outside the lock and the error text ("" for success).
func (s *Server) applyTask(run *taskRun) (func(), string) {
	if run.faulted && !run.fault.ApplyAnyway {
		return nil, run.fault.Message
	}
	var after func()
	msg := ""
	if run.sp.apply != nil {
		after, msg = run.sp.apply(run.t)
	}
	if run.faulted {
		run.sp.cleanup = nil // the change stays despite the failure
		return after, run.fault.Message
	}
	return after, msg
}

func (s *Server) clearTaskLock(sp taskSpec) {
	if sp.lock != "" && sp.lockVM != nil && sp.lockVM.conf["lock"] == sp.lock {
		delete(sp.lockVM.conf, "lock")
	}
}

// waitFlock waits for the VM's lock file, then begins the task. It reports
// whether the task goes on.
func (s *Server) waitFlock(run *taskRun) bool {
	timer := time.NewTimer(s.cfg.LockWait)
	defer timer.Stop()
	msg := ""
	select {
	case run.sp.flock.flock <- struct{}{}:
		run.haveFlock = true
	case <-timer.C:
		msg = lockTimeoutMsg(run.sp.flock.id)
	case <-s.ctx.Done():
		msg = errInterrupted
	case <-run.t.stop:
		msg = errInterrupted
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if msg != "" {
		s.finishTask(run.t, run.sp, msg)
		return false
	}
	return s.beginTask(run)
}

// sleep waits d, or until the task is stopped or the server closes; it
// reports whether d elapsed.
func (s *Server) sleep(t *task, d time.Duration) bool {
	if d <= 0 {
		return s.ctx.Err() == nil && !t.isStopped()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-s.ctx.Done():
		return false
	case <-t.stop:
		return false
	}
}

// finishTask records the end of a task, with s.mu held; msg "" is success.
func (s *Server) finishTask(t *task, sp taskSpec, msg string) {
	if msg != "" && sp.cleanup != nil {
		sp.cleanup()
	}
	t.running = false
	t.end = time.Now()
	if msg == "" {
		t.exit = "OK"
		t.logf("TASK OK")
		return
	}
	t.exit = strings.ReplaceAll(strings.TrimSpace(msg), "\n", " ")
	t.logf("TASK ERROR: %s", t.exit)
}

func (t *task) statusJSON() map[string]any {
	m := map[string]any{
		"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart,
		"starttime": t.start.Unix(), "type": t.typ, "id": t.id, "user": t.user,
		"status": "running",
	}
	if t.tokenID != "" {
		m["tokenid"] = t.tokenID
	}
	if !t.running {
		m["status"] = "stopped"
		m["exitstatus"] = t.exit
	}
	return m
}

func (t *task) listJSON() map[string]any {
	m := map[string]any{
		"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart,
		"starttime": t.start.Unix(), "type": t.typ, "id": t.id, "user": t.user,
		"status": "RUNNING",
	}
	if t.tokenID != "" {
		m["tokenid"] = t.tokenID
	}
	if !t.running {
		m["status"] = t.exit
		m["endtime"] = t.end.Unix()
	}
	return m
}

// taskAt finds the task named in the path.
func (s *Server) taskAt(rq *request) (*task, *apiError) {
	upid := rq.vars["upid"]
	if !strings.HasPrefix(upid, "UPID:") || len(strings.Split(upid, ":")) != 9 {
		return nil, paramErr1("upid", "unable to parse worker upid '"+upid+"'")
	}
	t := s.c.byUPID[upid]
	if t == nil || t.node != rq.vars["node"] {
		return nil, paramErr1("upid", "no such task")
	}
	return t, nil
}

func (s *Server) getTaskStatus(rq *request) (any, *apiError) {
	t, aerr := s.taskAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	return t.statusJSON(), nil
}

func (s *Server) getTaskLog(rq *request) (any, *apiError) {
	t, aerr := s.taskAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	start, aerr := rq.intParam("start", 0)
	if aerr != nil {
		return nil, aerr
	}
	limit, aerr := rq.intParam("limit", 50)
	if aerr != nil {
		return nil, aerr
	}
	out := []map[string]any{}
	for i := start; i < len(t.log) && len(out) < limit; i++ {
		out = append(out, map[string]any{"n": i + 1, "t": t.log[i]})
	}
	return out, nil
}

// deleteTask stops a running task: it ends with "received interrupt"
// without applying its change. Stopping a finished task is a no-op.
func (s *Server) deleteTask(rq *request) (any, *apiError) {
	t, aerr := s.taskAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	if t.running && !t.isStopped() {
		close(t.stop)
	}
	return nil, nil
}

func (s *Server) getNodeTasks(rq *request) (any, *apiError) {
	return s.filterTasks(rq, rq.vars["node"])
}

func (s *Server) getClusterTasks(rq *request) (any, *apiError) {
	return s.filterTasks(rq, "")
}

func (s *Server) filterTasks(rq *request, node string) (any, *apiError) {
	limit, aerr := rq.intParam("limit", 50)
	if aerr != nil {
		return nil, aerr
	}
	start, aerr := rq.intParam("start", 0)
	if aerr != nil {
		return nil, aerr
	}
	keep := taskFilter(rq, node)
	list := slices.Clone(s.c.tasks)
	slices.Reverse(list)
	out := []map[string]any{}
	for _, t := range list {
		if !keep(t) {
			continue
		}
		if start > 0 {
			start--
			continue
		}
		if len(out) >= limit {
			break
		}
		out = append(out, t.listJSON())
	}
	return out, nil
}

func taskFilter(rq *request, node string) func(*task) bool {
	vmid, typ, src := rq.str("vmid"), rq.str("typefilter"), rq.str("source")
	onlyErr, _ := parseBool(rq.str("errors"))
	user, status := rq.str("userfilter"), rq.str("statusfilter")
	return func(t *task) bool {
		switch {
		case node != "" && t.node != node,
			vmid != "" && t.id != vmid,
			typ != "" && t.typ != typ,
			src == "active" && !t.running,
			(src == "" || src == "archive") && t.running,
			onlyErr && (t.running || t.exit == "OK"),
			user != "" && !strings.Contains(t.user, user),
			status != "" && !statusMatches(t, status):
			return false
		}
		return true
	}
}

func statusMatches(t *task, filter string) bool {
	state := "ok"
	switch {
	case t.running:
		state = "running"
	case strings.HasPrefix(t.exit, "WARNINGS"):
		state = "warning"
	case t.exit != "OK":
		state = "error"
	}
	return slices.Contains(strings.Split(filter, ","), state)
}

// vmidStr formats a VMID for UPIDs.
func vmidStr(id int) string { return strconv.Itoa(id) }
