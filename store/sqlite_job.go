package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// jobCols lists the jobs columns in the order of jobArgs and scanJob.
const jobCols = `id, repo_url, ref, task, profile, mode, command, env, artifacts,
	ttl, keepalive, secret_names, status, vmid, exit_code, message, results,
	created_at, started_at, completed_at, updated_at, deadline, timeout, runner,
	heartbeat, guest_dir, log_offset, version`

// jobArgs returns r's column values in jobCols order.
func jobArgs(r *agentlab.JobRecord) ([]any, error) {
	env, err := encJSON(r.Env, r.Env == nil)
	if err != nil {
		return nil, err
	}
	arts, err := encJSON(r.Artifacts, r.Artifacts == nil)
	if err != nil {
		return nil, err
	}
	secrets, err := encJSON(r.SecretNames, r.SecretNames == nil)
	if err != nil {
		return nil, err
	}
	results, err := encJSON(r.Results, r.Results == nil)
	if err != nil {
		return nil, err
	}
	return []any{
		r.ID, r.RepoURL, r.Ref, r.Task, r.Profile, r.Mode, r.Command, env, arts,
		int64(r.TTL), r.Keepalive, secrets, string(r.Status), r.VMID, r.ExitCode,
		r.Message, results, encTime(r.CreatedAt), encTime(r.StartedAt),
		encTime(r.CompletedAt), encTime(r.UpdatedAt), encTime(r.Deadline),
		int64(r.Timeout), r.Runner, encTime(r.Heartbeat), r.GuestDir, r.LogOffset, r.Version,
	}, nil
}

// scanJob reads jobCols.
func scanJob(sc scanner) (agentlab.JobRecord, error) {
	var (
		r                                  agentlab.JobRecord
		env, arts, secrets, results        sql.NullString
		ttl, timeout                       int64
		created, started, done, upd, dline sql.NullInt64
		beat                               sql.NullInt64
	)
	err := sc.Scan(&r.ID, &r.RepoURL, &r.Ref, &r.Task, &r.Profile, &r.Mode, &r.Command,
		&env, &arts, &ttl, &r.Keepalive, &secrets, &r.Status, &r.VMID, &r.ExitCode,
		&r.Message, &results, &created, &started, &done, &upd, &dline, &timeout, &r.Runner,
		&beat, &r.GuestDir, &r.LogOffset, &r.Version)
	if err != nil {
		return r, err
	}
	r.TTL, r.Timeout, r.Heartbeat = time.Duration(ttl), time.Duration(timeout), decTime(beat)
	r.CreatedAt, r.StartedAt, r.CompletedAt = decTime(created), decTime(started), decTime(done)
	r.UpdatedAt, r.Deadline = decTime(upd), decTime(dline)
	for _, c := range []struct {
		s sql.NullString
		v any
	}{{env, &r.Env}, {arts, &r.Artifacts}, {secrets, &r.SecretNames}, {results, &r.Results}} {
		if err := decJSON(c.s, c.v); err != nil {
			return r, err
		}
	}
	return r, nil
}

