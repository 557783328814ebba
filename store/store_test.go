package store_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/store"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// forEachStore runs fn against a fresh SQLite and a fresh Memory store.
func forEachStore(t *testing.T, fn func(t *testing.T, s agentlab.Store)) {
	t.Helper()
	makers := map[string]func(t *testing.T) agentlab.Store{
		"sqlite": func(t *testing.T) agentlab.Store {
			s, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "s.db"), nil)
			require.NoError(t, err)
			return s
		},
		"memory": func(*testing.T) agentlab.Store { return store.NewMemory(nil) },
	}
	for name, mk := range makers {
		t.Run(name, func(t *testing.T) {
			s := mk(t)
			t.Cleanup(func() { _ = s.Close() })
			fn(t, s)
		})
	}
}

func TestInvalidArguments(t *testing.T) {
	tooLate := time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	tooEarly := time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)
	tests := []struct {
		name string
		call func(ctx context.Context, s agentlab.Store) error
	}{
		{"vmid zero", func(ctx context.Context, s agentlab.Store) error {
			return s.CreateSandbox(ctx, &agentlab.SandboxRecord{State: agentlab.StateReady})
		}},
		{"unknown state", func(ctx context.Context, s agentlab.Store) error {
			return s.CreateSandbox(ctx, &agentlab.SandboxRecord{VMID: 1, State: "BOGUS"})
		}},
		{"time after 2262", func(ctx context.Context, s agentlab.Store) error {
			return s.CreateSandbox(ctx, &agentlab.SandboxRecord{VMID: 1,
				State: agentlab.StateReady, LeaseExpires: tooLate})
		}},
		{"time before 1678", func(ctx context.Context, s agentlab.Store) error {
			return s.CreateJob(ctx, &agentlab.JobRecord{ID: "job_x", Deadline: tooEarly})
		}},
		{"empty job id", func(ctx context.Context, s agentlab.Store) error {
			return s.CreateJob(ctx, &agentlab.JobRecord{})
		}},
		{"empty event kind", func(ctx context.Context, s agentlab.Store) error {
			return s.AppendEvent(ctx, &agentlab.Event{})
		}},
		{"update changes vmid", func(ctx context.Context, s agentlab.Store) error {
			_, err := s.UpdateSandbox(ctx, 7, func(r *agentlab.SandboxRecord) error {
				r.VMID = 8
				return nil
			})
			return err
		}},
		{"update sets bad state", func(ctx context.Context, s agentlab.Store) error {
			_, err := s.UpdateSandbox(ctx, 7, func(r *agentlab.SandboxRecord) error {
				r.State = ""
				return nil
			})
			return err
		}},
		{"update changes job id", func(ctx context.Context, s agentlab.Store) error {
			_, err := s.UpdateJob(ctx, "job_7", func(r *agentlab.JobRecord) error {
				r.ID = "job_8"
				return nil
			})
			return err
		}},
	}
	forEachStore(t, func(t *testing.T, s agentlab.Store) {
		ctx := t.Context()
		require.NoError(t, s.CreateSandbox(ctx, &agentlab.SandboxRecord{VMID: 7,
			State: agentlab.StateReady}))
		require.NoError(t, s.CreateJob(ctx, &agentlab.JobRecord{ID: "job_7"}))
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				require.ErrorIs(t, tc.call(ctx, s), agentlab.ErrInvalidArgument)
			})
		}
		got, err := s.GetSandbox(ctx, 7)
		require.NoError(t, err)
		require.Equal(t, int64(1), got.Version, "failed updates changed nothing")
	})
}

