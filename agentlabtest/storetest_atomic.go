package agentlabtest

import (
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/agentlab-sdk/agentlab"
	"github.com/stretchr/testify/require"
)

// stateEvent returns a sandbox.state event of vmid with a sequence number.
func stateEvent(vmid, n int) agentlab.Event {
	return agentlab.Event{Kind: agentlab.EventSandboxState, VMID: vmid,
		Data: map[string]any{"n": strconv.Itoa(n)}}
}

// testUpdateEvents checks that UpdateSandboxEvents stores the record and
// the events together, with IDs above every earlier one, in fn's order.
func testUpdateEvents(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	rec := mustCreate(t, s, fullSandbox(900, "atomic"))
	before := appendEvents(t, s, []agentlab.Event{{Kind: agentlab.EventJobLog}})

	out, evs, err := s.UpdateSandboxEvents(ctx, 900,
		func(r *agentlab.SandboxRecord) ([]agentlab.Event, error) {
			r.State = agentlab.StateRunning
			return []agentlab.Event{stateEvent(900, 1), stateEvent(900, 2)}, nil
		})
	require.NoError(t, err)
	require.Equal(t, agentlab.StateRunning, out.State)
	require.Equal(t, rec.Version+1, out.Version)
	require.Len(t, evs, 2)
	require.Greater(t, evs[0].ID, before[0])
	require.Greater(t, evs[1].ID, evs[0].ID)
	for i, ev := range evs {
		require.False(t, ev.Time.IsZero(), "event %d has a time", i)
		require.Equal(t, agentlab.EventSchemaVersion, ev.SchemaVersion)
		require.Equal(t, strconv.Itoa(i+1), ev.Data["n"])
	}

	got, err := s.ListEvents(ctx, agentlab.EventFilter{AfterID: before[0]})
	require.NoError(t, err)
	require.Equal(t, eventIDs(evs), eventIDs(got))
	require.Equal(t, "2", got[1].Data["n"])
	stored, err := s.GetSandbox(ctx, 900)
	require.NoError(t, err)
	require.Equal(t, agentlab.StateRunning, stored.State)

	_, none, err := s.UpdateSandboxEvents(ctx, 900,
		func(r *agentlab.SandboxRecord) ([]agentlab.Event, error) { return nil, nil })
	require.NoError(t, err)
	require.Empty(t, none)
}

// testUpdateEventsFailures checks that a failing fn, an invalid event and
// an unknown VMID store neither the record nor any event.
func testUpdateEventsFailures(t *testing.T, s agentlab.Store) {
	ctx := t.Context()
	rec := mustCreate(t, s, fullSandbox(910, "atomic-fail"))
	want := &fnErr{code: 9}
	tests := []struct {
		name  string
		vmid  int
		fn    func(*agentlab.SandboxRecord) ([]agentlab.Event, error)
		check func(t *testing.T, err error)
	}{
		{"fn error", 910, func(r *agentlab.SandboxRecord) ([]agentlab.Event, error) {
			r.State = agentlab.StateFailed
			return []agentlab.Event{stateEvent(910, 1)}, want
		}, func(t *testing.T, err error) {
			require.True(t, err == error(want), "fn's error returned as is, got %v", err)
		}},
		{"empty kind", 910, func(r *agentlab.SandboxRecord) ([]agentlab.Event, error) {
			r.State = agentlab.StateFailed
			return []agentlab.Event{stateEvent(910, 1), {VMID: 910}}, nil
		}, func(t *testing.T, err error) {
			require.ErrorIs(t, err, agentlab.ErrInvalidArgument)
		}},
		{"not found", 919, func(r *agentlab.SandboxRecord) ([]agentlab.Event, error) {
			return []agentlab.Event{stateEvent(919, 1)}, nil
		}, func(t *testing.T, err error) {
			require.ErrorIs(t, err, agentlab.ErrNotFound)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, evs, err := s.UpdateSandboxEvents(ctx, tc.vmid, tc.fn)
			tc.check(t, err)
			require.Empty(t, evs)
			got, err := s.ListEvents(ctx, agentlab.EventFilter{})
			require.NoError(t, err)
			require.Empty(t, got, "no event stored")
			cur, err := s.GetSandbox(ctx, 910)
			require.NoError(t, err)
			requireSandbox(t, rec, cur)
		})
	}
}

// testUpdateEventsConcurrent checks that racing updates with events lose
// nothing and that the events' ID order is the order of the updates: each
// update writes the counter it reached into its event, so the stored
// events, read by ID, must count 1, 2, 3, ...
func testUpdateEventsConcurrent(t *testing.T, s agentlab.Store) {
	const workers, perWorker = 8, 25
	mustCreate(t, s, agentlab.SandboxRecord{VMID: 920, Name: "atomic-race",
		State: agentlab.StateReady, Labels: map[string]string{"n": "0"}})
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				if errs[w] = countWithEvent(t, s, 920); errs[w] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))

	got, err := s.ListEvents(t.Context(), agentlab.EventFilter{VMID: 920})
	require.NoError(t, err)
	require.Len(t, got, workers*perWorker)
	for i, ev := range got {
		require.Equal(t, strconv.Itoa(i+1), ev.Data["n"], "event %d", ev.ID)
	}
	rec, err := s.GetSandbox(t.Context(), 920)
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(workers*perWorker), rec.Labels["n"])
}

// countWithEvent adds one to the "n" label of vmid and appends an event
// carrying the new value, in one update.
func countWithEvent(t *testing.T, s agentlab.Store, vmid int) error {
	_, _, err := s.UpdateSandboxEvents(t.Context(), vmid,
		func(r *agentlab.SandboxRecord) ([]agentlab.Event, error) {
			v, err := strconv.Atoi(r.Labels["n"])
			if err != nil {
				return nil, err
			}
			r.Labels["n"] = strconv.Itoa(v + 1)
			return []agentlab.Event{stateEvent(vmid, v+1)}, nil
		})
	return err
}
