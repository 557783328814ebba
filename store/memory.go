package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// Memory is an [agentlab.Store] kept in process memory, with the same
// semantics as [SQLite]: destroyed rows stay as history, times come back
// in UTC, event data goes through JSON, updates are atomic. It is safe for
// concurrent use; every value in or out is a deep copy. The zero value is
// not usable: create one with [NewMemory]. Nothing needs closing, but
// calls after Close fail with [agentlab.ErrClosed].
type Memory struct {
	now func() time.Time

	mu        sync.Mutex // guards the fields below
	closed    bool
	sandboxes []agentlab.SandboxRecord // every row, in creation order
	vmidRows  map[int][]int            // VMID -> indexes in sandboxes
	jobs      map[string]*memJob
	jobSeq    int64
	events    []agentlab.Event
	lastEvent int64
}

// memJob is a stored job and its insertion order.
type memJob struct {
	rec agentlab.JobRecord
	seq int64
}

// NewMemory returns an empty in-memory store. Only opts.Now is used.
func NewMemory(opts *Options) *Memory {
	o := opts.withDefaults()
	return &Memory{now: o.Now, jobs: map[string]*memJob{}, vmidRows: map[int][]int{}}
}

// lock takes the mutex; it fails with ctx's error when ctx is done and
// with ErrClosed after Close. On success the caller must unlock.
func (m *Memory) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return agentlab.ErrClosed
	}
	return nil
}

// pick returns the index among rows of the live one, else of the newest
// destroyed one, else -1.
func (m *Memory) pick(rows []int) int {
	for _, i := range slices.Backward(rows) {
		if m.sandboxes[i].State != agentlab.StateDestroyed {
			return i
		}
	}
	if len(rows) == 0 {
		return -1
	}
	return rows[len(rows)-1]
}

// byName returns the indexes of the rows named name, in creation order.
func (m *Memory) byName(name string) []int {
	var rows []int
	for i := range m.sandboxes {
		if name != "" && m.sandboxes[i].Name == name {
			rows = append(rows, i)
		}
	}
	return rows
}

// conflict returns the error for a live row other than skip holding rec's
// VMID or non-empty name. The VMID is checked first, as in SQLite.
func (m *Memory) conflict(rec *agentlab.SandboxRecord, skip int) error {
	if rec.State == agentlab.StateDestroyed {
		return nil
	}
	live := func(i int) bool {
		return i != skip && m.sandboxes[i].State != agentlab.StateDestroyed
	}
	for _, i := range m.vmidRows[rec.VMID] {
		if live(i) {
			return agentlab.ErrVMIDConflict
		}
	}
	for i := range m.sandboxes {
		if rec.Name != "" && live(i) && m.sandboxes[i].Name == rec.Name {
			return agentlab.ErrAlreadyExists
		}
	}
	return nil
}

// CreateSandbox inserts rec, with the contract of [SQLite.CreateSandbox].
func (m *Memory) CreateSandbox(ctx context.Context, rec *agentlab.SandboxRecord) error {
	if err := m.createSandbox(ctx, rec); err != nil {
		return fmt.Errorf("create sandbox %d: %w", rec.VMID, err)
	}
	return nil
}

// createSandbox does CreateSandbox under the mutex.
func (m *Memory) createSandbox(ctx context.Context, rec *agentlab.SandboxRecord) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	next, err := newSandbox(rec, m.now())
	if err != nil {
		return err
	}
	if err := m.conflict(&next, -1); err != nil {
		return err
	}
	m.vmidRows[next.VMID] = append(m.vmidRows[next.VMID], len(m.sandboxes))
	m.sandboxes = append(m.sandboxes, next)
	*rec = setCreated(*rec, next)
	return nil
}

// GetSandbox returns a sandbox, with the contract of [SQLite.GetSandbox].
func (m *Memory) GetSandbox(ctx context.Context, vmid int) (agentlab.SandboxRecord, error) {
	rec, err := m.get(ctx, func() []int { return m.vmidRows[vmid] })
	if err != nil {
		return rec, fmt.Errorf("get sandbox %d: %w", vmid, err)
	}
	return rec, nil
}

