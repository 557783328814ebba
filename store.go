package agentlab

import (
	"context"
	"time"
)

// SandboxRecord is the durable state of one sandbox. The Store owns the
// copy it holds; values returned to callers are copies.
type SandboxRecord struct {
	VMID    int
	Name    string
	Profile string
	State   State
	Node    string
	IP      string

	// HostKey is the guest's pinned SSH host key (authorized_keys format).
	HostKey string

	NetworkMode string
	Labels      map[string]string

	// User and Port say how to log in to the guest (from the profile).
	User string
	Port int

	// IdleStop stops the sandbox after this long without activity; zero
	// disables it. OnExpiry is what the reaper does: "destroy" or "stop".
	IdleStop time.Duration
	OnExpiry string

	Keepalive bool
	JobID     string // the job bound to the sandbox, if any

	// LeaseExpires is when the reaper acts; zero means never.
	LeaseExpires time.Time

	// LastActivity is the last exec, transfer or SSH session the SDK saw.
	LastActivity time.Time

	// Op names the operation in flight ("provision", "destroy", ...) and
	// OpStarted when it began. They are written before each hypervisor side
	// effect, so that reconcile knows what a crash interrupted.
	Op        string
	OpStarted time.Time

	// CleanSnapshot reports that the "clean" snapshot was taken.
	CleanSnapshot bool

	// LastError is the most recent failure's message.
	LastError string

	// Owner is the ownership marker stamped on the VM.
	Owner string

	CreatedAt time.Time
	UpdatedAt time.Time

	// Version increases by one on every update; the Store sets it.
	Version int64
}

// Clone returns a deep copy of r.
func (r SandboxRecord) Clone() SandboxRecord {
	if r.Labels != nil {
		labels := make(map[string]string, len(r.Labels))
		for k, v := range r.Labels {
			labels[k] = v
		}
		r.Labels = labels
	}
	return r
}

// SandboxFilter selects sandboxes in [Store.ListSandboxes]. Zero fields
// select everything.
type SandboxFilter struct {
	States  []State           // any of these states
	Profile string            // this profile
	Labels  map[string]string // all of these labels
	JobID   string            // bound to this job
	IP      string            // with this guest address

	// ExpiredBefore selects sandboxes whose lease expires at or before it.
	ExpiredBefore time.Time
	Limit         int // zero means no limit
}

// Summary counts records for a status report.
type Summary struct {
	SandboxesByState map[State]int
	SandboxesByMode  map[string]int // network mode of the live sandboxes
	JobsByStatus     map[JobStatus]int
}

// Store persists sandboxes, jobs and events. The store package implements
// it on SQLite; agentlabtest has an in-memory one. Both pass
// agentlabtest.RunStoreTests.
//
// Implementations must be safe for concurrent use, and a SQLite store also
// across processes sharing one file: updates are atomic read-modify-write
// transactions, so no update is lost when writers race.
//
// Methods return errors matching [ErrNotFound] for a missing record,
// [ErrVMIDConflict] for a VMID held by a live sandbox, [ErrAlreadyExists]
// for a live name or job ID that is taken, and [ErrClosed] after Close.
type Store interface {
	// CreateSandbox inserts rec, reserving its VMID and name among live
	// (not destroyed) sandboxes. A destroyed record holding the same VMID is
	// archived. It sets CreatedAt, UpdatedAt and Version on rec.
	CreateSandbox(ctx context.Context, rec *SandboxRecord) error

	// GetSandbox returns the sandbox holding vmid: the live one, else the
	// most recently destroyed one.
	GetSandbox(ctx context.Context, vmid int) (SandboxRecord, error)

	// GetSandboxByName returns the live sandbox with that name, else the most
	// recently destroyed one.
	GetSandboxByName(ctx context.Context, name string) (SandboxRecord, error)

	// ListSandboxes returns the sandboxes f selects, ordered by VMID.
	ListSandboxes(ctx context.Context, f SandboxFilter) ([]SandboxRecord, error)

	// UpdateSandbox applies fn to the current record of vmid atomically and
	// stores the result. An error from fn aborts the update and is returned
	// as is. fn may run more than once and must not have side effects.
	UpdateSandbox(ctx context.Context, vmid int,
		fn func(*SandboxRecord) error) (SandboxRecord, error)

	// UpdateSandboxEvents applies fn to the current record of vmid atomically, like
	// UpdateSandbox, and appends the events fn returns in the same transaction, setting
	// their IDs (each greater than every ID stored before). When fn or the write fails,
	// neither the record nor the events are stored. fn may run more than once.
	//
	// The events are stored as AppendEvent stores them (Time and
	// SchemaVersion defaulted when zero) and returned in fn's order with
	// their IDs, Time and SchemaVersion set. An error from fn is returned as
	// is; an invalid event (an empty Kind, say) fails the whole update with
	// an error matching [ErrInvalidArgument].
	UpdateSandboxEvents(ctx context.Context, vmid int,
		fn func(*SandboxRecord) ([]Event, error)) (SandboxRecord, []Event, error)

	// CreateJob inserts rec; the ID must be unique.
	CreateJob(ctx context.Context, rec *JobRecord) error

	// GetJob returns one job.
	GetJob(ctx context.Context, id string) (JobRecord, error)

	// ListJobs returns the jobs f selects, newest first.
	ListJobs(ctx context.Context, f JobFilter) ([]JobRecord, error)

	// UpdateJob applies fn to the job atomically, like UpdateSandbox.
	UpdateJob(ctx context.Context, id string, fn func(*JobRecord) error) (JobRecord, error)

	// AppendEvent stores ev and sets its ID, which is greater than every ID
	// stored before it.
	AppendEvent(ctx context.Context, ev *Event) error

	// ListEvents returns the events f selects in increasing ID order.
	ListEvents(ctx context.Context, f EventFilter) ([]Event, error)

	// Summary counts sandboxes and jobs.
	Summary(ctx context.Context) (Summary, error)

	// Close releases the store. Calls after Close return ErrClosed.
	Close() error
}
