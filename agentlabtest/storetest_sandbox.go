package agentlabtest

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/stretchr/testify/require"
)

// fullSandbox returns a record with every field set to a non-zero value.
func fullSandbox(vmid int, name string) agentlab.SandboxRecord {
	return agentlab.SandboxRecord{
		VMID: vmid, Name: name, Profile: "yolo", State: agentlab.StateReady,
		Node: "pve1", IP: "10.0.0.5", HostKey: "ssh-ed25519 AAAAC3Nza host",
		NetworkMode: "nat",
		Labels:      map[string]string{"team": "a", `odd "key".x`: "v=1 ü"},
		User:        "agent", Port: 2222,
		IdleStop: 90*time.Minute + time.Nanosecond, OnExpiry: "stop",
		Keepalive: true, JobID: "job_00112233aabbccdd",
		LeaseExpires: baseTime.Add(time.Hour), LastActivity: time.Now(),
		Op: "provision", OpStarted: baseTime.Add(-time.Second),
		CleanSnapshot: true, LastError: "clone: boom", Owner: "agentlab:test",
		CreatedAt: baseTime.Add(-time.Hour), UpdatedAt: baseTime, Version: 1,
	}
}

// normSandbox makes r comparable: times in UTC, empty labels as nil.
func normSandbox(r agentlab.SandboxRecord) agentlab.SandboxRecord {
	r = r.Clone()
	for _, p := range []*time.Time{&r.LeaseExpires, &r.LastActivity, &r.OpStarted,
		&r.CreatedAt, &r.UpdatedAt} {
		*p = normTime(*p)
	}
	if len(r.Labels) == 0 {
		r.Labels = nil
	}
	return r
}

// requireSandbox fails unless got equals want field by field.
func requireSandbox(t *testing.T, want, got agentlab.SandboxRecord) {
	t.Helper()
	require.Equal(t, normSandbox(want), normSandbox(got))
}

// vmids returns the VMIDs of recs in order.
func vmids(recs []agentlab.SandboxRecord) []int {
	out := []int{}
	for _, r := range recs {
		out = append(out, r.VMID)
	}
	return out
}

// mustCreate creates rec and returns it as the store set it.
func mustCreate(t *testing.T, s agentlab.Store, rec agentlab.SandboxRecord) agentlab.SandboxRecord {
	t.Helper()
	require.NoError(t, s.CreateSandbox(t.Context(), &rec))
	return rec
}

// setState returns an update function that moves a sandbox to st.
func setState(st agentlab.State) func(*agentlab.SandboxRecord) error {
	return func(r *agentlab.SandboxRecord) error { r.State = st; return nil }
}

// testSandboxRoundTrip checks that every field survives create, get, get by name and list.
func testSandboxRoundTrip(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	requireAllSet(t, fullSandbox(1065, "full"))
	rec := mustCreate(t, s, fullSandbox(1065, "full"))
	mustCreate(t, s, agentlab.SandboxRecord{VMID: 1066, Name: "bare", State: agentlab.StateRequested})

	got, err := s.GetSandbox(ctx, 1065)
	require.NoError(t, err)
	requireSandbox(t, rec, got)
	got, err = s.GetSandboxByName(ctx, "full")
	require.NoError(t, err)
	requireSandbox(t, rec, got)
	list, err := s.ListSandboxes(ctx, agentlab.SandboxFilter{})
	require.NoError(t, err)
	require.Equal(t, []int{1065, 1066}, vmids(list))
	requireSandbox(t, rec, list[0])
	require.True(t, list[0].LeaseExpires.Equal(baseTime.Add(time.Hour)))
	require.Equal(t, 90*time.Minute+time.Nanosecond, list[0].IdleStop)
	require.Empty(t, list[1].Labels)
	require.True(t, list[1].LeaseExpires.IsZero(), "zero time stays zero")
}

// testSandboxCreateSets checks the fields CreateSandbox sets on the caller's record.
func testSandboxCreateSets(t *testing.T, s agentlab.Store) {
	before := time.Now()
	rec := agentlab.SandboxRecord{VMID: 200, Name: "a", State: agentlab.StateRequested}
	require.NoError(t, s.CreateSandbox(t.Context(), &rec))
	require.NotZero(t, rec.Version)
	require.False(t, rec.CreatedAt.IsZero(), "CreatedAt set")
	require.False(t, rec.UpdatedAt.Before(before.Truncate(time.Second)), "UpdatedAt is now")
	got, err := s.GetSandbox(t.Context(), 200)
	require.NoError(t, err)
	requireSandbox(t, rec, got)
}

