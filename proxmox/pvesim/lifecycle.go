package pvesim

import (
	"fmt"
	"net/http"
	"time"
)

func (s *Server) postStatus(rq *request) (any, *apiError) {
	v, aerr := s.vmAt(rq)
	if aerr != nil {
		return nil, aerr
	}
	skip, aerr := rq.skipLock()
	if aerr != nil {
		return nil, aerr
	}
	switch rq.vars["action"] {
	case "start":
		return s.startVM(rq, v, skip), nil
	case "stop":
		return s.stopVM(rq, v, skip), nil
	case "shutdown":
		return s.shutdownVM(rq, v, skip)
	case "reboot", "reset":
		return s.rebootVM(rq, v, skip)
	case "suspend":
		return s.suspendVM(rq, v, skip)
	case "resume":
		return s.resumeVM(rq, v, skip)
	}
	return nil, errf(http.StatusNotImplemented, "Method '%s %s' not implemented", rq.method, rq.path)
}

func notRunning(v *vm) *apiError {
	return fail("VM %d not running", v.id)
}

func (s *Server) startVM(rq *request, v *vm, skip bool) string {
	return s.startTask(rq, taskSpec{
		typ: "qmstart", id: vmidStr(v.id), node: v.node, flock: v,
		check: func(*task) string {
			switch {
			case v.isTemplate():
				return "you can't start a vm if it's a template"
			case v.status() == "running":
				return fmt.Sprintf("VM %d already running", v.id)
			case v.run == stHibernated:
				return ""
			}
			return lockMsg(v, skip)
		},
		apply: func(t *task) (func(), string) {
			resumed := v.run == stHibernated
			if resumed {
				t.logf("resuming VM %d from saved state", v.id)
			}
			return s.powerOn(v, resumed), ""
		},
	})
}

// powerOn marks v running and returns the guest start. A VM restored from
// saved RAM has its agent up at once.
func (s *Server) powerOn(v *vm, fromRAM bool) func() {
	v.run = stRunning
	v.started = time.Now()
	if fromRAM {
		v.started = v.started.Add(-s.cfg.AgentDelay)
		delete(v.conf, "vmstate")
		if v.conf["lock"] == "suspended" {
			delete(v.conf, "lock")
		}
	}
	return s.guestStartFn(v)
}

// powerOff marks v stopped and returns the guest stop.
func (s *Server) powerOff(v *vm) func() {
	v.run = stStopped
	v.started = time.Time{}
	return s.guestStopFn(v)
}

func (s *Server) stopVM(rq *request, v *vm, skip bool) string {
	return s.startTask(rq, taskSpec{
		typ: "qmstop", id: vmidStr(v.id), node: v.node, flock: v,
		check: func(*task) string { return lockMsg(v, skip) },
		apply: func(t *task) (func(), string) {
			if v.status() != "running" {
				return nil, ""
			}
			return s.powerOff(v), ""
		},
	})
}

func (s *Server) shutdownVM(rq *request, v *vm, skip bool) (any, *apiError) {
	force, aerr := rq.boolParam("forceStop")
	if aerr != nil {
		return nil, aerr
	}
	timeout, aerr := rq.intParam("timeout", 60)
	if aerr != nil {
		return nil, aerr
	}
	if v.run == stPaused && !force {
		return nil, fail("VM is paused - cannot shutdown")
	}
	sp := taskSpec{
		typ: "qmshutdown", id: vmidStr(v.id), node: v.node, flock: v,
		check: func(*task) string { return lockMsg(v, skip) },
	}
	limit := time.Duration(timeout) * time.Second
	timedOut := s.taskDelay("qmshutdown") > limit
	if timedOut {
		sp.delay, sp.fixedDelay = limit, true
	}
	sp.apply = func(t *task) (func(), string) {
		if v.status() != "running" {
			return nil, ""
		}
		if timedOut && !force {
			return nil, "VM quit/powerdown failed - got timeout"
		}
		if timedOut {
			t.logf("VM still running - terminating now with SIGTERM")
		}
		return s.powerOff(v), ""
	}
	return s.startTask(rq, sp), nil
}

func (s *Server) rebootVM(rq *request, v *vm, skip bool) (any, *apiError) {
	action := rq.vars["action"]
	if v.status() != "running" {
		return nil, notRunning(v)
	}
	if v.run == stPaused && action == "reboot" {
		return nil, fail("VM is paused - cannot shutdown")
	}
	return s.startTask(rq, taskSpec{
		typ: "qm" + action, id: vmidStr(v.id), node: v.node, flock: v,
		check: func(*task) string { return lockMsg(v, skip) },
		apply: func(t *task) (func(), string) {
			if v.status() != "running" {
				return nil, ""
			}
			stop := s.powerOff(v)
			start := s.powerOn(v, false)
			return chain(stop, start), ""
		},
	}), nil
}

func (s *Server) suspendVM(rq *request, v *vm, skip bool) (any, *apiError) {
	todisk, aerr := rq.boolParam("todisk")
	if aerr != nil {
		return nil, aerr
	}
	if v.status() != "running" {
		return nil, notRunning(v)
	}
	if !todisk {
		return s.startTask(rq, taskSpec{
			typ: "qmpause", id: vmidStr(v.id), node: v.node, flock: v,
			check: func(*task) string { return lockMsg(v, skip) },
			apply: func(t *task) (func(), string) {
				if v.run != stRunning {
					return nil, ""
				}
				v.run = stPaused
				return s.guestPauseFn(v), ""
			},
		}), nil
	}
	return s.startTask(rq, taskSpec{
		typ: "qmsuspend", id: vmidStr(v.id), node: v.node, flock: v, lock: "suspending",
		check: func(*task) string { return lockMsg(v, skip) },
		apply: func(t *task) (func(), string) {
			t.logf("suspend vm to disk")
			stop := s.powerOff(v)
			v.run = stHibernated
			v.conf["lock"] = "suspended"
			v.conf["vmstate"] = fmt.Sprintf("local-lvm:vm-%d-state-suspend-%s", v.id,
				time.Now().Format("2006-01-02"))
			return stop, ""
		},
	}), nil
}

func (s *Server) resumeVM(rq *request, v *vm, skip bool) (any, *apiError) {
	if v.run == stStopped {
		return nil, notRunning(v)
	}
	return s.startTask(rq, taskSpec{
		typ: "qmresume", id: vmidStr(v.id), node: v.node, flock: v,
		check: func(*task) string {
			if v.run == stHibernated {
				return ""
			}
			return lockMsg(v, skip)
		},
		apply: func(t *task) (func(), string) {
			switch v.run {
			case stHibernated:
				return s.powerOn(v, true), ""
			case stPaused:
				v.run = stRunning
			}
			return nil, ""
		},
	}), nil
}

// chain runs fs in order, skipping nils.
func chain(fs ...func()) func() {
	return func() {
		for _, f := range fs {
			if f != nil {
				f()
			}
		}
	}
}
