package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/require"
)

// openTemp opens a store in a fresh directory and closes it at cleanup.
func openTemp(t *testing.T, opts *Options) *SQLite {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "state.db"), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// pragma reads one integer or text pragma on db's connection.
func pragma(t *testing.T, s *SQLite, readPool bool, name string) string {
	t.Helper()
	db := s.w
	if readPool {
		db = s.r
	}
	var v string
	require.NoError(t, db.QueryRowContext(t.Context(), "PRAGMA "+name).Scan(&v))
	return v
}

func TestOpenPragmas(t *testing.T) {
	tests := []struct {
		name     string
		opts     *Options
		syncMode string
	}{
		{"default NORMAL", nil, "1"},
		{"SyncFull", &Options{SyncFull: true}, "2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTemp(t, tc.opts)
			require.Equal(t, "wal", pragma(t, s, false, "journal_mode"))
			require.Equal(t, tc.syncMode, pragma(t, s, false, "synchronous"))
			require.Equal(t, "1", pragma(t, s, false, "foreign_keys"))
			require.Equal(t, "10000", pragma(t, s, false, "busy_timeout"))
			require.Equal(t, "10000", pragma(t, s, true, "busy_timeout"))
			require.Equal(t, "1", pragma(t, s, true, "query_only"))
			require.Equal(t, 1, s.w.Stats().MaxOpenConnections)
			require.Equal(t, 4, s.r.Stats().MaxOpenConnections)
		})
	}
}

func TestOpenFileMode(t *testing.T) {
	dir := t.TempDir()
	fresh := filepath.Join(dir, "fresh.db")
	s, err := Open(t.Context(), fresh, nil)
	require.NoError(t, err)
	require.NoError(t, s.CreateSandbox(t.Context(),
		&agentlab.SandboxRecord{VMID: 1, State: agentlab.StateReady}))
	for _, p := range []string{fresh, fresh + "-wal", fresh + "-shm"} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), p)
	}
	require.NoError(t, s.Close())

	loose := filepath.Join(dir, "loose.db")
	require.NoError(t, os.WriteFile(loose, nil, 0o644))
	require.NoError(t, os.Chmod(loose, 0o644)) // whatever the umask
	s, err = Open(t.Context(), loose, nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	fi, err := os.Stat(loose)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(t.Context(), "", nil)
	require.ErrorIs(t, err, agentlab.ErrInvalidArgument)
	_, err = Open(t.Context(), filepath.Join(t.TempDir(), "missing", "dir", "x.db"), nil)
	require.Error(t, err)

	notDB := filepath.Join(t.TempDir(), "text.db")
	require.NoError(t, os.WriteFile(notDB, []byte("this is not a database, just text"), 0o600))
	_, err = Open(t.Context(), notDB, nil)
	require.Error(t, err)
}

func TestMigrateIdempotentAndNewer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	for range 2 {
		s, err := Open(t.Context(), path, nil)
		require.NoError(t, err)
		var n int
		require.NoError(t, s.r.QueryRowContext(t.Context(),
			`SELECT COUNT(*) FROM schema_migrations`).Scan(&n))
		require.Equal(t, 1, n)
		require.NoError(t, s.Close())
	}

	// A database written by a newer SDK is refused, not downgraded.
	s, err := Open(t.Context(), path, nil)
	require.NoError(t, err)
	_, err = s.w.ExecContext(t.Context(),
		`INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)`)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = Open(t.Context(), path, nil)
	require.ErrorIs(t, err, agentlab.ErrUnsupported)
}

func TestOpenFreshConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	const n = 6
	stores := make([]*SQLite, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(context.Background(), path, nil)
		}()
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		t.Cleanup(func() { _ = stores[i].Close() })
	}
	var count int
	require.NoError(t, stores[0].r.QueryRowContext(t.Context(),
		`SELECT COUNT(*) FROM schema_migrations`).Scan(&count))
	require.Equal(t, 1, count)
}

func TestTranslate(t *testing.T) {
	s := &SQLite{}
	// Constraint errors carry a message this test cannot build; the
	// conformance suite covers them with real ones.
	other := errors.New("other")
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"nil", nil, nil},
		{"no rows", fmt.Errorf("scan: %w", sql.ErrNoRows), agentlab.ErrNotFound},
		{"busy", sqlite3.Error{Code: sqlite3.ErrBusy}, agentlab.ErrBusy},
		{"locked", sqlite3.Error{Code: sqlite3.ErrLocked}, agentlab.ErrBusy},
		{"other", other, other},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := s.translate(tc.err)
			if tc.want == nil {
				require.NoError(t, got)
				return
			}
			require.ErrorIs(t, got, tc.want)
		})
	}
	s.closed.Store(true)
	require.ErrorIs(t, s.translate(other), agentlab.ErrClosed)
}

func TestCheckpoint(t *testing.T) {
	s := openTemp(t, nil)
	for i := range 50 {
		require.NoError(t, s.AppendEvent(t.Context(), &agentlab.Event{Kind: "k",
			Message: fmt.Sprint("event ", i)}))
	}
	wal, err := os.Stat(s.Path() + "-wal")
	require.NoError(t, err)
	require.Positive(t, wal.Size())
	require.NoError(t, s.Checkpoint(t.Context()))
	wal, err = os.Stat(s.Path() + "-wal")
	require.NoError(t, err)
	require.Zero(t, wal.Size(), "TRUNCATE empties the log")
	evs, err := s.ListEvents(t.Context(), agentlab.EventFilter{})
	require.NoError(t, err)
	require.Len(t, evs, 50)

	require.NoError(t, s.Close())
	require.ErrorIs(t, s.Checkpoint(t.Context()), agentlab.ErrClosed)
}

// holdWriteLock takes the write lock on path from a connection outside the
// store and returns the function that releases it.
func holdWriteLock(t *testing.T, path string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_txlock=immediate")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	tx, err := db.BeginTx(t.Context(), nil)
	require.NoError(t, err)
	return func() { _ = tx.Rollback() }
}

func TestBusyRetry(t *testing.T) {
	s := openTemp(t, &Options{BusyTimeout: 20 * time.Millisecond})
	require.NoError(t, s.CreateSandbox(t.Context(),
		&agentlab.SandboxRecord{VMID: 1, State: agentlab.StateReady}))

	// Held past BusyTimeout and past a short ctx: the call fails with ErrBusy.
	release := holdWriteLock(t, s.Path())
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := s.UpdateSandbox(ctx, 1, func(r *agentlab.SandboxRecord) error { r.Port++; return nil })
	require.ErrorIs(t, err, agentlab.ErrBusy)

	// Released while the call retries within its ctx: the call succeeds.
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(150 * time.Millisecond) // several busy timeouts
		release()
	}()
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := s.UpdateSandbox(ctx, 1, func(r *agentlab.SandboxRecord) error { r.Port++; return nil })
	<-released
	require.NoError(t, err)
	require.Equal(t, 1, out.Port)
	require.Equal(t, int64(2), out.Version)
}

func TestOpenOddPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "we?ird #name%20 ü.db")
	s, err := Open(t.Context(), path, nil)
	require.NoError(t, err)
	require.NoError(t, s.CreateSandbox(t.Context(),
		&agentlab.SandboxRecord{VMID: 1, State: agentlab.StateReady}))
	require.NoError(t, s.Close())
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Positive(t, fi.Size(), "the database is the file named, not a truncated name")
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no stray files: %v", entries)
}