// testSandboxConflicts checks VMID and name conflicts among live sandboxes.
func testSandboxConflicts(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	orig := mustCreate(t, s, fullSandbox(300, "taken"))

	dupVMID := agentlab.SandboxRecord{VMID: 300, Name: "other", State: agentlab.StateRequested}
	err := s.CreateSandbox(ctx, &dupVMID)
	requireErrorIs(t, err, agentlab.ErrVMIDConflict, agentlab.ErrAlreadyExists)

	dupName := agentlab.SandboxRecord{VMID: 301, Name: "taken", State: agentlab.StateRequested}
	err = s.CreateSandbox(ctx, &dupName)
	requireErrorIs(t, err, agentlab.ErrAlreadyExists)
	require.NotErrorIs(t, err, agentlab.ErrVMIDConflict)

	// Renaming onto a live name fails too, and changes nothing.
	mustCreate(t, s, agentlab.SandboxRecord{VMID: 302, Name: "free", State: agentlab.StateReady})
	_, err = s.UpdateSandbox(ctx, 302, func(r *agentlab.SandboxRecord) error {
		r.Name = "taken"
		return nil
	})
	requireErrorIs(t, err, agentlab.ErrAlreadyExists)

	list, err := s.ListSandboxes(ctx, agentlab.SandboxFilter{})
	require.NoError(t, err)
	require.Equal(t, []int{300, 302}, vmids(list))
	requireSandbox(t, orig, list[0])
	require.Equal(t, "free", list[1].Name)
}

// testSandboxReuse checks VMID and name reuse after DESTROYED, with history kept.
func testSandboxReuse(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	first := fullSandbox(400, "reused")
	first.Profile = "old"
	mustCreate(t, s, first)
	_, err := s.UpdateSandbox(ctx, 400, setState(agentlab.StateDestroyed))
	require.NoError(t, err)

	second := agentlab.SandboxRecord{VMID: 400, Name: "reused", Profile: "new",
		State: agentlab.StateRequested}
	second = mustCreate(t, s, second)
	for _, get := range []func() (agentlab.SandboxRecord, error){
		func() (agentlab.SandboxRecord, error) { return s.GetSandbox(ctx, 400) },
		func() (agentlab.SandboxRecord, error) { return s.GetSandboxByName(ctx, "reused") },
	} {
		got, err := get()
		require.NoError(t, err)
		requireSandbox(t, second, got)
	}

	// Both rows are listed, oldest first; then the new one is destroyed too
	// and becomes the one returned.
	list, err := s.ListSandboxes(ctx, agentlab.SandboxFilter{})
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, []string{"old", "new"}, []string{list[0].Profile, list[1].Profile})
	_, err = s.UpdateSandbox(ctx, 400, setState(agentlab.StateDestroyed))
	require.NoError(t, err)
	got, err := s.GetSandbox(ctx, 400)
	require.NoError(t, err)
	require.Equal(t, "new", got.Profile)
	require.Equal(t, agentlab.StateDestroyed, got.State)
	got, err = s.GetSandboxByName(ctx, "reused")
	require.NoError(t, err)
	require.Equal(t, "new", got.Profile)
}