// GetSandboxByName returns a sandbox, with the contract of
// [SQLite.GetSandboxByName].
func (m *Memory) GetSandboxByName(ctx context.Context,
	name string) (agentlab.SandboxRecord, error) {
	rec, err := m.get(ctx, func() []int { return m.byName(name) })
	if err != nil {
		return rec, fmt.Errorf("get sandbox %q: %w", name, err)
	}
	return rec, nil
}

// get returns a copy of the pick among the rows that rows returns.
func (m *Memory) get(ctx context.Context, rows func() []int) (agentlab.SandboxRecord, error) {
	if err := m.lock(ctx); err != nil {
		return agentlab.SandboxRecord{}, err
	}
	defer m.mu.Unlock()
	i := m.pick(rows())
	if i < 0 {
		return agentlab.SandboxRecord{}, agentlab.ErrNotFound
	}
	return m.sandboxes[i].Clone(), nil
}

// ListSandboxes returns copies of the rows f selects, with the contract of
// [SQLite.ListSandboxes].
func (m *Memory) ListSandboxes(ctx context.Context,
	f agentlab.SandboxFilter) ([]agentlab.SandboxRecord, error) {
	if err := m.lock(ctx); err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	defer m.mu.Unlock()
	var out []agentlab.SandboxRecord
	for i := range m.sandboxes {
		if matchSandbox(&f, &m.sandboxes[i]) {
			out = append(out, m.sandboxes[i].Clone())
		}
	}
	// Rows are in creation order, so a stable sort keeps history in order.
	slices.SortStableFunc(out, func(a, b agentlab.SandboxRecord) int {
		return cmp.Compare(a.VMID, b.VMID)
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// matchSandbox reports whether f selects r.
func matchSandbox(f *agentlab.SandboxFilter, r *agentlab.SandboxRecord) bool {
	switch {
	case len(f.States) > 0 && !slices.Contains(f.States, r.State),
		f.Profile != "" && r.Profile != f.Profile,
		f.JobID != "" && r.JobID != f.JobID,
		f.IP != "" && r.IP != f.IP:
		return false
	}
	if !f.ExpiredBefore.IsZero() &&
		(r.LeaseExpires.IsZero() || r.LeaseExpires.After(f.ExpiredBefore)) {
		return false
	}
	for k, v := range f.Labels {
		if got, ok := r.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// UpdateSandbox applies fn atomically, with the contract of
// [SQLite.UpdateSandbox]. fn runs under the store's mutex exactly once.
func (m *Memory) UpdateSandbox(ctx context.Context, vmid int,
	fn func(*agentlab.SandboxRecord) error) (agentlab.SandboxRecord, error) {
	out, _, err := m.UpdateSandboxEvents(ctx, vmid, noEvents(fn))
	return out, err
}

// UpdateSandboxEvents applies fn atomically and appends its events, with
// the contract of [SQLite.UpdateSandboxEvents]. fn runs under the store's
// mutex exactly once.
func (m *Memory) UpdateSandboxEvents(ctx context.Context, vmid int,
	fn func(*agentlab.SandboxRecord) ([]agentlab.Event, error)) (
	agentlab.SandboxRecord, []agentlab.Event, error) {
	out, evs, err := m.updateSandbox(ctx, vmid, fn)
	if err != nil {
		return out, nil, unwrapFn(err, fmt.Sprintf("update sandbox %d", vmid))
	}
	return out, evs, nil
}

// updateSandbox does UpdateSandboxEvents under the mutex.
func (m *Memory) updateSandbox(ctx context.Context, vmid int,
	fn func(*agentlab.SandboxRecord) ([]agentlab.Event, error)) (
	agentlab.SandboxRecord, []agentlab.Event, error) {
	if err := m.lock(ctx); err != nil {
		return agentlab.SandboxRecord{}, nil, err
	}
	defer m.mu.Unlock()
	i := m.pick(m.vmidRows[vmid])
	if i < 0 {
		return agentlab.SandboxRecord{}, nil, agentlab.ErrNotFound
	}
	now := m.now()
	next, evs, err := applySandbox(m.sandboxes[i], fn, now)
	if err != nil {
		return agentlab.SandboxRecord{}, nil, err
	}
	if err := m.conflict(&next, i); err != nil {
		return agentlab.SandboxRecord{}, nil, err
	}
	evs, stored, err := memEvents(evs, now)
	if err != nil {
		return agentlab.SandboxRecord{}, nil, err
	}
	m.sandboxes[i] = next.Clone()
	m.storeEvents(evs, stored)
	return next, evs, nil
}

// CreateJob inserts rec, with the contract of [SQLite.CreateJob].
func (m *Memory) CreateJob(ctx context.Context, rec *agentlab.JobRecord) error {
	if err := m.createJob(ctx, rec); err != nil {
		return fmt.Errorf("create job %s: %w", rec.ID, err)
	}
	return nil
}

// createJob does CreateJob under the mutex.
func (m *Memory) createJob(ctx context.Context, rec *agentlab.JobRecord) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	next, err := newJob(rec, m.now())
	if err != nil {
		return err
	}
	if _, ok := m.jobs[next.ID]; ok {
		return agentlab.ErrAlreadyExists
	}
	m.jobSeq++
	m.jobs[next.ID] = &memJob{rec: next, seq: m.jobSeq}
	rec.CreatedAt, rec.UpdatedAt, rec.Version = next.CreatedAt, next.UpdatedAt, next.Version
	return nil
}

// GetJob returns a copy of one job, with the contract of [SQLite.GetJob].
func (m *Memory) GetJob(ctx context.Context, id string) (agentlab.JobRecord, error) {
	if err := m.lock(ctx); err != nil {
		return agentlab.JobRecord{}, fmt.Errorf("get job %s: %w", id, err)
	}
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return agentlab.JobRecord{}, fmt.Errorf("get job %s: %w", id, agentlab.ErrNotFound)
	}
	return cloneJob(j.rec), nil
}

// ListJobs returns copies of the jobs f selects, with the contract of
// [SQLite.ListJobs].
func (m *Memory) ListJobs(ctx context.Context,
	f agentlab.JobFilter) ([]agentlab.JobRecord, error) {
	if err := m.lock(ctx); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer m.mu.Unlock()
	var sel []*memJob
	for _, j := range m.jobs {
		if (len(f.Statuses) == 0 || slices.Contains(f.Statuses, j.rec.Status)) &&
			(f.VMID == 0 || j.rec.VMID == f.VMID) {
			sel = append(sel, j)
		}
	}
	slices.SortFunc(sel, func(a, b *memJob) int {
		if c := b.rec.CreatedAt.Compare(a.rec.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.seq, a.seq)
	})
	if f.Limit > 0 && len(sel) > f.Limit {
		sel = sel[:f.Limit]
	}
	out := make([]agentlab.JobRecord, 0, len(sel))
	for _, j := range sel {
		out = append(out, cloneJob(j.rec))
	}
	return out, nil
}

// UpdateJob applies fn atomically, with the contract of [SQLite.UpdateJob].
func (m *Memory) UpdateJob(ctx context.Context, id string,
	fn func(*agentlab.JobRecord) error) (agentlab.JobRecord, error) {
	out, err := m.updateJob(ctx, id, fn)
	return out, unwrapFn(err, "update job "+id)
}

// updateJob does UpdateJob under the mutex.
func (m *Memory) updateJob(ctx context.Context, id string,
	fn func(*agentlab.JobRecord) error) (agentlab.JobRecord, error) {
	if err := m.lock(ctx); err != nil {
		return agentlab.JobRecord{}, err
	}
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return agentlab.JobRecord{}, agentlab.ErrNotFound
	}
	next, err := applyJob(j.rec, fn, m.now())
	if err != nil {
		return agentlab.JobRecord{}, err
	}
	j.rec = cloneJob(next)
	return next, nil
}

// AppendEvent stores a copy of ev and sets its ID, with the contract of
// [SQLite.AppendEvent]: the data goes through JSON.
func (m *Memory) AppendEvent(ctx context.Context, ev *agentlab.Event) error {
	if err := m.appendEvent(ctx, ev); err != nil {
		return fmt.Errorf("append event %s: %w", ev.Kind, err)
	}
	return nil
}

// appendEvent does AppendEvent under the mutex.
func (m *Memory) appendEvent(ctx context.Context, ev *agentlab.Event) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	defer m.mu.Unlock()
	evs, stored, err := memEvents([]agentlab.Event{*ev}, m.now())
	if err != nil {
		return err
	}
	m.storeEvents(evs, stored)
	ev.ID, ev.Time, ev.SchemaVersion = evs[0].ID, evs[0].Time, evs[0].SchemaVersion
	return nil
}

// memEvents prepares evs as [prepareEvents] does and returns them with the
// copies to store: times in UTC, data through JSON.
func memEvents(evs []agentlab.Event, now time.Time) (out, stored []agentlab.Event, err error) {
	out, data, err := prepareEvents(evs, now)
	if err != nil {
		return nil, nil, err
	}
	stored = slices.Clone(out)
	for i := range stored {
		stored[i].Time, stored[i].Data = normTime(out[i].Time), nil
		if data[i] == nil {
			continue
		}
		if err := json.Unmarshal([]byte(data[i].(string)), &stored[i].Data); err != nil {
			return nil, nil, fmt.Errorf("decode json: %w", err)
		}
	}
	return out, stored, nil
}

// storeEvents gives evs and stored, its copies to store, the next IDs and
// appends stored. The caller holds the mutex.
func (m *Memory) storeEvents(evs, stored []agentlab.Event) {
	for i := range stored {
		m.lastEvent++
		stored[i].ID, evs[i].ID = m.lastEvent, m.lastEvent
	}
	m.events = append(m.events, stored...)
}

// ListEvents returns copies of the events f selects, with the contract of
// [SQLite.ListEvents].
func (m *Memory) ListEvents(ctx context.Context,
	f agentlab.EventFilter) ([]agentlab.Event, error) {
	if err := m.lock(ctx); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer m.mu.Unlock()
	// Events are in ID order; skip the ones at or below AfterID.
	start := sort.Search(len(m.events), func(i int) bool { return m.events[i].ID > f.AfterID })
	var out []agentlab.Event
	for i := start; i < len(m.events); i++ {
		if f.Match(&m.events[i]) {
			out = append(out, m.events[i])
		}
	}
	if f.Limit > 0 && len(out) > f.Limit {
		if f.Last {
			out = out[len(out)-f.Limit:]
		} else {
			out = out[:f.Limit]
		}
	}
	return cloneEvents(out), nil
}

// cloneEvents deep-copies the events' data.
func cloneEvents(evs []agentlab.Event) []agentlab.Event {
	out := make([]agentlab.Event, len(evs))
	for i, ev := range evs {
		ev.Data = cloneJSONMap(ev.Data)
		out[i] = ev
	}
	return out
}

// cloneJSONMap deep-copies a map decoded from JSON.
func cloneJSONMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneJSONValue(v)
	}
	return out
}

// cloneJSONValue deep-copies a value decoded from JSON.
func cloneJSONValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return cloneJSONMap(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = cloneJSONValue(e)
		}
		return out
	}
	return v
}

// Summary counts records, with the contract of [SQLite.Summary].
func (m *Memory) Summary(ctx context.Context) (agentlab.Summary, error) {
	if err := m.lock(ctx); err != nil {
		return agentlab.Summary{}, fmt.Errorf("summarize store: %w", err)
	}
	defer m.mu.Unlock()
	sum := agentlab.Summary{
		SandboxesByState: map[agentlab.State]int{},
		SandboxesByMode:  map[string]int{},
		JobsByStatus:     map[agentlab.JobStatus]int{},
	}
	for _, r := range m.sandboxes {
		sum.SandboxesByState[r.State]++
		if r.State != agentlab.StateDestroyed {
			sum.SandboxesByMode[r.NetworkMode]++
		}
	}
	for _, j := range m.jobs {
		sum.JobsByStatus[j.rec.Status]++
	}
	return sum, nil
}

// Close marks the store closed. Calls after Close, Close included, return
// an error matching [agentlab.ErrClosed].
func (m *Memory) Close() error {
	if err := m.lock(context.Background()); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
