package store

import (
	"strings"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/stretchr/testify/require"
)

// queryPlan returns SQLite's plan for query, one step per line.
func queryPlan(t *testing.T, s *SQLite, query string, args []any) string {
	t.Helper()
	rows, err := s.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	require.NoError(t, err)
	defer func() { _ = rows.Close() }()
	var steps []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
		steps = append(steps, detail)
	}
	require.NoError(t, rows.Err())
	return strings.Join(steps, "\n")
}

// TestQueryPlansUseIndexes guards the indexes the hot queries rely on: the
// reaper's lease scan, lookups by VMID and name, and event replay.
func TestQueryPlansUseIndexes(t *testing.T) {
	s := openTemp(t, nil)
	sandboxQ := func(f agentlab.SandboxFilter) (string, []any) {
		w, args := sandboxWhere(f)
		return `SELECT id FROM sandboxes` + w + ` ORDER BY vmid, id`, args
	}
	tests := []struct {
		name  string
		query func() (string, []any)
		index string
	}{
		{"states", func() (string, []any) {
			return sandboxQ(agentlab.SandboxFilter{States: []agentlab.State{agentlab.StateReady}})
		}, "sandboxes_state"},
		{"profile", func() (string, []any) {
			return sandboxQ(agentlab.SandboxFilter{Profile: "yolo"})
		}, "sandboxes_profile"},
		{"job", func() (string, []any) {
			return sandboxQ(agentlab.SandboxFilter{JobID: "job_1"})
		}, "sandboxes_job_id"},
		{"expired", func() (string, []any) {
			return sandboxQ(agentlab.SandboxFilter{ExpiredBefore: time.Now()})
		}, "sandboxes_lease_expires"},
		{"by vmid", func() (string, []any) {
			return `SELECT id FROM sandboxes WHERE vmid = ?` + sandboxPick, []any{1}
		}, "sandboxes_vmid_id"},
		{"events after id", func() (string, []any) {
			return eventQuery(agentlab.EventFilter{AfterID: 5, Limit: 10})
		}, "INTEGER PRIMARY KEY"},
		{"events vmid last", func() (string, []any) {
			return eventQuery(agentlab.EventFilter{VMID: 3, Limit: 10, Last: true})
		}, "events_vmid_id"},
		{"events job", func() (string, []any) {
			return eventQuery(agentlab.EventFilter{JobID: "job_1"})
		}, "events_job_id_id"},
		{"events kind", func() (string, []any) {
			return eventQuery(agentlab.EventFilter{Kinds: []string{agentlab.EventJobLog}})
		}, "events_kind_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, args := tc.query()
			plan := queryPlan(t, s, q, args)
			require.Contains(t, plan, tc.index, "query: %s", q)
			require.NotContains(t, plan, "SCAN", "query: %s", q)
		})
	}
}
