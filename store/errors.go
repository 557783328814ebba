package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/mattn/go-sqlite3"
)

// translate is the one seam where SQLite errors become the SDK's
// sentinels. Errors it does not know pass through unchanged.
func (s *SQLite) translate(err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() {
		return agentlab.ErrClosed
	}
	if errors.Is(err, sql.ErrNoRows) {
		return agentlab.ErrNotFound
	}
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return err
	}
	switch {
	case se.ExtendedCode == sqlite3.ErrConstraintUnique ||
		se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey:
		// The message names the index's columns: "UNIQUE constraint
		// failed: sandboxes.vmid".
		if strings.Contains(se.Error(), "sandboxes.vmid") {
			return agentlab.ErrVMIDConflict
		}
		return agentlab.ErrAlreadyExists
	case isBusy(err):
		return fmt.Errorf("%w: %w", agentlab.ErrBusy, err)
	}
	return err
}

// isBusy reports whether err is SQLite's "try again later".
func isBusy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
}

// fnError carries the error of a caller's update function out of the
// transaction. It has no Unwrap, so that retry and translate leave it
// alone, and it is returned to the caller unwrapped.
type fnError struct{ err error }

// Error returns the wrapped error's message.
func (e *fnError) Error() string { return e.err.Error() }

// retry runs op until it returns something other than SQLITE_BUSY, ctx is
// done, or the retry deadline has passed: BusyTimeout from now, or ctx's
// deadline if that is later. It returns op's last error, joined with ctx's
// when ctx ended the retries.
func (s *SQLite) retry(ctx context.Context, op func() error) error {
	deadline := time.Now().Add(s.opts.BusyTimeout)
	if d, ok := ctx.Deadline(); ok && d.After(deadline) {
		deadline = d
	}
	delay := 2 * time.Millisecond
	for {
		err := op()
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		wait := delay/2 + rand.N(delay)
		s.log.Debug("store busy, retrying", "err", err, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w", err, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// write runs fn in an IMMEDIATE transaction on the writer connection,
// retrying on SQLITE_BUSY, and translates the error. An error fn wraps in
// fnError is returned as fn returned it.
func (s *SQLite) write(ctx context.Context, fn func(*sql.Tx) error) error {
	if s.closed.Load() {
		return agentlab.ErrClosed
	}
	err := s.retry(ctx, func() error {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	})
	if fe, ok := err.(*fnError); ok {
		return fe
	}
	return s.translate(err)
}

// read runs fn against the read pool, retrying on SQLITE_BUSY, and
// translates the error.
func (s *SQLite) read(ctx context.Context, fn func(*sql.DB) error) error {
	if s.closed.Load() {
		return agentlab.ErrClosed
	}
	return s.translate(s.retry(ctx, func() error { return fn(s.r) }))
}

// queryAll runs query on the read pool and scans every row with scan.
func queryAll[T any](ctx context.Context, s *SQLite, query string, args []any,
	scan func(scanner) (T, error)) ([]T, error) {
	var out []T
	err := s.read(ctx, func(db *sql.DB) error {
		rows, err := db.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer func() { _ = rows.Close() }()
		out = nil // a retried attempt starts over
		for rows.Next() {
			v, err := scan(rows)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return rows.Err()
	})
	return out, err
}

// queryOne runs query on the read pool and scans its first row; no row is
// an error matching agentlab.ErrNotFound.
func queryOne[T any](ctx context.Context, s *SQLite, query string, args []any,
	scan func(scanner) (T, error)) (T, error) {
	var out T
	err := s.read(ctx, func(db *sql.DB) (err error) {
		out, err = scan(db.QueryRowContext(ctx, query, args...))
		return err
	})
	return out, err
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// unwrapFn returns the error of the caller's update function as is, and
// wraps any other error with what.
func unwrapFn(err error, what string) error {
	if fe, ok := err.(*fnError); ok {
		return fe.err
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