// testSandboxUpdate checks that UpdateSandbox stores fn's changes with Version+1.
func testSandboxUpdate(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	rec := mustCreate(t, s, fullSandbox(500, "upd"))
	lease := baseTime.Add(48 * time.Hour)
	out, err := s.UpdateSandbox(ctx, 500, func(r *agentlab.SandboxRecord) error {
		r.State, r.IP, r.LeaseExpires = agentlab.StateRunning, "10.0.0.9", lease
		r.Labels["added"] = "yes"
		r.OpStarted = time.Time{}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, rec.Version+1, out.Version)
	require.False(t, out.UpdatedAt.Before(rec.UpdatedAt))

	want := rec.Clone()
	want.State, want.IP, want.LeaseExpires = agentlab.StateRunning, "10.0.0.9", lease
	want.Labels["added"] = "yes"
	want.OpStarted, want.Version, want.UpdatedAt = time.Time{}, out.Version, out.UpdatedAt
	requireSandbox(t, want, out)
	got, err := s.GetSandbox(ctx, 500)
	require.NoError(t, err)
	requireSandbox(t, want, got)
}

// fnErr is a caller's typed error, returned from an update function.
type fnErr struct{ code int }

// Error returns the message with the code.
func (e *fnErr) Error() string { return "fn error " + strconv.Itoa(e.code) }

// testSandboxUpdateFnError checks that fn's error aborts the update and is returned as is.
func testSandboxUpdateFnError(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	rec := mustCreate(t, s, fullSandbox(600, "fnerr"))
	want := &fnErr{code: 7}
	_, err := s.UpdateSandbox(ctx, 600, func(r *agentlab.SandboxRecord) error {
		r.State, r.Labels["team"] = agentlab.StateFailed, "changed"
		return want
	})
	require.True(t, err == error(want), "fn's error returned as is, got %v", err)
	var typed *fnErr
	require.True(t, errors.As(err, &typed))

	got, err := s.GetSandbox(ctx, 600)
	require.NoError(t, err)
	requireSandbox(t, rec, got)
}

// testSandboxUpdateConcurrent checks that racing read-modify-writes lose no update.
func testSandboxUpdateConcurrent(t *testing.T, s agentlab.Store) {
	const workers, perWorker = 16, 50
	rec := mustCreate(t, s, agentlab.SandboxRecord{VMID: 700, Name: "counter",
		State: agentlab.StateReady, Labels: map[string]string{"n": "0"}})
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- incrementN(t, s, 700, perWorker)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got, err := s.GetSandbox(t.Context(), 700)
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(workers*perWorker), got.Labels["n"])
	require.Equal(t, rec.Version+workers*perWorker, got.Version)
}

// incrementN adds one to the "n" label of vmid n times.
func incrementN(t *testing.T, s agentlab.Store, vmid, n int) error {
	for range n {
		_, err := s.UpdateSandbox(t.Context(), vmid, func(r *agentlab.SandboxRecord) error {
			v, err := strconv.Atoi(r.Labels["n"])
			if err != nil {
				return err
			}
			r.Labels["n"] = strconv.Itoa(v + 1)
			return nil
		})
		if err != nil {
			return fmt.Errorf("increment: %w", err)
		}
	}
	return nil
}

// testSandboxCopies checks that the store shares no map with its callers.
func testSandboxCopies(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	rec := fullSandbox(800, "copies")
	require.NoError(t, s.CreateSandbox(ctx, &rec))
	rec.Labels["team"] = "mutated after create"

	got, err := s.GetSandbox(ctx, 800)
	require.NoError(t, err)
	require.Equal(t, "a", got.Labels["team"])
	got.Labels["team"] = "mutated after get"

	var inFn map[string]string
	out, err := s.UpdateSandbox(ctx, 800, func(r *agentlab.SandboxRecord) error {
		inFn = r.Labels
		return nil
	})
	require.NoError(t, err)
	inFn["team"], out.Labels["x"] = "mutated after update", "y"
	list, err := s.ListSandboxes(ctx, agentlab.SandboxFilter{})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"team": "a", `odd "key".x`: "v=1 ü"}, list[0].Labels)
}

// testNotFound checks ErrNotFound for every lookup of a missing record.
func testNotFound(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	mustCreate(t, s, agentlab.SandboxRecord{VMID: 900, Name: "present", State: agentlab.StateReady})
	called := false
	noop := func(*agentlab.SandboxRecord) error { called = true; return nil }
	_, errGet := s.GetSandbox(ctx, 901)
	_, errName := s.GetSandboxByName(ctx, "absent")
	_, errUpd := s.UpdateSandbox(ctx, 901, noop)
	_, errJob := s.GetJob(ctx, "job_0000000000000000")
	_, errUpdJob := s.UpdateJob(ctx, "job_0000000000000000",
		func(*agentlab.JobRecord) error { called = true; return nil })
	for _, err := range []error{errGet, errName, errUpd, errJob, errUpdJob} {
		requireErrorIs(t, err, agentlab.ErrNotFound)
	}
	require.False(t, called, "update fn not called for a missing record")
	list, err := s.ListSandboxes(ctx, agentlab.SandboxFilter{Profile: "absent"})
	require.NoError(t, err)
	require.Empty(t, list)
}

