package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// eventCols lists the events columns in scanEvent order.
const eventCols = `id, ts, kind, vmid, job_id, msg, data, schema_version`

// AppendEvent stores ev and sets ev.ID, which is greater than every ID
// stored before it by any process. It sets ev.Time to now when zero and
// ev.SchemaVersion to [agentlab.EventSchemaVersion] when zero. ev.Data is
// stored as JSON, so it must marshal, and numbers come back as float64.
func (s *SQLite) AppendEvent(ctx context.Context, ev *agentlab.Event) error {
	next := []agentlab.Event{*ev}
	data, err := prepareEvent(&next[0], s.opts.Now())
	if err != nil {
		return fmt.Errorf("append event %s: %w", ev.Kind, err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		return s.insertEvents(ctx, tx, next, []any{data})
	})
	if err != nil {
		return fmt.Errorf("append event %s: %w", ev.Kind, err)
	}
	ev.ID, ev.Time, ev.SchemaVersion = next[0].ID, next[0].Time, next[0].SchemaVersion
	return nil
}

// prepareEvents returns copies of evs with their defaults filled as
// AppendEvent fills them, and their data as JSON, or the first invalid
// event's error (naming its index when there are several). Data maps are
// shared with evs.
func prepareEvents(evs []agentlab.Event, now time.Time) ([]agentlab.Event, []any, error) {
	if len(evs) == 0 {
		return nil, nil, nil
	}
	out := slices.Clone(evs)
	data := make([]any, len(out))
	for i := range out {
		var err error
		if data[i], err = prepareEvent(&out[i], now); err != nil && len(out) > 1 {
			return nil, nil, fmt.Errorf("event %d (%s): %w", i, out[i].Kind, err)
		} else if err != nil {
			return nil, nil, err
		}
	}
	return out, data, nil
}

// insertEvents inserts evs, whose data as JSON is data, in tx and sets
// their IDs.
func (s *SQLite) insertEvents(ctx context.Context, tx *sql.Tx, evs []agentlab.Event,
	data []any) error {
	if len(evs) == 0 {
		return nil
	}
	st := tx.StmtContext(ctx, s.stmts.insEvent)
	for i := range evs {
		ev := &evs[i]
		res, err := st.ExecContext(ctx, encTime(ev.Time), ev.Kind, ev.VMID, ev.JobID,
			ev.Message, data[i], ev.SchemaVersion)
		if err != nil {
			return err
		}
		if ev.ID, err = res.LastInsertId(); err != nil {
			return err
		}
	}
	return nil
}

// ListEvents returns the events f selects in increasing ID order. With
// f.Last and f.Limit > 0 they are the newest f.Limit matches.
func (s *SQLite) ListEvents(ctx context.Context, f agentlab.EventFilter) ([]agentlab.Event, error) {
	query, args := eventQuery(f)
	out, err := queryAll(ctx, s, query, args, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	if f.Last && f.Limit > 0 {
		slices.Reverse(out)
	}
	return out, nil
}

// eventQuery translates f into a query and its arguments.
func eventQuery(f agentlab.EventFilter) (string, []any) {
	conds := []string{`id > ?`}
	args := []any{f.AfterID}
	if f.VMID != 0 {
		conds, args = append(conds, `vmid = ?`), append(args, f.VMID)
	}
	if f.JobID != "" {
		conds, args = append(conds, `job_id = ?`), append(args, f.JobID)
	}
	if len(f.Kinds) > 0 {
		conds = append(conds, `kind IN (`+placeholders(len(f.Kinds))+`)`)
		for _, k := range f.Kinds {
			args = append(args, k)
		}
	}
	query := `SELECT ` + eventCols + ` FROM events WHERE ` + strings.Join(conds, ` AND `)
	if f.Last && f.Limit > 0 {
		query += ` ORDER BY id DESC`
	} else {
		query += ` ORDER BY id`
	}
	if f.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	return query, args
}

// scanEvent reads eventCols.
func scanEvent(sc scanner) (agentlab.Event, error) {
	var (
		ev   agentlab.Event
		ts   sql.NullInt64
		data sql.NullString
	)
	err := sc.Scan(&ev.ID, &ts, &ev.Kind, &ev.VMID, &ev.JobID, &ev.Message, &data,
		&ev.SchemaVersion)
	if err != nil {
		return ev, err
	}
	ev.Time = decTime(ts)
	return ev, decJSON(data, &ev.Data)
}

// Summary counts sandbox rows by state (destroyed history included), live
// sandboxes by network mode, and jobs by status, from one snapshot. The
// maps are never nil.
func (s *SQLite) Summary(ctx context.Context) (agentlab.Summary, error) {
	var sum agentlab.Summary
	err := s.read(ctx, func(db *sql.DB) error {
		tx, err := db.BeginTx(ctx, nil) // deferred: one read snapshot
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		sum, err = summarize(ctx, tx)
		return err
	})
	if err != nil {
		return agentlab.Summary{}, fmt.Errorf("summarize store: %w", err)
	}
	return sum, nil
}

// summarize runs the three GROUP BY queries.
func summarize(ctx context.Context, tx *sql.Tx) (agentlab.Summary, error) {
	sum := agentlab.Summary{
		SandboxesByState: map[agentlab.State]int{},
		SandboxesByMode:  map[string]int{},
		JobsByStatus:     map[agentlab.JobStatus]int{},
	}
	err := countBy(ctx, tx, `SELECT state, COUNT(*) FROM sandboxes GROUP BY state`,
		func(k string, n int) { sum.SandboxesByState[agentlab.State(k)] = n })
	if err != nil {
		return sum, err
	}
	err = countBy(ctx, tx, `SELECT network_mode, COUNT(*) FROM sandboxes
		WHERE state != 'DESTROYED' GROUP BY network_mode`,
		func(k string, n int) { sum.SandboxesByMode[k] = n })
	if err != nil {
		return sum, err
	}
	err = countBy(ctx, tx, `SELECT status, COUNT(*) FROM jobs GROUP BY status`,
		func(k string, n int) { sum.JobsByStatus[agentlab.JobStatus(k)] = n })
	return sum, err
}

// countBy runs a "key, count" query and hands each row to put.
func countBy(ctx context.Context, tx *sql.Tx, query string, put func(string, int)) error {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return err
		}
		put(k, n)
	}
	return rows.Err()
}
