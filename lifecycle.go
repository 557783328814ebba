package agentlab

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// opResult is what an operation's step reports: the state to move to and
// any further change to the record.
type opResult struct {
	to     State
	mutate func(*SandboxRecord)
	events []Event // stored with the final transition, before the done event
}

// opSpec describes one lifecycle operation for run.
type opSpec struct {
	op          Op
	noop        []State // states in which the operation does nothing
	done, fail  string  // event kinds
	ignoreBusy  bool    // destroy takes over an unfinished operation
	dropGuest   bool    // close pooled guest connections first
	step        func(ctx context.Context, rec SandboxRecord) (opResult, error)
	description string // verb phrase for errors, e.g. "pause sandbox"
}

// run performs an operation: it checks the state, records the intent,
// calls the step, and moves the sandbox to the step's state, emitting
// the completed or failed event with the duration.
func (s *Sandbox) run(ctx context.Context, spec opSpec) (SandboxRecord, error) {
	m := s.m
	if err := m.checkOpen(); err != nil {
		return SandboxRecord{}, err
	}
	rec, noop, err := s.begin(ctx, spec)
	if err != nil || noop {
		return rec, wrapOp(spec, s.vmid, err)
	}
	if spec.dropGuest && m.guest != nil {
		m.guest.Drop(s.vmid)
	}
	start := m.now()
	res, err := spec.step(ctx, rec)
	dur := m.now().Sub(start).Milliseconds()
	if err != nil {
		s.fail(ctx, err)
		if spec.fail != "" {
			m.emit(ctx, Event{Kind: spec.fail, VMID: s.vmid, Message: err.Error(),
				Data: map[string]any{"duration_ms": dur, "error": err.Error()}})
		}
		return s.Record(), wrapOp(spec, s.vmid, err)
	}
	done := res.events
	if spec.done != "" {
		done = append(done, Event{Kind: spec.done, VMID: s.vmid,
			Data: map[string]any{"duration_ms": dur}})
	}
	rec, err = m.transition(ctx, s, res.to, func(r *SandboxRecord) {
		r.Op, r.OpStarted, r.LastError = "", time.Time{}, ""
		if res.mutate != nil {
			res.mutate(r)
		}
	}, done...)
	return rec, wrapOp(spec, s.vmid, err)
}

func wrapOp(spec opSpec, vmid int, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %d: %w", spec.description, vmid, err)
}

// begin re-reads the record, checks the operation against the state table
// and records it as in flight. In a no-op state it returns the record
// unchanged.
func (s *Sandbox) begin(ctx context.Context, spec opSpec) (SandboxRecord, bool, error) {
	now := s.m.now()
	noop := false
	rec, err := s.update(ctx, func(r *SandboxRecord) error {
		noop = false
		if slices.Contains(spec.noop, r.State) {
			noop = true
			return errNoop
		}
		if err := checkOp(spec.op, r.VMID, r.State); err != nil {
			return err
		}
		if r.Op == opAbandoned && !spec.ignoreBusy {
			return fmt.Errorf("%w: cannot %s: provisioning of sandbox %d failed and "+
				"its vm awaits destroy", ErrInvalidState, spec.op.verb(), r.VMID)
		}
		if r.Op != "" && !spec.ignoreBusy && now.Sub(r.OpStarted) < s.m.cfg.StaleOpAfter {
			return fmt.Errorf("%w: %s in progress since %s", ErrBusy, r.Op,
				r.OpStarted.Format(time.RFC3339))
		}
		if r.Op != opAbandoned { // only a destroy gets here; a failed one keeps the mark
			r.Op, r.OpStarted = string(spec.op), now
		}
		return nil
	})
	switch {
	case errors.Is(err, errReplaced) && spec.op == OpDestroy:
		return s.gone(), true, nil
	case errors.Is(err, errReplaced):
		return s.gone(), false, goneError(spec.op, s.vmid)
	case noop:
		rec, err = s.Refresh(ctx)
	case err == nil:
		s.set(rec)
	}
	return rec, noop, err
}

