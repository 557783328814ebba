package agentlab

import (
	"context"
	"fmt"
	"regexp"
	"time"
)

// CleanSnapshot is the name of the disk-only snapshot taken when a sandbox
// first becomes ready; [Sandbox.Revert] restores it.
const CleanSnapshot = "clean"

var snapshotNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{1,39}$`)

// ValidateSnapshotName checks a name the way Proxmox does: 2 to 40
// characters, letters, digits, _ and -, a letter first, and not "current".
func ValidateSnapshotName(name string) error {
	if !snapshotNameRE.MatchString(name) || name == "current" {
		return fmt.Errorf("%w: snapshot name %q (2-40 letters, digits, _ or -, "+
			"starting with a letter, not \"current\")", ErrInvalidArgument, name)
	}
	return nil
}

// SnapshotOptions tunes [Sandbox.SaveSnapshot]. Nil means disk only.
type SnapshotOptions struct {
	// Memory includes the VM's RAM, so that a restore resumes the running
	// processes instead of booting.
	Memory bool

	Description string
}

// SaveSnapshot takes a named snapshot of the sandbox's VM. The sandbox keeps
// its state.
func (s *Sandbox) SaveSnapshot(ctx context.Context, name string, opts *SnapshotOptions) error {
	if err := ValidateSnapshotName(name); err != nil {
		return fmt.Errorf("save snapshot of sandbox %d: %w", s.vmid, err)
	}
	if opts == nil {
		opts = &SnapshotOptions{}
	}
	_, err := s.run(ctx, opSpec{
		op: OpSnapshotSave, description: "save snapshot of sandbox",
		fail: EventSnapshotFailed,
		step: func(ctx context.Context, rec SandboxRecord) (opResult, error) {
			err := s.m.hv.Snapshot(ctx, s.vmid, SnapshotSpec{Name: name,
				Memory: opts.Memory, Description: opts.Description})
			return opResult{to: rec.State, events: []Event{{Kind: EventSnapshotCreated,
				VMID: s.vmid, Data: map[string]any{"name": name, "memory": opts.Memory}}}}, err
		},
	})
	return err
}

// Snapshots lists the sandbox's snapshots, oldest first.
func (s *Sandbox) Snapshots(ctx context.Context) ([]SnapshotInfo, error) {
	rec, err := s.Refresh(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkOp(OpSnapshotList, s.vmid, rec.State); err != nil {
		return nil, fmt.Errorf("list snapshots of sandbox %d: %w", s.vmid, err)
	}
	snaps, err := s.m.hv.Snapshots(ctx, s.vmid)
	if err != nil {
		return nil, fmt.Errorf("list snapshots of sandbox %d: %w", s.vmid, err)
	}
	return snaps, nil
}

// DeleteSnapshot removes a named snapshot. A name [ValidateSnapshotName]
// refuses is an error matching ErrInvalidArgument, as in RestoreSnapshot.
func (s *Sandbox) DeleteSnapshot(ctx context.Context, name string) error {
	if err := ValidateSnapshotName(name); err != nil {
		return fmt.Errorf("delete snapshot of sandbox %d: %w", s.vmid, err)
	}
	_, err := s.run(ctx, opSpec{
		op: OpSnapshotDelete, description: "delete snapshot of sandbox",
		step: func(ctx context.Context, rec SandboxRecord) (opResult, error) {
			err := s.m.hv.DeleteSnapshot(ctx, s.vmid, name)
			return opResult{to: rec.State, mutate: func(r *SandboxRecord) {
				if name == CleanSnapshot {
					r.CleanSnapshot = false
				}
			}, events: []Event{{Kind: EventSnapshotDeleted, VMID: s.vmid,
				Data: map[string]any{"name": name}}}}, err
		},
	})
	return err
}

// RestoreOptions tunes [Sandbox.RestoreSnapshot] and [Sandbox.Revert]. Nil
// means the defaults.
type RestoreOptions struct {
	// Stopped leaves the sandbox STOPPED after the restore. By default the
	// sandbox returns to the run state it had before: a running sandbox is
	// started again (its address refreshed and its guest waited for), a
	// suspended one is paused again, a stopped one stays stopped.
	Stopped bool
}

// RestoreSnapshot rolls the VM back to a named snapshot and then brings the
// sandbox back to its previous run state (see [RestoreOptions]). The
// recorded state always matches the VM afterwards. A name
// [ValidateSnapshotName] refuses is an error matching ErrInvalidArgument,
// and never reaches the hypervisor.
func (s *Sandbox) RestoreSnapshot(ctx context.Context, name string, opts *RestoreOptions) error {
	if err := ValidateSnapshotName(name); err != nil {
		return fmt.Errorf("restore snapshot of sandbox %d: %w", s.vmid, err)
	}
	if opts == nil {
		opts = &RestoreOptions{}
	}
	start := s.m.now()
	_, err := s.run(ctx, opSpec{
		op: OpSnapshotRestore, description: "restore snapshot of sandbox",
		dropGuest: true,
		step: func(ctx context.Context, rec SandboxRecord) (opResult, error) {
			res, err := s.restore(ctx, rec, name, opts)
			// Stored with the final state, in the same write.
			res.events = append(res.events, Event{Kind: EventSnapshotRestored, VMID: s.vmid,
				Data: restoreData(name, s.m.now().Sub(start))})
			return res, err
		},
	})
	if err != nil {
		data := restoreData(name, s.m.now().Sub(start))
		data["error"] = err.Error()
		s.m.emit(ctx, Event{Kind: EventSnapshotRestoreFailed, VMID: s.vmid,
			Message: err.Error(), Data: data})
	}
	return err
}

// restoreData is the data of the snapshot.restored and restore_failed events.
func restoreData(name string, d time.Duration) map[string]any {
	return map[string]any{"name": name, "duration_ms": d.Milliseconds()}
}

// Revert restores the "clean" snapshot taken when the sandbox first became
// ready. It fails with ErrNotFound when there is none.
func (s *Sandbox) Revert(ctx context.Context, opts *RestoreOptions) error {
	rec, err := s.Refresh(ctx)
	if err != nil {
		return err
	}
	if err := checkOp(OpRevert, s.vmid, rec.State); err != nil {
		return fmt.Errorf("revert sandbox %d: %w", s.vmid, err)
	}
	if !rec.CleanSnapshot {
		return fmt.Errorf("revert sandbox %d: %w: no %q snapshot was taken", s.vmid,
			ErrNotFound, CleanSnapshot)
	}
	return s.RestoreSnapshot(ctx, CleanSnapshot, opts)
}

// restore rolls back and then drives the VM to the wanted power state,
// returning the state that matches it.
func (s *Sandbox) restore(ctx context.Context, rec SandboxRecord, name string,
	opts *RestoreOptions) (opResult, error) {
	m := s.m
	if err := m.hv.Rollback(ctx, s.vmid, name); err != nil {
		return opResult{}, err
	}
	want := wantPower(rec.State, opts)
	vm, err := m.hv.Status(ctx, s.vmid)
	if err != nil {
		return opResult{}, err
	}
	switch {
	case want == PowerStopped && vm.Power != PowerStopped:
		err = m.hv.Stop(ctx, s.vmid, StopOptions{})
	case want != PowerStopped && vm.Power == PowerStopped:
		err = m.hv.Start(ctx, s.vmid)
	case want == PowerRunning && vm.Power == PowerPaused:
		err = m.hv.Resume(ctx, s.vmid)
	}
	if err != nil {
		return opResult{}, err
	}
	if want == PowerStopped {
		return opResult{to: StateStopped, mutate: func(r *SandboxRecord) { r.IP = "" }}, nil
	}
	ready, err := m.awaitGuest(ctx, s)
	if err != nil {
		return opResult{}, err
	}
	if want == PowerPaused {
		return opResult{to: StateSuspended, events: ready}, m.hv.Suspend(ctx, s.vmid)
	}
	return opResult{to: rec.State, mutate: m.touch, events: ready}, nil
}

// wantPower is the power state a restore returns to.
func wantPower(prev State, opts *RestoreOptions) PowerState {
	switch {
	case opts.Stopped || prev == StateStopped:
		return PowerStopped
	case prev == StateSuspended:
		return PowerPaused
	}
	return PowerRunning
}
