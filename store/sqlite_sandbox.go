package store

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// sandboxCols lists the sandboxes columns in the order of sandboxArgs and
// scanSandbox.
const sandboxCols = `vmid, name, profile, state, node, ip, host_key, network_mode,
	labels, login_user, port, idle_stop, on_expiry, keepalive, job_id,
	lease_expires, last_activity, op, op_started, clean_snapshot, last_error,
	owner, created_at, updated_at, version`

// sandboxPick orders a VMID's or name's rows: the live one, else the newest.
const sandboxPick = ` ORDER BY state = 'DESTROYED', id DESC LIMIT 1`

// sandboxArgs returns r's column values in sandboxCols order.
func sandboxArgs(r *agentlab.SandboxRecord) ([]any, error) {
	labels, err := encJSON(r.Labels, r.Labels == nil)
	if err != nil {
		return nil, err
	}
	return []any{
		r.VMID, r.Name, r.Profile, string(r.State), r.Node, r.IP, r.HostKey,
		r.NetworkMode, labels, r.User, r.Port, int64(r.IdleStop), r.OnExpiry,
		r.Keepalive, r.JobID, encTime(r.LeaseExpires), encTime(r.LastActivity),
		r.Op, encTime(r.OpStarted), r.CleanSnapshot, r.LastError, r.Owner,
		encTime(r.CreatedAt), encTime(r.UpdatedAt), r.Version,
	}, nil
}

// scanSandbox reads "id, " + sandboxCols.
func scanSandbox(sc scanner) (rec agentlab.SandboxRecord, id int64, err error) {
	var (
		labels                                   sql.NullString
		idle                                     int64
		lease, activity, opStarted, created, upd sql.NullInt64
	)
	err = sc.Scan(&id, &rec.VMID, &rec.Name, &rec.Profile, &rec.State, &rec.Node,
		&rec.IP, &rec.HostKey, &rec.NetworkMode, &labels, &rec.User, &rec.Port,
		&idle, &rec.OnExpiry, &rec.Keepalive, &rec.JobID, &lease, &activity,
		&rec.Op, &opStarted, &rec.CleanSnapshot, &rec.LastError, &rec.Owner,
		&created, &upd, &rec.Version)
	if err != nil {
		return rec, 0, err
	}
	rec.IdleStop = time.Duration(idle)
	rec.LeaseExpires, rec.LastActivity = decTime(lease), decTime(activity)
	rec.OpStarted, rec.CreatedAt, rec.UpdatedAt = decTime(opStarted), decTime(created), decTime(upd)
	return rec, id, decJSON(labels, &rec.Labels)
}

// scanRecord is scanSandbox without the row id.
func scanRecord(sc scanner) (agentlab.SandboxRecord, error) {
	rec, _, err := scanSandbox(sc)
	return rec, err
}