var errNoop = errors.New("no-op")

// fail clears the in-flight operation and records the error. The state is
// left as it was; reconcile corrects it if the VM moved. An abandoned
// provisioning stays marked.
func (s *Sandbox) fail(ctx context.Context, cause error) {
	ctx = context.WithoutCancel(ctx)
	rec, err := s.update(ctx, func(r *SandboxRecord) error {
		if r.Op != opAbandoned {
			r.Op, r.OpStarted = "", time.Time{}
		}
		r.LastError = cause.Error()
		return nil
	})
	if err == nil {
		s.set(rec)
	}
}

// Pause suspends the VM, keeping its memory, and moves the sandbox to
// SUSPENDED. Pausing a SUSPENDED sandbox does nothing.
func (s *Sandbox) Pause(ctx context.Context) error {
	_, err := s.run(ctx, opSpec{
		op: OpPause, noop: []State{StateSuspended}, description: "pause sandbox",
		done: EventSandboxPauseDone, fail: EventSandboxPauseFailed, dropGuest: true,
		step: func(ctx context.Context, _ SandboxRecord) (opResult, error) {
			return opResult{to: StateSuspended}, s.m.hv.Suspend(ctx, s.vmid)
		},
	})
	return err
}

// Resume continues a SUSPENDED sandbox and moves it to READY, or to RUNNING
// when a job is bound to it. Resuming a READY or RUNNING sandbox does
// nothing.
func (s *Sandbox) Resume(ctx context.Context) error {
	_, err := s.run(ctx, opSpec{
		op: OpResume, noop: []State{StateReady, StateRunning}, description: "resume sandbox",
		done: EventSandboxResumeDone, fail: EventSandboxResumeFailed,
		step: func(ctx context.Context, rec SandboxRecord) (opResult, error) {
			if err := s.m.hv.Resume(ctx, s.vmid); err != nil {
				return opResult{}, err
			}
			to := StateReady
			if rec.JobID != "" {
				to = StateRunning
			}
			return opResult{to: to, mutate: s.m.touch}, nil
		},
	})
	return err
}

// Stop shuts the VM down gracefully within the configured StopTimeout, then
// powers it off, and moves the sandbox to STOPPED. It works from every
// state in which the VM may run, COMPLETED, FAILED and TIMEOUT included.
// Stopping a STOPPED sandbox does nothing.
func (s *Sandbox) Stop(ctx context.Context) error {
	_, err := s.run(ctx, opSpec{
		op: OpStop, noop: []State{StateStopped}, description: "stop sandbox",
		done: EventSandboxStopDone, fail: EventSandboxStopFailed, dropGuest: true,
		step: func(ctx context.Context, _ SandboxRecord) (opResult, error) {
			err := s.m.hv.Stop(ctx, s.vmid, StopOptions{Timeout: s.m.cfg.StopTimeout})
			return opResult{to: StateStopped}, err
		},
	})
	return err
}

// Start powers the VM on, waits for the guest as Create does, and moves the
// sandbox to RUNNING. It works from STOPPED and also from COMPLETED, FAILED
// and TIMEOUT (a sandbox marked FAILED after a crash restarts when its VM
// still exists). Starting a READY or RUNNING sandbox does nothing.
func (s *Sandbox) Start(ctx context.Context) error {
	_, err := s.run(ctx, opSpec{
		op: OpStart, noop: []State{StateReady, StateRunning}, description: "start sandbox",
		done: EventSandboxStartDone, fail: EventSandboxStartFailed, dropGuest: true,
		step: s.startStep,
	})
	return err
}

func (s *Sandbox) startStep(ctx context.Context, _ SandboxRecord) (opResult, error) {
	m := s.m
	if _, err := m.hv.Status(ctx, s.vmid); err != nil {
		return opResult{}, err
	}
	if _, err := m.transition(ctx, s, StateBooting, nil); err != nil {
		return opResult{}, err
	}
	ready, err := s.boot(ctx)
	if err != nil {
		s.settleFailedStart(ctx)
		return opResult{}, err
	}
	return opResult{to: StateRunning, mutate: m.touch, events: ready}, nil
}

