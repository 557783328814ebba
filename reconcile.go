package agentlab

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ReconcileOptions tunes [Manager.Reconcile].
type ReconcileOptions struct {
	// Apply corrects what the pass finds; without it the pass only reports.
	Apply bool
}

// Finding is one disagreement between the Store and the hypervisor.
type Finding struct {
	VMID   int
	Kind   string // see the Finding* constants
	Detail string
	Action string // what Apply did ("" when reporting only)
}

// Finding kinds.
const (
	FindingMissingVM     = "missing_in_hypervisor"    // record live, VM does not exist
	FindingUnmanagedVM   = "unmanaged_vm"             // VM carries our marker, no live record
	FindingInterrupted   = "interrupted_operation"    // an operation was cut short
	FindingStuck         = "stuck_before_ready"       // REQUESTED/PROVISIONING/BOOTING, stale
	FindingPowerMismatch = "power_state_mismatch"     // record and VM disagree on power
	FindingMissingIP     = "missing_ip"               // VM runs, no address recorded
	FindingJobOrphaned   = "job_without_live_sandbox" // a live job whose sandbox is gone
)

// ReconcileReport lists the findings of one pass.
type ReconcileReport struct {
	Findings []Finding
}

// Reconcile compares the Store with the hypervisor and, with opts.Apply,
// makes them agree: a VM that carries this Manager's marker but has no live
// record is destroyed; a record whose VM is gone (per-VMID answer, never
// absence from a list) is marked DESTROYED; an operation interrupted by a
// crash is finished or undone; a state that contradicts the VM's power
// state follows the VM. Records with an operation in flight younger than
// StaleOpAfter are left alone; an abandoned provisioning (its cleanup
// failed) is destroyed at once. It is idempotent and safe to run from several
// processes.
func (m *Manager) Reconcile(ctx context.Context, opts ReconcileOptions) (ReconcileReport, error) {
	var rep ReconcileReport
	vms, err := m.hv.List(ctx, m.cfg.Owner)
	if err != nil {
		return rep, fmt.Errorf("reconcile: list vms: %w", err)
	}
	recs, err := m.store.ListSandboxes(ctx, SandboxFilter{States: liveStates})
	if err != nil {
		return rep, fmt.Errorf("reconcile: list sandboxes: %w", err)
	}
	live := make(map[int]bool, len(recs))
	for _, r := range recs {
		live[r.VMID] = true
		if f, ok := m.reconcileOne(ctx, r, opts.Apply); ok {
			rep.Findings = append(rep.Findings, f)
		}
	}
	for _, vm := range vms {
		if live[vm.VMID] {
			continue
		}
		if f, ok := m.reconcileOrphan(ctx, vm, opts.Apply); ok {
			rep.Findings = append(rep.Findings, f)
		}
	}
	rep.Findings = append(rep.Findings, m.reconcileJobs(ctx, opts.Apply)...)
	return rep, nil
}

// reconcileOrphan handles a VM with our marker and no live record. The
// record is re-read first: a Create in flight in another process may have
// written it after the list.
func (m *Manager) reconcileOrphan(ctx context.Context, vm VM, apply bool) (Finding, bool) {
	rec, err := m.store.GetSandbox(ctx, vm.VMID)
	if err == nil && rec.State != StateDestroyed {
		return Finding{}, false
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Finding{}, false
	}
	f := Finding{VMID: vm.VMID, Kind: FindingUnmanagedVM,
		Detail: fmt.Sprintf("vm %q on %s carries marker %q", vm.Name, vm.Node, vm.Owner)}
	if apply {
		f.Action = "destroyed vm"
		if err := m.hv.Destroy(ctx, vm.VMID); err != nil {
			f.Action = "destroy vm: " + err.Error()
		}
		m.emitFinding(ctx, f)
	}
	return f, true
}

func (m *Manager) reconcileOne(ctx context.Context, r SandboxRecord, apply bool) (Finding, bool) {
	if r.Op != "" && r.Op != opAbandoned && m.now().Sub(r.OpStarted) < m.cfg.StaleOpAfter {
		return Finding{}, false // someone is working on it
	}
	vm, err := m.hv.Status(ctx, r.VMID)
	if errors.Is(err, ErrNotFound) {
		return m.fixMissing(ctx, r, apply), true
	}
	if err != nil {
		m.log.Debug("reconcile status", "vmid", r.VMID, "err", err)
		return Finding{}, false
	}
	if vm.Owner != "" && vm.Owner != m.cfg.Owner {
		return Finding{}, false // the VMID now belongs to someone else's VM
	}
	if r.Op != "" || r.State.Transient() {
		return m.fixInterrupted(ctx, r, vm, apply), true
	}
	return m.fixPower(ctx, r, vm, apply)
}

func (m *Manager) fixMissing(ctx context.Context, r SandboxRecord, apply bool) Finding {
	f := Finding{VMID: r.VMID, Kind: FindingMissingVM,
		Detail: fmt.Sprintf("record in %s, vm does not exist", r.State)}
	if apply {
		f.Action = m.force(ctx, r, StateDestroyed, "vm does not exist")
		m.sandboxGone(ctx, r, "sandbox vm disappeared")
		m.emitFinding(ctx, f)
	}
	return f
}