// CreateSandbox inserts rec. It fails with [agentlab.ErrVMIDConflict] if a
// live sandbox holds rec.VMID, with [agentlab.ErrAlreadyExists] if one
// holds its non-empty name, and with [agentlab.ErrInvalidArgument] for a
// VMID <= 0, an unknown state or an unstorable time. Destroyed rows with
// the same VMID or name stay as history. On success it sets rec.Version
// to 1, rec.UpdatedAt to now, rec.CreatedAt to now when zero, and
// rec.State to REQUESTED when empty.
func (s *SQLite) CreateSandbox(ctx context.Context, rec *agentlab.SandboxRecord) error {
	next, err := newSandbox(rec, s.opts.Now())
	if err != nil {
		return fmt.Errorf("create sandbox %d: %w", rec.VMID, err)
	}
	args, err := sandboxArgs(&next)
	if err != nil {
		return fmt.Errorf("create sandbox %d: %w", rec.VMID, err)
	}
	var id int64
	err = s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO sandboxes (`+sandboxCols+`)
			VALUES (`+placeholders(len(args))+`)`, args...)
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return fmt.Errorf("create sandbox %d: %w", rec.VMID, err)
	}
	s.rows.put(cachedRow{id: id, rec: next, args: args})
	*rec = setCreated(*rec, next)
	return nil
}

// newSandbox validates rec and returns the copy to store.
func newSandbox(rec *agentlab.SandboxRecord, now time.Time) (agentlab.SandboxRecord, error) {
	next := rec.Clone()
	if next.State == "" {
		next.State = agentlab.StateRequested
	}
	if err := checkSandbox(&next); err != nil {
		return next, err
	}
	if next.CreatedAt.IsZero() {
		next.CreatedAt = now
	}
	next.UpdatedAt, next.Version = now, 1
	normSandbox(&next)
	return next, nil
}

// setCreated copies the fields CreateSandbox sets from stored to rec.
func setCreated(rec, stored agentlab.SandboxRecord) agentlab.SandboxRecord {
	rec.State, rec.Version = stored.State, stored.Version
	rec.CreatedAt, rec.UpdatedAt = stored.CreatedAt, stored.UpdatedAt
	return rec
}

// GetSandbox returns the live sandbox holding vmid, else the most recently
// created destroyed one, else an error matching [agentlab.ErrNotFound].
func (s *SQLite) GetSandbox(ctx context.Context, vmid int) (agentlab.SandboxRecord, error) {
	rec, err := queryOne(ctx, s, `SELECT id, `+sandboxCols+
		` FROM sandboxes WHERE vmid = ?`+sandboxPick, []any{vmid}, scanRecord)
	if err != nil {
		return rec, fmt.Errorf("get sandbox %d: %w", vmid, err)
	}
	return rec, nil
}

// GetSandboxByName returns the live sandbox with that name, else the most
// recently created destroyed one, else an error matching
// [agentlab.ErrNotFound]. The empty name is never found.
func (s *SQLite) GetSandboxByName(ctx context.Context,
	name string) (agentlab.SandboxRecord, error) {
	// Unnamed sandboxes store the empty name; it never selects them.
	rec, err := queryOne(ctx, s, `SELECT id, `+sandboxCols+
		` FROM sandboxes WHERE name = ? AND name != ''`+sandboxPick, []any{name}, scanRecord)
	if err != nil {
		return rec, fmt.Errorf("get sandbox %q: %w", name, err)
	}
	return rec, nil
}

// ListSandboxes returns the rows f selects, destroyed history included
// unless f.States excludes it, ordered by VMID and then by creation.
func (s *SQLite) ListSandboxes(ctx context.Context,
	f agentlab.SandboxFilter) ([]agentlab.SandboxRecord, error) {
	where, args := sandboxWhere(f)
	query := `SELECT id, ` + sandboxCols + ` FROM sandboxes` + where + ` ORDER BY vmid, id`
	if f.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	out, err := queryAll(ctx, s, query, args, scanRecord)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	return out, nil
}

// sandboxWhere translates f into a WHERE clause and its arguments.
func sandboxWhere(f agentlab.SandboxFilter) (string, []any) {
	var conds []string
	var args []any
	if len(f.States) > 0 {
		conds = append(conds, `state IN (`+placeholders(len(f.States))+`)`)
		for _, st := range f.States {
			args = append(args, string(st))
		}
	}
	if f.Profile != "" {
		conds, args = append(conds, `profile = ?`), append(args, f.Profile)
	}
	if f.JobID != "" {
		conds, args = append(conds, `job_id = ?`), append(args, f.JobID)
	}
	if f.IP != "" {
		conds, args = append(conds, `ip = ?`), append(args, f.IP)
	}
	if !f.ExpiredBefore.IsZero() {
		conds = append(conds, `lease_expires IS NOT NULL AND lease_expires <= ?`)
		args = append(args, clampNanos(f.ExpiredBefore))
	}
	conds, args = labelConds(f.Labels, conds, args)
	if len(conds) == 0 {
		return "", nil
	}
	return ` WHERE ` + strings.Join(conds, ` AND `), args
}

// labelConds appends one condition per label, in key order.
func labelConds(labels map[string]string, conds []string, args []any) ([]string, []any) {
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		cond, arg := labelCond(k)
		conds, args = append(conds, cond), append(args, arg, labels[k])
	}
	return conds, args
}

// labelCond returns the condition "label k equals the next argument" and
// its first argument. json_extract with a quoted path is several times
// faster than json_each, but its path syntax cannot express a key holding
// a double quote or a backslash; those keys use json_each.
func labelCond(k string) (string, any) {
	if !strings.ContainsAny(k, `"\`) {
		return `json_extract(labels, ?) = ?`, `$."` + k + `"`
	}
	return `EXISTS (SELECT 1 FROM json_each(sandboxes.labels) WHERE key = ? AND value = ?)`, k
}

