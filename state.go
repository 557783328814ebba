package agentlab

import "slices"

// State is a sandbox's lifecycle state. The names are those of the
// predecessor, so that records and CLI output stay familiar.
type State string

// Sandbox states. A sandbox starts in StateRequested and ends in
// StateDestroyed; [Transitions] lists every allowed move.
const (
	StateRequested    State = "REQUESTED"    // record written, no VM yet
	StateProvisioning State = "PROVISIONING" // cloning and configuring the VM
	StateBooting      State = "BOOTING"      // VM started, guest not ready yet
	StateReady        State = "READY"        // VM up and guest reachable, no job bound
	StateRunning      State = "RUNNING"      // VM up and in use (a job or an operator)
	StateSuspended    State = "SUSPENDED"    // VM paused, memory kept
	StateStopped      State = "STOPPED"      // VM powered off, disk kept
	StateCompleted    State = "COMPLETED"    // the bound job completed
	StateFailed       State = "FAILED"       // the job failed, or the sandbox broke
	StateTimeout      State = "TIMEOUT"      // the job or the lease ran out
	StateDestroyed    State = "DESTROYED"    // VM gone; the record is kept
)

// AllStates lists every state in lifecycle order.
var AllStates = []State{
	StateRequested, StateProvisioning, StateBooting, StateReady, StateRunning,
	StateSuspended, StateStopped, StateCompleted, StateFailed, StateTimeout,
	StateDestroyed,
}

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool { return slices.Contains(AllStates, s) }

// Terminal reports whether s is StateDestroyed, the only state with no exit.
func (s State) Terminal() bool { return s == StateDestroyed }

// Transient reports whether s is a state the SDK passes through while an
// operation is in flight; reconcile resolves records left in one by a crash.
func (s State) Transient() bool {
	return s == StateRequested || s == StateProvisioning || s == StateBooting
}

// Transitions is the one table of allowed state changes: Transitions[from]
// lists the states a sandbox may move to from "from". A move to the same
// state is always a no-op and is not listed.
var Transitions = map[State][]State{
	StateRequested: {StateProvisioning, StateFailed, StateTimeout, StateDestroyed},
	StateProvisioning: {StateBooting, StateStopped, StateFailed, StateTimeout,
		StateDestroyed},
	StateBooting: {StateReady, StateRunning, StateStopped, StateFailed,
		StateTimeout, StateDestroyed},
	StateReady: {StateRunning, StateSuspended, StateStopped, StateBooting,
		StateCompleted, StateFailed, StateTimeout, StateDestroyed},
	StateRunning: {StateReady, StateSuspended, StateStopped, StateBooting,
		StateCompleted, StateFailed, StateTimeout, StateDestroyed},
	StateSuspended: {StateReady, StateRunning, StateStopped, StateBooting,
		StateFailed, StateTimeout, StateDestroyed},
	StateStopped: {StateBooting, StateReady, StateRunning, StateSuspended,
		StateFailed, StateTimeout, StateDestroyed},
	StateCompleted: afterJob(StateCompleted),
	StateFailed:    afterJob(StateFailed),
	StateTimeout:   afterJob(StateTimeout),
	StateDestroyed: nil,
}

// afterJob lists where a sandbox may go from "from", a state it reaches
// once its job ended or it broke: it can be stopped, started again, paused
// (keepalive) or destroyed.
func afterJob(from State) []State {
	all := []State{StateStopped, StateBooting, StateReady, StateRunning,
		StateSuspended, StateCompleted, StateFailed, StateTimeout, StateDestroyed}
	return slices.DeleteFunc(all, func(s State) bool { return s == from })
}

// CanTransition reports whether a sandbox may move from one state to another.
func CanTransition(from, to State) bool {
	return from == to || slices.Contains(Transitions[from], to)
}

// Op names a sandbox operation, for state checks and error messages.
type Op string

// Sandbox operations checked against [ValidStates].
const (
	OpPause           Op = "pause"
	OpResume          Op = "resume"
	OpStop            Op = "stop"
	OpStart           Op = "start"
	OpDestroy         Op = "destroy"
	OpRenewLease      Op = "renew_lease"
	OpSnapshotSave    Op = "snapshot_save"
	OpSnapshotRestore Op = "snapshot_restore"
	OpSnapshotList    Op = "snapshot_list"
	OpSnapshotDelete  Op = "snapshot_delete"
	OpRevert          Op = "revert"
	OpExec            Op = "exec"
)

func (o Op) verb() string {
	switch o {
	case OpRenewLease:
		return "renew lease"
	case OpSnapshotSave:
		return "save snapshot"
	case OpSnapshotRestore:
		return "restore snapshot"
	case OpSnapshotList:
		return "list snapshots"
	case OpSnapshotDelete:
		return "delete snapshot"
	}
	return string(o)
}

// up lists the states in which the VM is expected to be powered on and
// usable: the guest ops and pause are valid there.
var up = []State{StateReady, StateRunning, StateCompleted, StateFailed, StateTimeout}

// settled lists the states in which no lifecycle step is in flight and the
// VM exists; snapshots and leases work there.
var settled = []State{StateReady, StateRunning, StateSuspended, StateStopped,
	StateCompleted, StateFailed, StateTimeout}

// ValidStates is the one table of which operation is valid in which state.
// Operations that are no-ops in some states (stop in STOPPED, start in
// RUNNING, destroy in DESTROYED) list those states too.
var ValidStates = map[Op][]State{
	OpPause:  append(slices.Clone(up), StateSuspended),
	OpResume: {StateSuspended, StateReady, StateRunning},
	OpStop: {StateBooting, StateReady, StateRunning, StateSuspended, StateStopped,
		StateCompleted, StateFailed, StateTimeout},
	OpStart: {StateStopped, StateReady, StateRunning, StateCompleted, StateFailed,
		StateTimeout},
	OpDestroy: AllStates,
	OpRenewLease: {StateReady, StateRunning, StateSuspended, StateCompleted,
		StateFailed, StateTimeout},
	OpSnapshotSave:    settled,
	OpSnapshotRestore: settled,
	OpSnapshotList:    settled,
	OpSnapshotDelete:  settled,
	OpRevert:          settled,
	OpExec:            up,
}

// checkOp returns an *InvalidStateError unless op is valid in state.
func checkOp(op Op, vmid int, state State) error {
	if slices.Contains(ValidStates[op], state) {
		return nil
	}
	return &InvalidStateError{Op: op, VMID: vmid, State: state, Valid: ValidStates[op]}
}