// fixInterrupted resolves a record left mid-operation by a crash. An
// interrupted or abandoned provisioning or destroy is completed by
// destroying the VM (see destroysVM);
// any other operation is cleared and the state follows the VM.
func (m *Manager) fixInterrupted(ctx context.Context, r SandboxRecord, vm VM, apply bool) Finding {
	f := Finding{VMID: r.VMID, Kind: FindingInterrupted,
		Detail: fmt.Sprintf("%s interrupted in %s", opOr(r.Op, "provision"), r.State)}
	if r.State.Transient() && r.Op == "" {
		f.Kind = FindingStuck
	}
	if !apply {
		return f
	}
	if destroysVM(r) {
		f.Action = "destroyed vm"
		if err := m.hv.Destroy(ctx, r.VMID); err != nil {
			f.Action = "destroy vm: " + err.Error()
			m.emitFinding(ctx, f)
			return f
		}
		m.force(ctx, r, StateDestroyed, "interrupted "+opOr(r.Op, "provision"))
		m.sandboxGone(ctx, r, "sandbox provisioning interrupted")
	} else {
		f.Action = m.force(ctx, r, stateForPower(r.State, vm.Power), "interrupted "+r.Op)
	}
	m.emitFinding(ctx, f)
	return f
}

// destroysVM reports whether reconcile finishes r's interrupted operation by
// destroying the VM: a provisioning (the sandbox never was ready), an
// abandoned one, or a destroy. BOOTING without the provision op is left by
// an interrupted or failed start: its state follows the VM, so the sandbox
// keeps its disk.
func destroysVM(r SandboxRecord) bool {
	switch r.Op {
	case "provision", opAbandoned, string(OpDestroy):
		return true
	}
	return r.State == StateRequested || r.State == StateProvisioning
}

func opOr(op, def string) string {
	if op == "" {
		return def
	}
	return op
}

// fixPower makes the recorded state follow the VM's power state.
func (m *Manager) fixPower(ctx context.Context, r SandboxRecord, vm VM,
	apply bool) (Finding, bool) {
	want := stateForPower(r.State, vm.Power)
	if want == r.State {
		if vm.Power == PowerRunning && r.IP == "" {
			return m.fixIP(ctx, r, apply), true
		}
		return Finding{}, false
	}
	f := Finding{VMID: r.VMID, Kind: FindingPowerMismatch,
		Detail: fmt.Sprintf("record %s, vm %s", r.State, vm.Power)}
	if apply {
		f.Action = m.force(ctx, r, want, "vm is "+string(vm.Power))
		if m.guest != nil && vm.Power != PowerRunning {
			m.guest.Drop(r.VMID)
		}
		m.emitFinding(ctx, f)
	}
	return f, true
}

func (m *Manager) fixIP(ctx context.Context, r SandboxRecord, apply bool) Finding {
	f := Finding{VMID: r.VMID, Kind: FindingMissingIP, Detail: "vm runs, no address"}
	if !apply {
		return f
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := m.hv.GuestInfo(ctx, r.VMID)
	if err == nil {
		conflicts := 0
		err = m.checkAddress(ctx, r.VMID, info.IP, &conflicts)
	}
	if err != nil {
		f.Action = "address not available yet"
		return f
	}
	_, err = m.store.UpdateSandbox(ctx, r.VMID, func(rec *SandboxRecord) error {
		rec.IP = info.IP
		return nil
	})
	f.Action = "address refreshed"
	if err != nil {
		f.Action = "refresh address: " + err.Error()
	}
	return f
}

// stateForPower returns the state a record in state cur should have when its
// VM has power p: cur itself when they agree.
func stateForPower(cur State, p PowerState) State {
	switch p {
	case PowerStopped:
		if cur == StateCompleted || cur == StateFailed || cur == StateTimeout {
			return cur
		}
		return StateStopped
	case PowerPaused:
		return StateSuspended
	}
	switch cur {
	case StateReady, StateRunning, StateCompleted, StateFailed, StateTimeout:
		return cur
	}
	return StateReady
}

// force sets the state without the transition check (the VM has already
// moved) and clears any unfinished operation. It returns a description.
func (m *Manager) force(ctx context.Context, r SandboxRecord, to State, why string) string {
	var from State
	_, err := m.store.UpdateSandbox(ctx, r.VMID, func(rec *SandboxRecord) error {
		from = rec.State
		if from == StateDestroyed {
			return errNoop
		}
		rec.State, rec.Op, rec.OpStarted, rec.LastError = to, "", time.Time{}, why
		if to == StateDestroyed || to == StateStopped {
			rec.IP = ""
		}
		return nil
	})
	if err != nil {
		return "update record: " + err.Error()
	}
	if from != to {
		m.emit(ctx, Event{Kind: EventSandboxState, VMID: r.VMID, JobID: r.JobID, Message: why,
			Data: map[string]any{"from_state": string(from), "to_state": string(to)}})
	}
	return fmt.Sprintf("marked %s", to)
}

func (m *Manager) emitFinding(ctx context.Context, f Finding) {
	m.emit(ctx, Event{Kind: EventReconciled, VMID: f.VMID, Message: f.Detail,
		Data: map[string]any{"finding": f.Kind, "action": f.Action}})
}
