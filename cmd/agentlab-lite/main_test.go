package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
)

// asCLI makes the test binary act as agentlab-lite, so that "job run" can
// re-execute it as its detached supervisor.
const asCLI = "AGENTLAB_LITE_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}

// simEnv is a simulator with its config written, as "sim serve" leaves it.
type simEnv struct {
	t   *testing.T
	dir string
	cfg string
	srv *pvesim.Server
}

func newSimEnv(t *testing.T, o simOptions) *simEnv {
	t.Helper()
	dir := t.TempDir()
	srv, cfg, err := startSim(testCtx(t), dir, o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	return &simEnv{t: t, dir: dir, cfg: cfg.Path, srv: srv}
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// result is one CLI invocation's outcome.
type result struct {
	code           int
	stdout, stderr string
}

// cli runs agentlab-lite with the environment's config.
func (e *simEnv) cli(args ...string) result {
	e.t.Helper()
	return runCLI(e.t, append([]string{"--config", e.cfg}, args...)...)
}

// ok runs the CLI and requires exit 0.
func (e *simEnv) ok(args ...string) string {
	e.t.Helper()
	r := e.cli(args...)
	require.Equal(e.t, 0, r.code, "agentlab-lite %v\nstdout: %s\nstderr: %s", args, r.stdout,
		r.stderr)
	return r.stdout
}

// okJSON runs the CLI with --json and decodes its output into v.
func (e *simEnv) okJSON(v any, args ...string) {
	e.t.Helper()
	out := e.ok(append(args, "--json")...)
	require.NoError(e.t, json.Unmarshal([]byte(out), v), out)
}

func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(testCtx(t), args, strings.NewReader(""), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// newSandbox creates a sandbox and returns its VMID.
func (e *simEnv) newSandbox(args ...string) int {
	e.t.Helper()
	var sb sandboxJSON
	e.okJSON(&sb, append([]string{"sandbox", "new"}, args...)...)
	require.Equal(e.t, "RUNNING", sb.State)
	return sb.VMID
}

// field returns the value of "Key: value" in a show block.
func field(t *testing.T, block, key string) string {
	t.Helper()
	for _, line := range strings.Split(block, "\n") {
		if v, ok := strings.CutPrefix(line, key+": "); ok {
			return v
		}
	}
	t.Fatalf("no %q in:\n%s", key, block)
	return ""
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}