func TestStoredForms(t *testing.T) {
	forEachStore(t, func(t *testing.T, s agentlab.Store) {
		ctx := t.Context()
		epoch := time.Unix(0, 0)
		rec := agentlab.SandboxRecord{VMID: 1, Labels: map[string]string{},
			LeaseExpires: epoch, LastActivity: time.Now()}
		require.NoError(t, s.CreateSandbox(ctx, &rec))
		require.Equal(t, agentlab.StateRequested, rec.State, "empty state defaults")
		got, err := s.GetSandbox(ctx, 1)
		require.NoError(t, err)
		require.NotNil(t, got.Labels, "empty map stays empty, not nil")
		require.True(t, got.LeaseExpires.Equal(epoch), "the epoch is not the zero time")
		require.Equal(t, time.UTC, got.LastActivity.Location())
		require.True(t, got.LastActivity.Equal(rec.LastActivity))

		ev := agentlab.Event{Kind: agentlab.EventJobLog,
			Data: map[string]any{"n": 3, "list": []string{"a"}, "nested": map[string]int{"x": 1}}}
		require.NoError(t, s.AppendEvent(ctx, &ev))
		require.False(t, ev.Time.IsZero(), "time defaults to now")
		require.Equal(t, agentlab.EventSchemaVersion, ev.SchemaVersion)
		evs, err := s.ListEvents(ctx, agentlab.EventFilter{})
		require.NoError(t, err)
		require.Equal(t, map[string]any{"n": 3.0, "list": []any{"a"},
			"nested": map[string]any{"x": 1.0}}, evs[0].Data, "data goes through JSON")

		err = s.AppendEvent(ctx, &agentlab.Event{Kind: "x", Data: map[string]any{"f": math.NaN()}})
		require.Error(t, err)
	})
}

func TestCanceledContext(t *testing.T) {
	forEachStore(t, func(t *testing.T, s agentlab.Store) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := s.CreateSandbox(ctx, &agentlab.SandboxRecord{VMID: 1, State: agentlab.StateReady})
		require.ErrorIs(t, err, context.Canceled)
		_, err = s.ListEvents(ctx, agentlab.EventFilter{})
		require.ErrorIs(t, err, context.Canceled)
	})
}

func TestCreatedAtKept(t *testing.T) {
	clock := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	opts := &store.Options{Now: func() time.Time { return clock }}
	sq, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "s.db"), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sq.Close() })
	for name, s := range map[string]agentlab.Store{"sqlite": sq, "memory": store.NewMemory(opts)} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			given := clock.Add(-time.Hour)
			a := agentlab.SandboxRecord{VMID: 1, State: agentlab.StateReady, CreatedAt: given}
			b := agentlab.SandboxRecord{VMID: 2, State: agentlab.StateReady}
			require.NoError(t, s.CreateSandbox(ctx, &a))
			require.NoError(t, s.CreateSandbox(ctx, &b))
			require.True(t, a.CreatedAt.Equal(given))
			require.True(t, b.CreatedAt.Equal(clock))
			require.True(t, a.UpdatedAt.Equal(clock))
			out, err := s.UpdateSandbox(ctx, 1, func(*agentlab.SandboxRecord) error { return nil })
			require.NoError(t, err)
			require.True(t, out.UpdatedAt.Equal(clock))
			require.Equal(t, int64(2), out.Version)
		})
	}
}

func TestConflictOrder(t *testing.T) {
	forEachStore(t, func(t *testing.T, s agentlab.Store) {
		ctx := t.Context()
		require.NoError(t, s.CreateSandbox(ctx, &agentlab.SandboxRecord{VMID: 1, Name: "one",
			State: agentlab.StateReady}))
		require.NoError(t, s.CreateSandbox(ctx, &agentlab.SandboxRecord{VMID: 2, Name: "two",
			State: agentlab.StateReady}))
		// Both the VMID and the name are taken, by different rows: the VMID
		// conflict is the one reported.
		err := s.CreateSandbox(ctx, &agentlab.SandboxRecord{VMID: 2, Name: "one",
			State: agentlab.StateReady})
		require.ErrorIs(t, err, agentlab.ErrVMIDConflict)
		// Unnamed sandboxes never conflict on the name.
		for vmid := 3; vmid <= 4; vmid++ {
			require.NoError(t, s.CreateSandbox(ctx, &agentlab.SandboxRecord{VMID: vmid,
				State: agentlab.StateReady}))
		}
		_, err = s.GetSandboxByName(ctx, "")
		require.ErrorIs(t, err, agentlab.ErrNotFound)
	})
}

func TestConflictOrderAfterReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := store.Open(t.Context(), path, nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	s, err = store.Open(t.Context(), path, nil) // schema parsed from the file
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	ctx := t.Context()
	for _, r := range []agentlab.SandboxRecord{{VMID: 1, Name: "one"}, {VMID: 2, Name: "two"}} {
		require.NoError(t, s.CreateSandbox(ctx, &r))
	}
	err = s.CreateSandbox(ctx, &agentlab.SandboxRecord{VMID: 2, Name: "one"})
	require.ErrorIs(t, err, agentlab.ErrVMIDConflict)
}
