package agentlab

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// EventSchemaVersion is the version of the event envelope. Changes to it are
// additive: new kinds and new payload fields, never removed or retyped ones.
const EventSchemaVersion = 1

// Event kinds. The catalog is closed: the Manager emits only these.
const (
	EventSandboxState          = "sandbox.state"            // from_state, to_state
	EventSandboxReady          = "sandbox.slo.ready"        // duration_ms
	EventSandboxSSHReady       = "sandbox.slo.ssh_ready"    // duration_ms, ip
	EventSandboxSSHFailed      = "sandbox.slo.ssh_failed"   // duration_ms, error
	EventSandboxProvisionFail  = "sandbox.provision_failed" // error
	EventSandboxPauseDone      = "sandbox.pause.completed"  // duration_ms
	EventSandboxPauseFailed    = "sandbox.pause.failed"     // duration_ms, error
	EventSandboxResumeDone     = "sandbox.resume.completed"
	EventSandboxResumeFailed   = "sandbox.resume.failed"
	EventSandboxStopDone       = "sandbox.stop.completed"
	EventSandboxStopFailed     = "sandbox.stop.failed"
	EventSandboxStartDone      = "sandbox.start.completed"
	EventSandboxStartFailed    = "sandbox.start.failed"
	EventSandboxDestroyDone    = "sandbox.destroy.completed"
	EventSandboxDestroyFailed  = "sandbox.destroy.failed"
	EventSnapshotCreated       = "sandbox.snapshot.created"  // name, memory
	EventSnapshotFailed        = "sandbox.snapshot.failed"   // name, error
	EventSnapshotRestored      = "sandbox.snapshot.restored" // name, duration_ms
	EventSnapshotRestoreFailed = "sandbox.snapshot.restore_failed"
	EventSnapshotDeleted       = "sandbox.snapshot.deleted" // name
	EventLeaseRenewed          = "sandbox.lease.renewed"    // expires_at
	EventLeaseExpired          = "sandbox.lease.expired"    // action
	EventIdleStop              = "sandbox.idle_stop"        // idle_for_minutes
	EventNetworkWarning        = "sandbox.network.warning"  // warning
	EventIPConflict            = "sandbox.ip_conflict"      // ip, conflicting_vmid
	EventReconciled            = "sandbox.reconciled"       // finding, action
	EventJobCreated            = "job.created"
	EventJobRunning            = "job.running"
	EventJobLog                = "job.log"  // line
	EventJobStep               = "job.step" // step
	EventJobCompleted          = "job.completed"
	EventJobFailed             = "job.failed" // status, error
	EventJobTimeout            = "job.timeout"
	EventJobCanceled           = "job.canceled"
	EventJobArtifact           = "job.artifact" // name, size, sha256
)

// EventKinds lists the catalog in a stable order.
var EventKinds = []string{
	EventSandboxState, EventSandboxReady, EventSandboxSSHReady, EventSandboxSSHFailed,
	EventSandboxProvisionFail, EventSandboxPauseDone, EventSandboxPauseFailed,
	EventSandboxResumeDone, EventSandboxResumeFailed, EventSandboxStopDone,
	EventSandboxStopFailed, EventSandboxStartDone, EventSandboxStartFailed,
	EventSandboxDestroyDone, EventSandboxDestroyFailed, EventSnapshotCreated,
	EventSnapshotFailed, EventSnapshotRestored, EventSnapshotRestoreFailed,
	EventSnapshotDeleted, EventLeaseRenewed, EventLeaseExpired, EventIdleStop,
	EventNetworkWarning, EventIPConflict, EventReconciled, EventJobCreated, EventJobRunning,
	EventJobLog, EventJobStep, EventJobCompleted, EventJobFailed, EventJobTimeout,
	EventJobCanceled, EventJobArtifact,
}

// Event is one durable record of something that happened, in a versioned
// envelope. Its JSON form is the one the CLI prints.
type Event struct {
	ID            int64          `json:"id"`
	Time          time.Time      `json:"ts"`
	Kind          string         `json:"kind"`
	SchemaVersion int            `json:"schema_version"`
	VMID          int            `json:"sandbox_vmid,omitempty"`
	JobID         string         `json:"job_id,omitempty"`
	Message       string         `json:"msg,omitempty"`
	Data          map[string]any `json:"data,omitempty"`
}

// EventFilter selects events, for replay and for subscriptions. Zero fields
// select everything.
type EventFilter struct {
	AfterID int64    // only events with a greater ID
	VMID    int      // only this sandbox's events
	JobID   string   // only this job's events
	Kinds   []string // only these kinds
	Limit   int      // at most this many (zero: no limit)

	// Last returns the newest Limit events instead of the oldest, still in
	// increasing ID order.
	Last bool
}

