package agentlabtest

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/agentlab-sdk/agentlab"
	"github.com/stretchr/testify/require"
)

// eventIDs returns the IDs of evs in order.
func eventIDs(evs []agentlab.Event) []int64 {
	out := []int64{}
	for _, ev := range evs {
		out = append(out, ev.ID)
	}
	return out
}

// appendEvents appends evs in order and returns their IDs.
func appendEvents(t *testing.T, s agentlab.Store, evs []agentlab.Event) []int64 {
	t.Helper()
	ids := make([]int64, len(evs))
	for i := range evs {
		require.NoError(t, s.AppendEvent(t.Context(), &evs[i]))
		ids[i] = evs[i].ID
	}
	return ids
}

// testEventIDs checks that AppendEvent sets increasing IDs and that every field round-trips.
func testEventIDs(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	ev := agentlab.Event{Time: baseTime, Kind: agentlab.EventSandboxState,
		SchemaVersion: agentlab.EventSchemaVersion, VMID: 1065, JobID: "job_1",
		Message: "READY -> RUNNING",
		Data:    map[string]any{"from_state": "READY", "to_state": "RUNNING", "n": 2.5}}
	require.NoError(t, s.AppendEvent(ctx, &ev))
	require.Positive(t, ev.ID)

	more := make([]agentlab.Event, 5)
	for i := range more {
		more[i] = agentlab.Event{Kind: agentlab.EventJobLog, SchemaVersion: 1}
	}
	appendEvents(t, s, more)
	got, err := s.ListEvents(ctx, agentlab.EventFilter{})
	require.NoError(t, err)
	require.Len(t, got, 6)
	require.True(t, slices.IsSorted(eventIDs(got)))
	require.Len(t, slices.Compact(eventIDs(got)), 6, "IDs are unique")

	first := got[0]
	require.Equal(t, ev.ID, first.ID)
	require.True(t, first.Time.Equal(baseTime))
	require.Equal(t, ev.Kind, first.Kind)
	require.Equal(t, ev.SchemaVersion, first.SchemaVersion)
	require.Equal(t, ev.VMID, first.VMID)
	require.Equal(t, ev.JobID, first.JobID)
	require.Equal(t, ev.Message, first.Message)
	require.Equal(t, ev.Data, first.Data)
}

// eventFixture appends events for the filter cases and returns their IDs.
func eventFixture(t *testing.T, s agentlab.Store) []int64 {
	t.Helper()
	kinds := []string{agentlab.EventSandboxState, agentlab.EventJobLog, agentlab.EventJobStep}
	var evs []agentlab.Event
	for i := range 12 {
		evs = append(evs, agentlab.Event{
			Time: baseTime, Kind: kinds[i%3], VMID: 100 + i%2,
			JobID: fmt.Sprintf("job_%d", i%4), SchemaVersion: agentlab.EventSchemaVersion,
		})
	}
	return appendEvents(t, s, evs)
}

// testEventFilters checks every EventFilter field alone and combined.
func testEventFilters(t *testing.T, s agentlab.Store) {
	id := eventFixture(t, s)
	pick := func(is ...int) []int64 {
		out := []int64{}
		for _, i := range is {
			out = append(out, id[i])
		}
		return out
	}
	tests := []struct {
		name string
		f    agentlab.EventFilter
		want []int64
	}{
		{"all", agentlab.EventFilter{}, id},
		{"after", agentlab.EventFilter{AfterID: id[8]}, pick(9, 10, 11)},
		{"after last", agentlab.EventFilter{AfterID: id[11]}, []int64{}},
		{"limit", agentlab.EventFilter{Limit: 3}, pick(0, 1, 2)},
		{"last", agentlab.EventFilter{Limit: 3, Last: true}, pick(9, 10, 11)},
		{"last without limit", agentlab.EventFilter{Last: true}, id},
		{"vmid", agentlab.EventFilter{VMID: 101}, pick(1, 3, 5, 7, 9, 11)},
		{"job", agentlab.EventFilter{JobID: "job_2"}, pick(2, 6, 10)},
		{"kinds", agentlab.EventFilter{Kinds: []string{agentlab.EventJobLog,
			agentlab.EventJobStep}}, pick(1, 2, 4, 5, 7, 8, 10, 11)},
		{"vmid after limit", agentlab.EventFilter{VMID: 100, AfterID: id[2], Limit: 2},
			pick(4, 6)},
		{"vmid last", agentlab.EventFilter{VMID: 100, Limit: 2, Last: true}, pick(8, 10)},
		{"job kinds", agentlab.EventFilter{JobID: "job_1", Kinds: []string{
			agentlab.EventJobLog}}, pick(1)},
		{"after last limit", agentlab.EventFilter{AfterID: id[5], Limit: 2, Last: true},
			pick(10, 11)},
		{"nothing", agentlab.EventFilter{VMID: 100, JobID: "job_1"}, []int64{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListEvents(t.Context(), tc.f)
			require.NoError(t, err)
			require.Equal(t, tc.want, eventIDs(got))
			for _, ev := range got {
				require.True(t, tc.f.Match(&ev), "event %d matches the filter", ev.ID)
			}
		})
	}
}

