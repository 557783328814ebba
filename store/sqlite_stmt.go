package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// writeStmts are the statements of the hot write paths, prepared once on
// the writer pool and bound to each transaction with tx.StmtContext: the
// parse and plan of a 26-column SELECT is a good part of a small
// transaction's cost.
type writeStmts struct {
	selSandbox *sql.Stmt // "id, " + sandboxCols of a VMID's pick
	selJob     *sql.Stmt // jobCols of one job
	insEvent   *sql.Stmt // one event; LastInsertId is its ID
	updSandbox *updateStmts
	updJob     *updateStmts
}

// prepareWriteStmts prepares the statements on db, the writer pool.
func prepareWriteStmts(ctx context.Context, db *sql.DB) (*writeStmts, error) {
	w := &writeStmts{
		updSandbox: newUpdateStmts("sandboxes", "id", sandboxCols, "updated_at", "version"),
		updJob:     newUpdateStmts("jobs", "id", jobCols, "updated_at", "version"),
	}
	for _, p := range []struct {
		dst   **sql.Stmt
		query string
	}{
		{&w.selSandbox, `SELECT id, ` + sandboxCols + ` FROM sandboxes WHERE vmid = ?` +
			sandboxPick},
		{&w.selJob, `SELECT ` + jobCols + ` FROM jobs WHERE id = ?`},
		{&w.insEvent, `INSERT INTO events (ts, kind, vmid, job_id, msg, data, schema_version)
			VALUES (?, ?, ?, ?, ?, ?, ?)`},
	} {
		st, err := db.PrepareContext(ctx, p.query)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("prepare statement: %w", err), w.close())
		}
		*p.dst = st
	}
	return w, nil
}

// close closes every statement prepared so far.
func (w *writeStmts) close() error {
	var errs []error
	for _, st := range []*sql.Stmt{w.selSandbox, w.selJob, w.insEvent} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	errs = append(errs, w.updSandbox.close(), w.updJob.close())
	return errors.Join(errs...)
}

// maxUpdateStmts bounds the prepared UPDATE statements kept per table. The
// code sets a few dozen distinct sets of columns; an update of a set beyond
// the bound runs unprepared.
const maxUpdateStmts = 64

// updateStmts builds UPDATE statements of one table that set only the
// columns that changed, and caches them prepared, keyed by the set. SQLite
// rewrites the entries of every index on a column named in SET, changed or
// not, so setting all columns costs about three times as much as setting
// the changed ones on the sandboxes table and its eight indexes.
//
// A statement is prepared on the writer pool after the transaction that
// first needed it: the pool's only connection is busy during one.
type updateStmts struct {
	table, key string
	cols       []string // column names, in the order of the row's values
	always     uint64   // columns every update sets

	mu     sync.Mutex // guards the fields below
	stmts  map[uint64]*sql.Stmt
	closed bool
}

// newUpdateStmts returns an empty cache for table, whose rows are selected
// by the column key and whose columns cols lists comma-separated; the
// columns named in always are set by every update.
func newUpdateStmts(table, key, cols string, always ...string) *updateStmts {
	u := &updateStmts{table: table, key: key, stmts: map[uint64]*sql.Stmt{}}
	for i, c := range strings.Split(cols, ",") {
		c = strings.TrimSpace(c)
		u.cols = append(u.cols, c)
		for _, a := range always {
			if c == a {
				u.always |= 1 << i
			}
		}
	}
	return u
}

// diff returns the set of columns whose values differ between old and new
// (both in column order), with the columns every update sets.
func (u *updateStmts) diff(old, new []any) uint64 {
	mask := u.always
	for i := range u.cols {
		if old[i] != new[i] {
			mask |= 1 << i
		}
	}
	return mask
}

// query returns the UPDATE statement that sets the columns in mask.
func (u *updateStmts) query(mask uint64) string {
	var b strings.Builder
	b.WriteString("UPDATE " + u.table + " SET ")
	sep := ""
	for i, c := range u.cols {
		if mask&(1<<i) != 0 {
			b.WriteString(sep + c + " = ?")
			sep = ", "
		}
	}
	b.WriteString(" WHERE " + u.key + " = ? AND version = ?")
	return b.String()
}

// exec sets the columns in mask of the row whose key is key, if its version
// is still version, to their values in vals, in tx. It reports whether a
// row was written, and a miss when the statement was not prepared yet; the
// caller then calls prepare after the transaction.
func (u *updateStmts) exec(ctx context.Context, tx *sql.Tx, mask uint64, vals []any,
	key any, version int64) (written, miss bool, err error) {
	args := make([]any, 0, len(vals)+2)
	for i, v := range vals {
		if mask&(1<<i) != 0 {
			args = append(args, v)
		}
	}
	args = append(args, key, version)
	u.mu.Lock()
	st := u.stmts[mask]
	u.mu.Unlock()
	var res sql.Result
	if st != nil {
		res, err = tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	} else {
		res, err = tx.ExecContext(ctx, u.query(mask), args...)
	}
	if err != nil {
		return false, st == nil, err
	}
	n, err := res.RowsAffected()
	return n == 1, st == nil, err
}

// prepare prepares the statement for mask on db and keeps it, unless it is
// kept already, the cache is full or the store closed. A failure only
// leaves that update unprepared, so prepare returns nothing. It must not
// be called inside a transaction of db.
func (u *updateStmts) prepare(ctx context.Context, db *sql.DB, mask uint64) {
	u.mu.Lock()
	_, have := u.stmts[mask]
	skip := have || u.closed || len(u.stmts) >= maxUpdateStmts
	u.mu.Unlock()
	if skip {
		return
	}
	st, err := db.PrepareContext(ctx, u.query(mask))
	if err != nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, have := u.stmts[mask]; have || u.closed {
		_ = st.Close()
		return
	}
	u.stmts[mask] = st
}

// close closes the kept statements; later prepares keep nothing.
func (u *updateStmts) close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	var errs []error
	for _, st := range u.stmts {
		errs = append(errs, st.Close())
	}
	clear(u.stmts)
	return errors.Join(errs...)
}