// filterFixture creates the sandboxes the filter cases select from.
func filterFixture(t *testing.T, s agentlab.Store) time.Time {
	t.Helper()
	now := baseTime
	recs := []agentlab.SandboxRecord{
		{VMID: 1001, Name: "a", State: agentlab.StateReady, Profile: "yolo",
			Labels:       map[string]string{"team": "x", "env": "ci", "k.dot": "1"},
			LeaseExpires: now.Add(-time.Hour)},
		{VMID: 1002, Name: "b", State: agentlab.StateRunning, Profile: "yolo",
			Labels: map[string]string{"team": "x"}, JobID: "job_1", LeaseExpires: now},
		{VMID: 1003, Name: "c", State: agentlab.StateStopped, Profile: "safe",
			Labels:       map[string]string{"team": "y", "env": "ci", `q"uo\te`: "2"},
			LeaseExpires: now.Add(time.Hour)},
		{VMID: 1004, Name: "d", State: agentlab.StateReady, Profile: "safe", JobID: "job_2",
			IP: "10.77.0.4"},
		{VMID: 1005, Name: "e", State: agentlab.StateDestroyed, Profile: "yolo",
			Labels: map[string]string{"team": "x"}, LeaseExpires: now.Add(-2 * time.Hour)},
	}
	// Insert out of VMID order: listing must order by VMID.
	for _, i := range []int{3, 0, 4, 2, 1} {
		mustCreate(t, s, recs[i])
	}
	return now
}

// testSandboxFilters checks every SandboxFilter field alone and combined.
func testSandboxFilters(t *testing.T, s agentlab.Store) {
	now := filterFixture(t, s)
	tests := []struct {
		name string
		f    agentlab.SandboxFilter
		want []int
	}{
		{"all", agentlab.SandboxFilter{}, []int{1001, 1002, 1003, 1004, 1005}},
		{"one state", agentlab.SandboxFilter{States: []agentlab.State{agentlab.StateReady}},
			[]int{1001, 1004}},
		{"states", agentlab.SandboxFilter{States: []agentlab.State{agentlab.StateStopped,
			agentlab.StateDestroyed}}, []int{1003, 1005}},
		{"profile", agentlab.SandboxFilter{Profile: "safe"}, []int{1003, 1004}},
		{"label", agentlab.SandboxFilter{Labels: map[string]string{"team": "x"}},
			[]int{1001, 1002, 1005}},
		{"labels all match", agentlab.SandboxFilter{Labels: map[string]string{
			"team": "x", "env": "ci"}}, []int{1001}},
		{"label value differs", agentlab.SandboxFilter{Labels: map[string]string{
			"env": "prod"}}, []int{}},
		{"label key with dot", agentlab.SandboxFilter{Labels: map[string]string{
			"k.dot": "1"}}, []int{1001}},
		{"label key with quote", agentlab.SandboxFilter{Labels: map[string]string{
			`q"uo\te`: "2", "env": "ci"}}, []int{1003}},
		{"job", agentlab.SandboxFilter{JobID: "job_2"}, []int{1004}},
		{"ip", agentlab.SandboxFilter{IP: "10.77.0.4"}, []int{1004}},
		{"expired at or before", agentlab.SandboxFilter{ExpiredBefore: now},
			[]int{1001, 1002, 1005}},
		{"expired before earlier", agentlab.SandboxFilter{ExpiredBefore: now.Add(-time.Minute)},
			[]int{1001, 1005}},
		{"limit", agentlab.SandboxFilter{Limit: 2}, []int{1001, 1002}},
		{"combined", agentlab.SandboxFilter{
			States:        []agentlab.State{agentlab.StateReady, agentlab.StateRunning},
			Profile:       "yolo",
			Labels:        map[string]string{"team": "x"},
			ExpiredBefore: now.Add(time.Minute),
		}, []int{1001, 1002}},
		{"combined limit", agentlab.SandboxFilter{Profile: "yolo", Limit: 1}, []int{1001}},
		{"nothing", agentlab.SandboxFilter{Profile: "yolo", JobID: "job_2"}, []int{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListSandboxes(t.Context(), tc.f)
			require.NoError(t, err)
			require.Equal(t, tc.want, vmids(got))
		})
	}
}