// testEventConcurrent checks that concurrent appends get unique IDs that increase per writer.
func testEventConcurrent(t *testing.T, s agentlab.Store) {
	const workers, perWorker = 8, 40
	ids := make([][]int64, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				ev := agentlab.Event{Kind: agentlab.EventJobLog, VMID: w + 1,
					SchemaVersion: agentlab.EventSchemaVersion}
				if errs[w] = s.AppendEvent(t.Context(), &ev); errs[w] != nil {
					return
				}
				ids[w] = append(ids[w], ev.ID)
			}
		}()
	}
	wg.Wait()
	var all []int64
	for w := range workers {
		require.NoError(t, errs[w])
		require.True(t, slices.IsSorted(ids[w]), "one writer's IDs increase")
		all = append(all, ids[w]...)
	}
	slices.Sort(all)
	require.Len(t, slices.Compact(all), workers*perWorker, "IDs are unique")
	got, err := s.ListEvents(t.Context(), agentlab.EventFilter{})
	require.NoError(t, err)
	require.Equal(t, all, eventIDs(got))
}

// testSummary checks the counts: all rows by state, live ones by mode, jobs by status.
func testSummary(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	for i, st := range []struct {
		state agentlab.State
		mode  string
	}{
		{agentlab.StateReady, "nat"}, {agentlab.StateReady, "off"},
		{agentlab.StateRunning, "nat"}, {agentlab.StateDestroyed, "nat"},
		{agentlab.StateDestroyed, "allowlist"},
	} {
		mustCreate(t, s, agentlab.SandboxRecord{VMID: 2000 + i, Name: fmt.Sprint("s", i),
			State: st.state, NetworkMode: st.mode})
	}
	for i, st := range []agentlab.JobStatus{agentlab.JobRunning, agentlab.JobCompleted,
		agentlab.JobCompleted} {
		require.NoError(t, s.CreateJob(ctx, &agentlab.JobRecord{ID: fmt.Sprint("job_s", i),
			Status: st}))
	}
	sum, err := s.Summary(ctx)
	require.NoError(t, err)
	require.Equal(t, map[agentlab.State]int{agentlab.StateReady: 2, agentlab.StateRunning: 1,
		agentlab.StateDestroyed: 2}, sum.SandboxesByState)
	require.Equal(t, map[string]int{"nat": 2, "off": 1}, sum.SandboxesByMode)
	require.Equal(t, map[agentlab.JobStatus]int{agentlab.JobRunning: 1,
		agentlab.JobCompleted: 2}, sum.JobsByStatus)
}

// testClosed checks that every method fails with ErrClosed after Close.
func testClosed(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	mustCreate(t, s, agentlab.SandboxRecord{VMID: 3000, Name: "c", State: agentlab.StateReady})
	require.NoError(t, s.Close())
	noopS := func(*agentlab.SandboxRecord) error { return nil }
	noopJ := func(*agentlab.JobRecord) error { return nil }
	calls := map[string]func() error{
		"CreateSandbox": func() error {
			return s.CreateSandbox(ctx, &agentlab.SandboxRecord{VMID: 3001, State: agentlab.StateReady})
		},
		"GetSandbox":       func() error { _, err := s.GetSandbox(ctx, 3000); return err },
		"GetSandboxByName": func() error { _, err := s.GetSandboxByName(ctx, "c"); return err },
		"ListSandboxes": func() error {
			_, err := s.ListSandboxes(ctx, agentlab.SandboxFilter{})
			return err
		},
		"UpdateSandbox": func() error { _, err := s.UpdateSandbox(ctx, 3000, noopS); return err },
		"UpdateSandboxEvents": func() error {
			_, _, err := s.UpdateSandboxEvents(ctx, 3000,
				func(*agentlab.SandboxRecord) ([]agentlab.Event, error) { return nil, nil })
			return err
		},
		"CreateJob": func() error { return s.CreateJob(ctx, &agentlab.JobRecord{ID: "job_c"}) },
		"GetJob":    func() error { _, err := s.GetJob(ctx, "job_c"); return err },
		"ListJobs":  func() error { _, err := s.ListJobs(ctx, agentlab.JobFilter{}); return err },
		"UpdateJob": func() error { _, err := s.UpdateJob(ctx, "job_c", noopJ); return err },
		"AppendEvent": func() error {
			return s.AppendEvent(ctx, &agentlab.Event{Kind: agentlab.EventJobLog})
		},
		"ListEvents": func() error { _, err := s.ListEvents(ctx, agentlab.EventFilter{}); return err },
		"Summary":    func() error { _, err := s.Summary(ctx); return err },
	}
	for name, call := range calls {
		err := call()
		require.ErrorIs(t, err, agentlab.ErrClosed, name)
	}
}