// boot powers the VM on and waits for its guest.
func (s *Sandbox) boot(ctx context.Context) ([]Event, error) {
	if err := s.m.hv.Start(ctx, s.vmid); err != nil {
		return nil, err
	}
	return s.m.awaitGuest(ctx, s)
}

// settleFailedStart moves a sandbox whose start failed out of BOOTING, which
// reconcile would otherwise resolve: to STOPPED when its VM is off, else to
// FAILED (the guest did not become usable; Start may be tried again).
func (s *Sandbox) settleFailedStart(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	to := StateFailed
	if vm, err := s.m.hv.Status(ctx, s.vmid); err == nil && vm.Power == PowerStopped {
		to = StateStopped
	}
	if _, err := s.m.transition(ctx, s, to, nil); err != nil {
		s.m.log.Debug("settle failed start", "vmid", s.vmid, "err", err)
	}
}

// touch records activity now.
func (m *Manager) touch(r *SandboxRecord) { r.LastActivity = m.now() }

// Destroy powers off and deletes the VM and moves the sandbox to DESTROYED.
// It works from every state, takes over an unfinished operation, and is
// idempotent: destroying a destroyed sandbox (or one whose VM is already
// gone) succeeds. A job bound to the sandbox is failed with the reason.
//
// BUG(agentlab): Destroy may take over a Create still in flight in another
// process before that process's clone has landed. The creating process then
// destroys the clone when it lands; if it crashes first, the clone, which
// carries only the description marker until it is configured (PVE's clone
// call takes no tags), is not found by Reconcile and is left behind.
func (s *Sandbox) Destroy(ctx context.Context) error {
	return s.destroy(ctx, "sandbox destroyed")
}

// destroy destroys the sandbox and, when jobReason is not empty, fails its
// live job with that reason.
func (s *Sandbox) destroy(ctx context.Context, jobReason string) error {
	rec, err := s.run(ctx, opSpec{
		op: OpDestroy, noop: []State{StateDestroyed}, description: "destroy sandbox",
		done: EventSandboxDestroyDone, fail: EventSandboxDestroyFailed,
		ignoreBusy: true, dropGuest: true,
		step: func(ctx context.Context, _ SandboxRecord) (opResult, error) {
			if err := s.m.hv.Destroy(ctx, s.vmid); err != nil {
				return opResult{}, err
			}
			return opResult{to: StateDestroyed, mutate: func(r *SandboxRecord) {
				r.IP, r.LeaseExpires = "", time.Time{}
			}}, nil
		},
	})
	if err == nil && jobReason != "" {
		s.m.sandboxGone(ctx, rec, jobReason)
	}
	return err
}

// RenewLease sets the lease to expire ttl from now. It is valid in READY,
// RUNNING, SUSPENDED, COMPLETED, FAILED and TIMEOUT; in any other state it
// returns an *InvalidStateError naming the valid ones.
func (s *Sandbox) RenewLease(ctx context.Context, ttl time.Duration) error {
	if ttl < time.Minute {
		return fmt.Errorf("renew lease of sandbox %d: %w: ttl %v is shorter than a minute",
			s.vmid, ErrInvalidArgument, ttl)
	}
	expires := s.m.now().Add(ttl)
	rec, err := s.commit(ctx, func(r *SandboxRecord) ([]Event, error) {
		if err := checkOp(OpRenewLease, r.VMID, r.State); err != nil {
			return nil, err
		}
		r.LeaseExpires = expires
		return []Event{{Kind: EventLeaseRenewed, VMID: s.vmid,
			Data: map[string]any{"expires_at": expires.UTC().Format(time.RFC3339Nano)}}}, nil
	})
	if errors.Is(err, errReplaced) {
		err = goneError(OpRenewLease, s.vmid)
	}
	if err != nil {
		return fmt.Errorf("renew lease of sandbox %d: %w", s.vmid, err)
	}
	s.set(rec)
	return nil
}