// CreateJob inserts rec. It fails with [agentlab.ErrAlreadyExists] if the
// ID is taken and with [agentlab.ErrInvalidArgument] for an empty ID or an
// unstorable time. On success it sets rec.Version to 1, rec.UpdatedAt to
// now and rec.CreatedAt to now when zero.
func (s *SQLite) CreateJob(ctx context.Context, rec *agentlab.JobRecord) error {
	next, err := newJob(rec, s.opts.Now())
	if err != nil {
		return fmt.Errorf("create job %s: %w", rec.ID, err)
	}
	args, err := jobArgs(&next)
	if err != nil {
		return fmt.Errorf("create job %s: %w", rec.ID, err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO jobs (`+jobCols+`)
			VALUES (`+placeholders(len(args))+`)`, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("create job %s: %w", rec.ID, err)
	}
	rec.CreatedAt, rec.UpdatedAt, rec.Version = next.CreatedAt, next.UpdatedAt, next.Version
	return nil
}

// newJob validates rec and returns the copy to store.
func newJob(rec *agentlab.JobRecord, now time.Time) (agentlab.JobRecord, error) {
	next := cloneJob(*rec)
	if err := checkJob(&next); err != nil {
		return next, err
	}
	if next.CreatedAt.IsZero() {
		next.CreatedAt = now
	}
	next.UpdatedAt, next.Version = now, 1
	normJob(&next)
	return next, nil
}

// GetJob returns the job with that ID or an error matching
// [agentlab.ErrNotFound].
func (s *SQLite) GetJob(ctx context.Context, id string) (agentlab.JobRecord, error) {
	rec, err := queryOne(ctx, s, `SELECT `+jobCols+` FROM jobs WHERE id = ?`, []any{id}, scanJob)
	if err != nil {
		return rec, fmt.Errorf("get job %s: %w", id, err)
	}
	return rec, nil
}

// ListJobs returns the jobs f selects, newest CreatedAt first (ties: the
// later insert first).
func (s *SQLite) ListJobs(ctx context.Context, f agentlab.JobFilter) ([]agentlab.JobRecord, error) {
	where, args := jobWhere(f)
	query := `SELECT ` + jobCols + ` FROM jobs` + where + ` ORDER BY created_at DESC, rowid DESC`
	if f.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	out, err := queryAll(ctx, s, query, args, scanJob)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return out, nil
}

// jobWhere translates f into a WHERE clause and its arguments.
func jobWhere(f agentlab.JobFilter) (string, []any) {
	var conds []string
	var args []any
	if len(f.Statuses) > 0 {
		conds = append(conds, `status IN (`+placeholders(len(f.Statuses))+`)`)
		for _, st := range f.Statuses {
			args = append(args, string(st))
		}
	}
	if f.VMID != 0 {
		conds, args = append(conds, `vmid = ?`), append(args, f.VMID)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return ` WHERE ` + strings.Join(conds, ` AND `), args
}

// UpdateJob applies fn to a copy of the job and stores the result with
// Version+1 and UpdatedAt set, in one IMMEDIATE transaction, like
// [SQLite.UpdateSandbox]: only the changed columns are written. Changing ID
// fails with [agentlab.ErrInvalidArgument]; an error from fn is returned
// unchanged.
func (s *SQLite) UpdateJob(ctx context.Context, id string,
	fn func(*agentlab.JobRecord) error) (agentlab.JobRecord, error) {
	var (
		out  agentlab.JobRecord
		miss bool
		mask uint64
	)
	err := s.write(ctx, func(tx *sql.Tx) error {
		cur, err := scanJob(tx.StmtContext(ctx, s.stmts.selJob).QueryRowContext(ctx, id))
		if err != nil {
			return err
		}
		if out, err = applyJob(cur, fn, s.opts.Now()); err != nil {
			return err
		}
		mask, miss, err = s.updateJobRow(ctx, tx, &cur, &out)
		return err
	})
	if err != nil {
		return agentlab.JobRecord{}, unwrapFn(err, "update job "+id)
	}
	if miss {
		s.stmts.updJob.prepare(ctx, s.w, mask)
	}
	return out, nil
}

// updateJobRow writes the columns of job cur.ID that differ between cur
// and next. It returns the set of columns and whether its statement was
// not prepared yet.
func (s *SQLite) updateJobRow(ctx context.Context, tx *sql.Tx,
	cur, next *agentlab.JobRecord) (mask uint64, miss bool, err error) {
	old, err := jobArgs(cur)
	if err != nil {
		return 0, false, err
	}
	vals, err := jobArgs(next)
	if err != nil {
		return 0, false, err
	}
	u := s.stmts.updJob
	mask = u.diff(old, vals)
	written, miss, err := u.exec(ctx, tx, mask, vals, cur.ID, cur.Version)
	if err == nil && !written {
		// The row was read in this transaction, which holds the write lock.
		err = fmt.Errorf("job %s changed during its update", cur.ID)
	}
	return mask, miss, err
}

// applyJob runs fn on a copy of cur and returns the record to store.
func applyJob(cur agentlab.JobRecord, fn func(*agentlab.JobRecord) error,
	now time.Time) (agentlab.JobRecord, error) {
	next := cloneJob(cur)
	if err := fn(&next); err != nil {
		return next, &fnError{err}
	}
	if next.ID != cur.ID {
		return next, fmt.Errorf("change job id to %q: %w", next.ID, agentlab.ErrInvalidArgument)
	}
	if err := checkJob(&next); err != nil {
		return next, err
	}
	next.Version, next.UpdatedAt = cur.Version+1, now
	normJob(&next)
	return next, nil
}
