package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSecretsNeverInOutput runs a CLI session with --debug and --json on
// the simulator, a job with a secret and failing commands included, then
// scans every stdout and stderr and every file the session wrote (the
// token file aside) for the API token secret and the job secret.
func TestSecretsNeverInOutput(t *testing.T) {
	const jobSecret = "cli-job-secret-93b1e07a"
	t.Setenv(asCLI, "1")
	t.Setenv("AL_TEST_JOB_SECRET", jobSecret)
	e := newSimEnv(t, simOptions{})
	token, err := os.ReadFile(filepath.Join(e.dir, "pve-token"))
	require.NoError(t, err)
	secrets := []string{strings.TrimSpace(string(token)), jobSecret}
	require.NotEmpty(t, secrets[0])

	var out []result
	call := func(args ...string) result {
		r := e.cli(append([]string{"--debug", "--json"}, args...)...)
		out = append(out, r)
		return r
	}
	vmid := strconv.Itoa(e.newSandbox("--profile", "minimal"))
	// --keepalive: the job's guest stays, and its files are scanned.
	j := call("job", "run", "--task", "t", "--profile", "yolo-ephemeral", "--wait",
		"--keepalive", "--secret", "API_TOKEN=AL_TEST_JOB_SECRET",
		"--command", `test -n "$API_TOKEN" && echo have-token; exit 3`)
	require.Contains(t, j.stdout, `"status": "FAILED"`, j.stderr)
	id := jobID(t, j.stdout)
	require.Contains(t, e.ok("job", "logs", id), "have-token", "the secret reached the job")
	for _, args := range [][]string{
		{"status"}, {"profile", "list"}, {"sandbox", "list"}, {"sandbox", "show", vmid},
		{"sandbox", "snapshot", "save", vmid, "s1"}, {"sandbox", "snapshot", "list", vmid},
		{"sandbox", "snapshot", "restore", vmid, "nosuch"}, {"sandbox", "show", "1999"},
		{"logs", vmid}, {"job", "show", id}, {"job", "list"}, {"job", "logs", id},
		{"job", "artifacts", id}, {"reconcile"}, {"sandbox", "destroy", vmid},
		{"sandbox", "start", vmid},
	} {
		call(args...)
	}
	failed := 0
	for _, r := range out {
		if r.code != 0 {
			failed++
		}
	}
	require.GreaterOrEqual(t, failed, 3, "the failing commands' errors are scanned too")
	scanned := scanOutputs(t, out, e.dir, secrets)
	require.Greater(t, scanned, 5, "the database, the config and the artifacts")
}

// jobID takes the "id" of a job's JSON.
func jobID(t *testing.T, out string) string {
	t.Helper()
	_, rest, ok := strings.Cut(out, `"id": "`)
	require.True(t, ok, out)
	id, _, _ := strings.Cut(rest, `"`)
	return id
}

// scanOutputs fails when any output or any file under dir (except the token
// file) contains a secret; it returns how many files it read.
func scanOutputs(t *testing.T, out []result, dir string, secrets []string) int {
	t.Helper()
	for i, r := range out {
		for _, s := range secrets {
			require.False(t, strings.Contains(r.stdout+r.stderr, s), "output %d leaks", i)
		}
	}
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || d.Name() == "pve-token" {
			return err
		}
		data, err := os.ReadFile(p)
		for _, s := range secrets {
			require.False(t, strings.Contains(string(data), s), "%s leaks", p)
		}
		n++
		return err
	})
	require.NoError(t, err)
	return n
}
