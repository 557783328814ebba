package agentlab

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Leases
//
// A sandbox's lease comes from CreateRequest.TTL, else from its profile's
// ttl_minutes_default; zero means the sandbox never expires. The reaper
// (every ReapInterval, or on demand with [Manager.Reap]) destroys each
// sandbox whose lease has run out, or stops it when its profile says
// on_expiry: stop, and records why in a sandbox.lease.expired event. A job
// bound to an expired sandbox ends TIMEOUT.
//
// Idle stop: a profile's idle_stop_minutes stops a READY or RUNNING sandbox
// that saw no activity for that long. Activity is what the SDK itself sees:
// creation, start, resume, every Exec, file transfer and SSH session opened
// through the Manager. Work the guest does on its own, or sessions opened
// around the SDK, do not count. A sandbox with a live job, or with an Exec
// or transfer in flight through the Manager, is never idle; the end of
// such a call counts as activity too.

// ReapReport lists what one reaper pass did.
type ReapReport struct {
	Destroyed []int
	Stopped   []int
	Errors    map[int]error
}

// Reap runs one reaper pass: every live sandbox whose lease expired is
// destroyed, or stopped when its profile asks for that. It is idempotent and
// safe to run from several processes at once.
func (m *Manager) Reap(ctx context.Context) (ReapReport, error) {
	rep := ReapReport{Errors: map[int]error{}}
	if err := m.checkOpen(); err != nil {
		return rep, err
	}
	recs, err := m.store.ListSandboxes(ctx, SandboxFilter{States: liveStates,
		ExpiredBefore: m.now()})
	if err != nil {
		return rep, fmt.Errorf("reap: %w", err)
	}
	for _, rec := range recs {
		if rec.LeaseExpires.IsZero() {
			continue
		}
		stop := rec.OnExpiry == "stop"
		if stop && rec.State == StateStopped {
			continue
		}
		if err := m.expire(ctx, rec, stop); err != nil {
			rep.Errors[rec.VMID] = err
		} else if stop {
			rep.Stopped = append(rep.Stopped, rec.VMID)
		} else {
			rep.Destroyed = append(rep.Destroyed, rec.VMID)
		}
	}
	return rep, nil
}

func (m *Manager) expire(ctx context.Context, rec SandboxRecord, stop bool) error {
	s := m.handle(rec)
	action := "destroy"
	if stop {
		action = "stop"
	}
	m.emit(ctx, Event{Kind: EventLeaseExpired, VMID: rec.VMID, JobID: rec.JobID,
		Message: "lease expired at " + rec.LeaseExpires.UTC().Format(time.RFC3339),
		Data: map[string]any{"action": action,
			"expires_at": rec.LeaseExpires.UTC().Format(time.RFC3339Nano)}})
	m.sandboxGone(ctx, rec, "sandbox lease expired")
	if !stop {
		return s.Destroy(ctx)
	}
	if err := s.Stop(ctx); err != nil {
		return err
	}
	_, err := s.update(ctx, func(r *SandboxRecord) error {
		r.LeaseExpires = time.Time{}
		return nil
	})
	return err
}

// StopIdle runs one idle-stop pass and returns the VMIDs it stopped.
func (m *Manager) StopIdle(ctx context.Context) ([]int, error) {
	if err := m.checkOpen(); err != nil {
		return nil, err
	}
	recs, err := m.store.ListSandboxes(ctx, SandboxFilter{
		States: []State{StateReady, StateRunning}})
	if err != nil {
		return nil, fmt.Errorf("stop idle sandboxes: %w", err)
	}
	var stopped []int
	now := m.now()
	for _, rec := range recs {
		idle := now.Sub(rec.LastActivity)
		if rec.IdleStop <= 0 || idle < rec.IdleStop || m.guestBusy(rec.VMID) ||
			m.jobLive(ctx, rec.JobID) {
			continue
		}
		s := m.handle(rec)
		if err := s.Stop(ctx); err != nil {
			m.log.Debug("idle stop", "vmid", rec.VMID, "err", err)
			continue
		}
		m.emit(ctx, Event{Kind: EventIdleStop, VMID: rec.VMID,
			Data: map[string]any{"idle_for_minutes": int(idle.Minutes())}})
		stopped = append(stopped, rec.VMID)
	}
	return stopped, nil
}

// jobLive reports whether the job exists and is not terminal.
func (m *Manager) jobLive(ctx context.Context, id string) bool {
	if id == "" {
		return false
	}
	j, err := m.store.GetJob(ctx, id)
	return err == nil && !j.Status.Terminal()
}

// noteActivity records guest activity, at most once every few seconds per
// sandbox so that a busy exec loop does not write the Store on every call.
func (m *Manager) noteActivity(ctx context.Context, s *Sandbox) {
	now := m.now()
	if now.Sub(s.Record().LastActivity) < activityResolution {
		return
	}
	rec, err := s.update(ctx, func(r *SandboxRecord) error {
		r.LastActivity = now
		return nil
	})
	if err == nil {
		s.set(rec)
	} else if !errors.Is(err, context.Canceled) {
		m.log.Debug("note activity", "vmid", s.vmid, "err", err)
	}
}

const activityResolution = 5 * time.Second