// clampNanos returns t in unix nanoseconds, clamped to the int64 range.
func clampNanos(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// placeholders returns "?, ?, ..." with n marks.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// UpdateSandbox applies fn to a copy of the sandbox GetSandbox would return
// and stores the result with Version+1 and UpdatedAt set, like
// [SQLite.UpdateSandboxEvents] with no events.
func (s *SQLite) UpdateSandbox(ctx context.Context, vmid int,
	fn func(*agentlab.SandboxRecord) error) (agentlab.SandboxRecord, error) {
	out, _, err := s.UpdateSandboxEvents(ctx, vmid, noEvents(fn))
	return out, err
}

// noEvents adapts an update function that returns no events.
func noEvents(fn func(*agentlab.SandboxRecord) error) func(
	*agentlab.SandboxRecord) ([]agentlab.Event, error) {
	return func(r *agentlab.SandboxRecord) ([]agentlab.Event, error) { return nil, fn(r) }
}

// UpdateSandboxEvents applies fn to a copy of the sandbox GetSandbox would
// return, stores the result with Version+1 and UpdatedAt set, and appends
// the events fn returns as AppendEvent does, all in one IMMEDIATE
// transaction, so no concurrent update (from any process) is lost and the
// record and its events are stored together or not at all. fn may run
// more than once (after SQLITE_BUSY, or when another handle changed the
// row) and must not call the store. An error from fn aborts the update and
// is returned unchanged. Changing VMID or an invalid event fails with
// [agentlab.ErrInvalidArgument]; taking a live name fails with
// [agentlab.ErrAlreadyExists]. The events come back in fn's order with ID,
// Time and SchemaVersion set.
//
// Only the columns that changed are written, with prepared statements, and
// a live row this handle wrote last is not read again (see rowCache).
func (s *SQLite) UpdateSandboxEvents(ctx context.Context, vmid int,
	fn func(*agentlab.SandboxRecord) ([]agentlab.Event, error)) (
	agentlab.SandboxRecord, []agentlab.Event, error) {
	var u sandboxUpdate
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		u, err = s.updateSandbox(ctx, tx, vmid, fn)
		return err
	})
	if err != nil {
		s.rows.drop(vmid)
		return agentlab.SandboxRecord{}, nil, unwrapFn(err, fmt.Sprintf("update sandbox %d", vmid))
	}
	s.rows.put(u.row)
	if u.miss {
		s.stmts.updSandbox.prepare(ctx, s.w, u.mask)
	}
	return u.row.rec, u.evs, nil
}

// sandboxUpdate is the outcome of one update: the row as written, the
// events with their IDs, and the statement used.
type sandboxUpdate struct {
	row  cachedRow
	evs  []agentlab.Event
	mask uint64
	miss bool // the statement for mask is not prepared yet
}

// updateSandbox runs one update in tx: on the kept row when there is one,
// and on the row read afresh when there is none or it changed since.
func (s *SQLite) updateSandbox(ctx context.Context, tx *sql.Tx, vmid int,
	fn func(*agentlab.SandboxRecord) ([]agentlab.Event, error)) (sandboxUpdate, error) {
	cur, kept := s.rows.get(vmid)
	for {
		if !kept {
			var err error
			if cur, err = s.readRow(ctx, tx, vmid); err != nil {
				return sandboxUpdate{}, err
			}
		}
		u, err := s.writeRow(ctx, tx, cur, fn)
		if err != nil || u.row.id != 0 {
			return u, err
		}
		if !kept {
			// The row was read in this transaction, which holds the write lock.
			return u, fmt.Errorf("sandbox %d changed during its update", vmid)
		}
		kept = false
	}
}

// readRow reads the row of vmid that GetSandbox would return.
func (s *SQLite) readRow(ctx context.Context, tx *sql.Tx, vmid int) (cachedRow, error) {
	row := tx.StmtContext(ctx, s.stmts.selSandbox).QueryRowContext(ctx, vmid)
	rec, id, err := scanSandbox(row)
	if err != nil {
		return cachedRow{}, err
	}
	args, err := sandboxArgs(&rec)
	return cachedRow{id: id, rec: rec, args: args}, err
}

// writeRow applies fn to cur's record and writes the changed columns and
// the events, unless the row's version is no longer cur's: then it writes
// nothing and returns a zero row.
func (s *SQLite) writeRow(ctx context.Context, tx *sql.Tx, cur cachedRow,
	fn func(*agentlab.SandboxRecord) ([]agentlab.Event, error)) (sandboxUpdate, error) {
	now := s.opts.Now()
	out, evs, err := applySandbox(cur.rec, fn, now)
	if err != nil {
		return sandboxUpdate{}, err
	}
	evs, data, err := prepareEvents(evs, now)
	if err != nil {
		return sandboxUpdate{}, err
	}
	vals, err := sandboxArgs(&out)
	if err != nil {
		return sandboxUpdate{}, err
	}
	st := s.stmts.updSandbox
	mask := st.diff(cur.args, vals)
	written, miss, err := st.exec(ctx, tx, mask, vals, cur.id, cur.rec.Version)
	if err != nil || !written {
		return sandboxUpdate{}, err
	}
	u := sandboxUpdate{row: cachedRow{id: cur.id, rec: out, args: vals}, evs: evs,
		mask: mask, miss: miss}
	return u, s.insertEvents(ctx, tx, evs, data)
}

// applySandbox runs fn on a copy of cur and returns the record to store
// and fn's events.
func applySandbox(cur agentlab.SandboxRecord,
	fn func(*agentlab.SandboxRecord) ([]agentlab.Event, error),
	now time.Time) (agentlab.SandboxRecord, []agentlab.Event, error) {
	next := cur.Clone()
	evs, err := fn(&next)
	if err != nil {
		return next, nil, &fnError{err}
	}
	if next.VMID != cur.VMID {
		return next, nil, fmt.Errorf("change vmid to %d: %w", next.VMID,
			agentlab.ErrInvalidArgument)
	}
	if err := checkSandbox(&next); err != nil {
		return next, nil, err
	}
	next.Version, next.UpdatedAt = cur.Version+1, now
	normSandbox(&next)
	return next, evs, nil
}
