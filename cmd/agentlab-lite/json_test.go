package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestJSONOutputsParse reads the --json outputs as a program would: each
// command prints one JSON document (streams print one per line), and
// events carry the log's field names, "msg" and "json".
func TestJSONOutputsParse(t *testing.T) {
	t.Setenv(asCLI, "1")
	e := newSimEnv(t, simOptions{})
	vmid := strconv.Itoa(e.newSandbox("--profile", "minimal"))
	r := e.cli("job", "run", "--task", "fail", "--profile", "minimal", "--wait",
		"--command", "echo '<failing>'; exit 3")
	require.Equal(t, 1, r.code, "a failure for status to report: %s", r.stderr)
	failed := field(t, r.stdout, "ID")
	var j jobJSON
	e.okJSON(&j, "job", "run", "--task", "t", "--profile", "yolo-ephemeral", "--wait",
		"--command", "echo one; echo two")

	var logs struct {
		VMID   int              `json:"vmid"`
		Events []map[string]any `json:"events"`
	}
	e.okJSON(&logs, "logs", vmid)
	require.Equal(t, vmid, strconv.Itoa(logs.VMID))
	require.NotEmpty(t, logs.Events)
	first := logs.Events[0]
	require.Equal(t, "sandbox.state", first["kind"])
	require.Equal(t, "REQUESTED -> PROVISIONING", first["msg"])
	require.Equal(t, map[string]any{"from_state": "REQUESTED", "to_state": "PROVISIONING"},
		first["json"])
	e.okJSON(&logs, "logs", vmid, "--tail", "2")
	require.Len(t, logs.Events, 2)

	var jl struct {
		JobID string   `json:"job_id"`
		Lines []string `json:"lines"`
	}
	e.okJSON(&jl, "job", "logs", j.ID)
	require.Equal(t, j.ID, jl.JobID)
	require.Subset(t, jl.Lines, []string{"one", "two"})

	var show map[string]any
	e.okJSON(&show, "job", "show", j.ID)
	requireEventFields(t, show["events"])
	var status map[string]any
	e.okJSON(&status, "status")
	requireEventFields(t, status["recent_failures"])
	require.Contains(t, e.ok("--json", "job", "logs", failed), `"<failing>"`,
		"no HTML escaping in JSON")
}

// requireEventFields checks a JSON list of events: not empty, each with
// a kind and a message, the payload under "json" and never "data".
func requireEventFields(t *testing.T, list any) {
	t.Helper()
	evs, ok := list.([]any)
	require.True(t, ok, "%v", list)
	require.NotEmpty(t, evs)
	for _, x := range evs {
		ev := x.(map[string]any)
		require.NotEmpty(t, ev["kind"], "%v", ev)
		require.NotEmpty(t, ev["msg"], "%v", ev)
		require.NotContains(t, ev, "data", "%v", ev)
	}
	last := evs[len(evs)-1].(map[string]any)
	require.Contains(t, last, "json", "%v", last)
}

// TestJSONStreams checks that the following forms print one JSON object
// per line.
func TestJSONStreams(t *testing.T) {
	t.Setenv(asCLI, "1")
	e := newSimEnv(t, simOptions{})
	vmid := strconv.Itoa(e.newSandbox("--profile", "minimal"))
	e.ok("sandbox", "destroy", vmid)
	out := e.ok("--json", "logs", vmid, "--follow")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Greater(t, len(lines), 3)
	for _, l := range lines {
		var ev map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &ev), l)
		require.NotEmpty(t, ev["kind"], l)
	}
	var j jobJSON
	e.okJSON(&j, "job", "run", "--task", "t", "--profile", "yolo-ephemeral", "--wait",
		"--command", "echo one; echo two")
	out = e.ok("--json", "job", "logs", j.ID, "--follow")
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var v struct {
			JobID string `json:"job_id"`
			Line  string `json:"line"`
		}
		require.NoError(t, json.Unmarshal([]byte(l), &v), l)
		require.Equal(t, j.ID, v.JobID)
		got = append(got, v.Line)
	}
	require.Subset(t, got, []string{"one", "two"})
}