// Match reports whether ev passes the filter's VMID, JobID and Kinds.
func (f EventFilter) Match(ev *Event) bool {
	if f.VMID != 0 && ev.VMID != f.VMID {
		return false
	}
	if f.JobID != "" && ev.JobID != f.JobID {
		return false
	}
	return len(f.Kinds) == 0 || slices.Contains(f.Kinds, ev.Kind)
}

// Subscription receives events published by one Manager. Close it when done;
// it is also closed when the Manager closes.
type Subscription struct {
	c       chan Event
	filter  EventFilter
	dropped atomic.Uint64
	bus     *bus
	once    sync.Once
}

// C returns the channel of events. It is closed when the subscription or
// its Manager is closed.
func (s *Subscription) C() <-chan Event { return s.c }

// Dropped returns how many events were not delivered because the buffer was
// full. The events themselves are in the Store: replay them with
// [Manager.Events] from the last ID received.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription and closes its channel. It is idempotent.
func (s *Subscription) Close() {
	s.once.Do(func() { s.bus.remove(s) })
}

// bus fans published events out to subscriptions without ever blocking.
type bus struct {
	mu     sync.Mutex // guards subs and closed; held while sending
	subs   []*Subscription
	closed bool
}

func (b *bus) subscribe(f EventFilter, size int) (*Subscription, error) {
	s := &Subscription{c: make(chan Event, size), filter: f, bus: b}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	b.subs = append(b.subs, s)
	return s, nil
}

// publish hands ev to every matching subscription whose buffer has room and
// counts a drop for the others.
func (b *bus) publish(ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.subs {
		if !s.filter.Match(&ev) {
			continue
		}
		select {
		case s.c <- ev:
		default:
			s.dropped.Add(1)
		}
	}
}

func (b *bus) remove(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i := slices.Index(b.subs, s); i >= 0 {
		b.subs = slices.Delete(b.subs, i, i+1)
		close(s.c)
	}
}

func (b *bus) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for _, s := range b.subs {
		close(s.c)
	}
	b.subs = nil
}

// Events replays stored events that f selects, in increasing ID order. Use
// it to catch up after a subscription dropped events, or from another
// process sharing the Store.
func (m *Manager) Events(ctx context.Context, f EventFilter) ([]Event, error) {
	if err := m.checkOpen(); err != nil {
		return nil, err
	}
	return m.store.ListEvents(ctx, f)
}

// SubscribeOptions tunes [Manager.Subscribe].
type SubscribeOptions struct {
	EventFilter // which events to deliver; AfterID and Limit are ignored

	// Buffer is the channel's capacity; zero means 256.
	Buffer int
}

// Subscribe starts delivering the events this Manager publishes from now on.
// The delivery contract is in the package documentation.
func (m *Manager) Subscribe(opts SubscribeOptions) (*Subscription, error) {
	size := opts.Buffer
	if size <= 0 {
		size = 256
	}
	f := opts.EventFilter
	f.AfterID, f.Limit, f.Last = 0, 0, false
	return m.bus.subscribe(f, size)
}

// emit stores an event and publishes it. A Store failure is logged, not
// returned: an event is a record of an outcome the caller already has.
func (m *Manager) emit(ctx context.Context, ev Event) {
	m.stamp(&ev)
	// Publish under the emit lock so that subscribers see increasing IDs.
	m.emitMu.Lock()
	defer m.emitMu.Unlock()
	if err := m.store.AppendEvent(context.WithoutCancel(ctx), &ev); err != nil {
		m.log.Warn("store event", "kind", ev.Kind, "vmid", ev.VMID, "err", err)
	}
	m.bus.publish(ev)
}

// stamp sets the envelope fields the Manager owns.
func (m *Manager) stamp(ev *Event) {
	ev.Time = m.now()
	ev.SchemaVersion = EventSchemaVersion
}

// commit applies fn to the sandbox record and stores the events fn returns
// in the same Store transaction, then publishes them: a state change and
// its events are durable together, in one write.
func (m *Manager) commit(ctx context.Context, vmid int,
	fn func(*SandboxRecord) ([]Event, error)) (SandboxRecord, error) {
	m.emitMu.Lock()
	defer m.emitMu.Unlock()
	rec, evs, err := m.store.UpdateSandboxEvents(ctx, vmid,
		func(r *SandboxRecord) ([]Event, error) {
			evs, err := fn(r)
			for i := range evs {
				m.stamp(&evs[i])
			}
			return evs, err
		})
	if err != nil {
		return rec, err
	}
	for _, ev := range evs {
		m.bus.publish(ev)
	}
	return rec, nil
}
