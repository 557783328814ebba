package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// benchStore opens a store in b.TempDir.
func benchStore(b *testing.B) *SQLite {
	b.Helper()
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// bulkInsert runs insert n times in one transaction with one prepared
// statement, much faster than n separate calls.
func bulkInsert(b *testing.B, s *SQLite, query string, n int, args func(i int) []any) {
	b.Helper()
	err := s.write(context.Background(), func(tx *sql.Tx) error {
		stmt, err := tx.Prepare(query)
		if err != nil {
			return err
		}
		defer func() { _ = stmt.Close() }()
		for i := range n {
			if _, err := stmt.Exec(args(i)...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// fill10k inserts 10,000 sandboxes spread over states, profiles, labels
// and lease times, a tenth of them destroyed history.
func fill10k(b *testing.B, s *SQLite, now time.Time) {
	b.Helper()
	profiles := []string{"yolo", "safe", "gpu", "tiny"}
	query := `INSERT INTO sandboxes (` + sandboxCols + `) VALUES (` + placeholders(25) + `)`
	bulkInsert(b, s, query, 10_000, func(i int) []any {
		r := agentlab.SandboxRecord{
			VMID: 1000 + i, Name: fmt.Sprintf("sb-%d", i), Profile: profiles[i%4],
			State: agentlab.AllStates[i%len(agentlab.AllStates)], NetworkMode: "nat",
			Labels:       map[string]string{"team": fmt.Sprint("t", i%10), "env": "ci"},
			LeaseExpires: now.Add(time.Duration(i-5000) * time.Second),
			CreatedAt:    now, UpdatedAt: now, Version: 1,
		}
		args, err := sandboxArgs(&r)
		if err != nil {
			b.Fatal(err)
		}
		return args
	})
}

func BenchmarkListSandboxes10k(b *testing.B) {
	s := benchStore(b)
	now := time.Now()
	fill10k(b, s, now)
	cases := []struct {
		name string
		f    agentlab.SandboxFilter
	}{
		{"state", agentlab.SandboxFilter{States: []agentlab.State{agentlab.StateReady}}},
		{"profile_limit", agentlab.SandboxFilter{Profile: "gpu", Limit: 50}},
		{"label", agentlab.SandboxFilter{Labels: map[string]string{"team": "t3"}}},
		{"expired", agentlab.SandboxFilter{ExpiredBefore: now.Add(-4900 * time.Second)}},
		{"expired_none", agentlab.SandboxFilter{ExpiredBefore: now.Add(-9000 * time.Second)}},
		{"job", agentlab.SandboxFilter{JobID: "job_none"}},
		{"all", agentlab.SandboxFilter{}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.ListSandboxes(context.Background(), c.f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSummary10k(b *testing.B) {
	s := benchStore(b)
	fill10k(b, s, time.Now())
	for b.Loop() {
		if _, err := s.Summary(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUpdateSandbox(b *testing.B) {
	s := benchStore(b)
	fill10k(b, s, time.Now())
	inc := func(r *agentlab.SandboxRecord) error { r.Port++; return nil }
	for b.Loop() {
		if _, err := s.UpdateSandbox(context.Background(), 5003, inc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendEvent(b *testing.B) {
	s := benchStore(b)
	ev := agentlab.Event{Kind: agentlab.EventJobLog, VMID: 1065, JobID: "job_1",
		Data: map[string]any{"line": "compiling"}}
	for b.Loop() {
		e := ev
		if err := s.AppendEvent(context.Background(), &e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkListEvents1M(b *testing.B) {
	const n = 1_000_000
	s := benchStore(b)
	kinds := []string{agentlab.EventJobLog, agentlab.EventJobLog, agentlab.EventJobLog,
		agentlab.EventSandboxState, agentlab.EventJobStep}
	ts := time.Now().UnixNano()
	bulkInsert(b, s, `INSERT INTO events (ts, kind, vmid, job_id, msg, data, schema_version)
		VALUES (?, ?, ?, ?, '', '{"line":"x"}', 1)`, n, func(i int) []any {
		return []any{ts + int64(i), kinds[i%len(kinds)], 1000 + i%500, fmt.Sprint("job_", i%2000)}
	})
	cases := []struct {
		name string
		f    agentlab.EventFilter
	}{
		{"tail_after_id", agentlab.EventFilter{AfterID: n - 100}},
		{"first_100", agentlab.EventFilter{Limit: 100}},
		{"last_100", agentlab.EventFilter{Limit: 100, Last: true}},
		{"vmid_last_100", agentlab.EventFilter{VMID: 1234, Limit: 100, Last: true}},
		{"vmid_after_id", agentlab.EventFilter{VMID: 1234, AfterID: n - 50_000}},
		{"job_all", agentlab.EventFilter{JobID: "job_77"}},
		{"kind_last_100", agentlab.EventFilter{Kinds: []string{agentlab.EventSandboxState},
			Limit: 100, Last: true}},
		{"kinds_after_id", agentlab.EventFilter{Kinds: []string{agentlab.EventSandboxState,
			agentlab.EventJobStep}, AfterID: n - 10_000, Limit: 100}},
		{"kinds_first_100", agentlab.EventFilter{Kinds: []string{agentlab.EventSandboxState,
			agentlab.EventJobStep}, Limit: 100}},
		{"kinds_last_100", agentlab.EventFilter{Kinds: []string{agentlab.EventSandboxState,
			agentlab.EventJobStep}, Limit: 100, Last: true}},
		{"vmid_kinds_last_100", agentlab.EventFilter{VMID: 1234, Kinds: []string{
			agentlab.EventJobLog, agentlab.EventJobStep}, Limit: 100, Last: true}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.ListEvents(context.Background(), c.f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// flipState returns an update function that moves a sandbox between READY
// and RUNNING and sets or clears Op, as a lifecycle step does: it changes
// indexed columns.
func flipState() func(*agentlab.SandboxRecord) error {
	return func(r *agentlab.SandboxRecord) error {
		if r.State == agentlab.StateRunning {
			r.State, r.Op, r.OpStarted = agentlab.StateReady, "", time.Time{}
		} else {
			r.State, r.Op, r.OpStarted = agentlab.StateRunning, "resume", time.Now()
		}
		return nil
	}
}

func BenchmarkUpdateSandboxState(b *testing.B) {
	s := benchStore(b)
	fill10k(b, s, time.Now())
	flip := flipState()
	for b.Loop() {
		if _, err := s.UpdateSandbox(context.Background(), 5003, flip); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateThenAppend is a state change and its event written as two
// transactions, the way to compare with BenchmarkUpdateSandboxEvents.
func BenchmarkUpdateThenAppend(b *testing.B) {
	s := benchStore(b)
	fill10k(b, s, time.Now())
	flip := flipState()
	for b.Loop() {
		if _, err := s.UpdateSandbox(context.Background(), 5003, flip); err != nil {
			b.Fatal(err)
		}
		ev := agentlab.Event{Kind: agentlab.EventSandboxState, VMID: 5003,
			Data: map[string]any{"from_state": "READY", "to_state": "RUNNING"}}
		if err := s.AppendEvent(context.Background(), &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUpdateJob(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	for i := range 1000 {
		job := agentlab.JobRecord{ID: fmt.Sprintf("job_%04d", i), Status: agentlab.JobRunning,
			Env: map[string]string{"A": "1"}, Artifacts: []string{"out.txt"}}
		if err := s.CreateJob(ctx, &job); err != nil {
			b.Fatal(err)
		}
	}
	beat := func(r *agentlab.JobRecord) error { r.Heartbeat = time.Now(); return nil }
	for b.Loop() {
		if _, err := s.UpdateJob(ctx, "job_0500", beat); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateSandboxEvents is BenchmarkUpdateThenAppend in one
// transaction.
func BenchmarkUpdateSandboxEvents(b *testing.B) {
	s := benchStore(b)
	fill10k(b, s, time.Now())
	flip := flipState()
	fn := func(r *agentlab.SandboxRecord) ([]agentlab.Event, error) {
		return []agentlab.Event{{Kind: agentlab.EventSandboxState, VMID: 5003,
			Data: map[string]any{"from_state": "READY", "to_state": "RUNNING"}}}, flip(r)
	}
	for b.Loop() {
		if _, _, err := s.UpdateSandboxEvents(context.Background(), 5003, fn); err != nil {
			b.Fatal(err)
		}
	}
}
