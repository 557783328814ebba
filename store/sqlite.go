package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"github.com/agentlab-sdk/agentlab"
	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// Compile-time checks that both stores implement the interface.
var (
	_ agentlab.Store = (*SQLite)(nil)
	_ agentlab.Store = (*Memory)(nil)
)

// SQLite is an [agentlab.Store] kept in one SQLite database file. It is
// safe for concurrent use by many goroutines, and by many processes that
// open the same file on one host. Create it with [Open]; the caller closes
// it with Close.
type SQLite struct {
	w      *sql.DB // one connection: every write transaction
	r      *sql.DB // bounded read-only pool
	stmts  *writeStmts
	rows   *rowCache // live rows this handle wrote last
	path   string
	opts   Options
	log    *slog.Logger
	closed atomic.Bool
}

// Open opens the SQLite store at path, creating the file with mode 0600 if
// it does not exist (and tightening an existing file's mode to 0600), and
// applies any pending migrations. Several processes may open the same file
// at once, including a fresh one. path must name a file on a local
// filesystem: WAL mode does not work over a network filesystem.
//
// Open returns an error matching [agentlab.ErrUnsupported] if the file was
// written by a newer version of this package, and
// [agentlab.ErrInvalidArgument] for an empty path.
func Open(ctx context.Context, path string, opts *Options) (*SQLite, error) {
	if path == "" {
		return nil, fmt.Errorf("open store: empty path: %w", agentlab.ErrInvalidArgument)
	}
	o := opts.withDefaults()
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := prepareFile(abs, o.Logger); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &SQLite{path: abs, opts: o, log: o.Logger, rows: newRowCache()}
	if err := s.openPools(ctx); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// openPools opens the writer, migrates the schema and opens the readers.
func (s *SQLite) openPools(ctx context.Context) error {
	w, err := sql.Open("sqlite3", s.dsn(false))
	if err != nil {
		return err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	s.w = w
	if err := s.migrate(ctx); err != nil {
		_ = w.Close()
		return err
	}
	if s.stmts, err = prepareWriteStmts(ctx, w); err != nil {
		_ = w.Close()
		return err
	}
	r, err := sql.Open("sqlite3", s.dsn(true))
	if err != nil {
		_ = s.stmts.close()
		_ = w.Close()
		return err
	}
	r.SetMaxOpenConns(s.opts.MaxReaders)
	r.SetMaxIdleConns(s.opts.MaxReaders)
	s.r = r
	return nil
}

// dsn builds the mattn/go-sqlite3 DSN. The driver applies these pragmas on
// every new connection, which a db.Exec of a PRAGMA would not.
func (s *SQLite) dsn(readOnly bool) string {
	q := url.Values{}
	q.Set("mode", "rw") // Open created the file with the right mode
	q.Set("_busy_timeout", strconv.FormatInt(s.opts.BusyTimeout.Milliseconds(), 10))
	if readOnly {
		q.Set("_query_only", "on")
	} else {
		q.Set("_journal_mode", "WAL")
		q.Set("_foreign_keys", "on")
		// BEGIN IMMEDIATE: a transaction takes the write lock at its
		// start, so a read-then-write never fails to upgrade with an
		// immediate SQLITE_BUSY that busy_timeout does not cover.
		q.Set("_txlock", "immediate")
		syncMode := "NORMAL"
		if s.opts.SyncFull {
			syncMode = "FULL"
		}
		q.Set("_synchronous", syncMode)
	}
	u := url.URL{Scheme: "file", OmitHost: true, Path: s.path, RawQuery: q.Encode()}
	return u.String()
}

// prepareFile creates the database file with mode 0600 if it is missing,
// so that SQLite never creates it with a wider mode, and narrows the mode
// of an existing file.
//
// It opens the file only when it creates it: closing any descriptor of a
// database drops the POSIX locks this process holds on it.
func prepareFile(path string, log *slog.Logger) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		return f.Close()
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("create database file: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("stat database file: %w", err)
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("restrict database file mode: %w", err)
	}
	log.Warn("restricted database file mode", "path", path,
		"old_mode", fi.Mode().Perm().String())
	return nil
}

// Checkpoint copies the write-ahead log into the database file and
// truncates the log. SQLite checkpoints on its own as commits go by, but
// readers that never pause can keep it from finishing and let the -wal file
// grow; a long-running process may call Checkpoint periodically. It waits
// for readers up to BusyTimeout and then fails with an error matching
// [agentlab.ErrBusy].
func (s *SQLite) Checkpoint(ctx context.Context) error {
	var busy, logPages, moved int
	err := agentlab.ErrClosed
	if !s.closed.Load() {
		err = s.translate(s.retry(ctx, func() error {
			return s.w.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).
				Scan(&busy, &logPages, &moved)
		}))
	}
	if err == nil && busy != 0 {
		err = agentlab.ErrBusy
	}
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", s.path, err)
	}
	s.log.Debug("checkpointed", "path", s.path, "wal_pages", logPages, "moved_pages", moved)
	return nil
}

// Path returns the absolute path of the database file.
func (s *SQLite) Path() string { return s.path }

// Close closes the prepared statements and both connection pools. Calls
// after Close, Close included, return an error matching
// [agentlab.ErrClosed].
func (s *SQLite) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("close store: %w", agentlab.ErrClosed)
	}
	err := errors.Join(s.stmts.close(), s.r.Close(), s.w.Close())
	if err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}
