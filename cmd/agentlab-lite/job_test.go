package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitJob polls "job show" until cond holds.
func (e *simEnv) waitJob(id string, cond func(jobJSON) bool) jobJSON {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var j jobJSON
		e.okJSON(&j, "job", "show", id)
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %s never reached the condition; last: %+v", id, j)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestJobRunWait runs a job on a generated repository through the detached
// supervisor and follows it to the end.
func TestJobRunWait(t *testing.T) {
	t.Setenv(asCLI, "1")
	e := newSimEnv(t, simOptions{})
	repo, err := makeDemoRepo(testCtx(t), filepath.Join(t.TempDir(), "repo"))
	require.NoError(t, err)
	var j jobJSON
	e.okJSON(&j, "job", "run", "--repo", repo, "--task", "list the repo", "--profile",
		"yolo-ephemeral", "--ttl", "90m", "--wait")
	require.Equal(t, "COMPLETED", j.Status, "%+v", j.Result)
	require.Equal(t, 90, j.TTLMinutes)
	require.NotZero(t, j.SandboxVMID)
	names := map[string]bool{}
	for _, a := range j.Artifacts {
		names[a.Name] = true
	}
	require.True(t, names["job.log"] && names["result.txt"], "%+v", j.Artifacts)

	logs := e.ok("job", "logs", j.ID)
	require.Contains(t, logs, "task: list the repo")
	require.Contains(t, logs, "README.md")
	require.Contains(t, e.ok("job", "artifacts", j.ID), "result.txt")
	require.Contains(t, e.ok("job", "list"), j.ID)
	show := e.ok("sandbox", "show", strconv.Itoa(j.SandboxVMID))
	require.Equal(t, "DESTROYED", field(t, show, "State"), "the job's teardown ran")
}

// TestJobSandboxDestroyedMidRun starts a job that returns at once, destroys
// its sandbox while it runs, and checks the job fails with the reason.
func TestJobSandboxDestroyedMidRun(t *testing.T) {
	t.Setenv(asCLI, "1")
	e := newSimEnv(t, simOptions{})
	var j jobJSON
	e.okJSON(&j, "job", "run", "--task", "run diagnostics slowly", "--profile",
		"yolo-ephemeral", "--command", "echo started; sleep 8")
	require.Equal(t, "QUEUED", j.Status)
	j = e.waitJob(j.ID, func(j jobJSON) bool { return j.Status == "RUNNING" })
	vmid := strconv.Itoa(j.SandboxVMID)
	r := e.cli("sandbox", "destroy", vmid)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "runs job "+j.ID)
	require.Contains(t, e.ok("sandbox", "destroy", "--force", vmid), "destroyed (state=DESTROYED)")
	j = e.waitJob(j.ID, func(j jobJSON) bool { return j.Status != "RUNNING" })
	require.Equal(t, "FAILED", j.Status, "the job ends, never stuck RUNNING")
	require.Equal(t, "sandbox destroyed", j.Result.Message, "the destroy is the reason")
}

func TestJobCancel(t *testing.T) {
	t.Setenv(asCLI, "1")
	e := newSimEnv(t, simOptions{})
	var j jobJSON
	e.okJSON(&j, "job", "run", "--task", "wait", "--profile", "yolo-ephemeral",
		"--command", "sleep 8")
	j = e.waitJob(j.ID, func(j jobJSON) bool { return j.Status == "RUNNING" })
	require.Contains(t, e.ok("job", "cancel", j.ID), "canceled (status=CANCELED)")
	show := e.ok("sandbox", "show", strconv.Itoa(j.SandboxVMID))
	require.Equal(t, "DESTROYED", field(t, show, "State"))
}

// TestSimServe runs "sim serve" and drives it through the config it writes.
func TestSimServe(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(testCtx(t))
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"sim", "serve", "--dir", dir, "--task-delay", "5ms",
			"--fault", "fail-task=qmclone,count=1"}, strings.NewReader(""), &stdout, &stderr)
	}()
	cfg := filepath.Join(dir, "config.yaml")
	require.Eventually(t, func() bool {
		_, err := os.Stat(cfg)
		return err == nil
	}, 20*time.Second, 20*time.Millisecond)
	r := runCLI(t, "--config", cfg, "sandbox", "new", "--profile", "minimal")
	require.Equal(t, 1, r.code, "the injected clone failure fails the first create")
	require.Contains(t, r.stderr, "simulated task failure")
	r = runCLI(t, "--config", cfg, "sandbox", "new", "--profile", "minimal")
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "RUNNING", field(t, r.stdout, "State"))
	cancel()
	require.Equal(t, 0, <-done, stderr.String())
	require.Contains(t, stdout.String(), "export AGENTLAB_CONFIG="+cfg)
}

func TestDemo(t *testing.T) {
	r := runCLI(t, "demo")
	require.Equal(t, 0, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	for _, s := range []string{"REQUESTED -> PROVISIONING", "ORIGINAL", "CHANGED",
		"marker is ORIGINAL again", "ended COMPLETED", "the job's result: ok: 4 entries",
		"demo finished"} {
		require.Contains(t, r.stdout, s)
	}
}

func TestFaultSpecs(t *testing.T) {
	for _, tt := range []struct {
		spec string
		err  string
	}{
		{"fail-task=qmclone,count=1", ""},
		{"status=500,path=/status/current$,prob=0.5,method=get", ""},
		{"latency=200ms", ""},
		{"nextid-taken", ""},
		{"count=1", "does nothing"},
		{"colour=red", "unknown setting"},
		{"status=abc", "invalid syntax"},
	} {
		_, err := parseFault(tt.spec)
		if tt.err == "" {
			require.NoError(t, err, tt.spec)
		} else {
			require.ErrorContains(t, err, tt.err, tt.spec)
		}
	}
}

// TestJobTakeoverAfterSupervisorDies kills a job's supervisor mid-run; the
// maintenance process takes the job over from the guest's files and brings
// it to completion and teardown.
func TestJobTakeoverAfterSupervisorDies(t *testing.T) {
	t.Setenv(asCLI, "1")
	e := newSimEnv(t, simOptions{})
	var j jobJSON
	e.okJSON(&j, "job", "run", "--task", "outlive my runner", "--profile", "yolo-ephemeral",
		"--command", "echo begin; sleep 2; echo end")
	j = e.waitJob(j.ID, func(j jobJSON) bool { return j.Status == "RUNNING" })
	require.Eventually(t, func() bool {
		return strings.Contains(e.ok("job", "logs", j.ID), "begin")
	}, 20*time.Second, 50*time.Millisecond, "the guest process runs")
	pid := supervisorPID(t, e.dir, j.ID)
	proc, err := os.FindProcess(pid)
	require.NoError(t, err)
	require.NoError(t, proc.Kill())

	cfg, err := loadConfig(e.cfg, "test", os.Getenv)
	require.NoError(t, err)
	cfg.Timeouts.JobHeartbeat = duration(time.Second)
	cfg.Maintenance.ReconcileInterval = duration(200 * time.Millisecond)
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	var out bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &out, getenv: os.Getenv}
	go func() { done <- c.maintainConfig(ctx, cfg, nil) }()
	j = e.waitJob(j.ID, func(j jobJSON) bool { return j.Status != "RUNNING" })
	cancel()
	require.NoError(t, <-done)
	require.Equal(t, "COMPLETED", j.Status, "%+v", j.Result)
	require.Contains(t, e.ok("job", "logs", j.ID), "end")
	show := e.ok("sandbox", "show", strconv.Itoa(j.SandboxVMID))
	require.Equal(t, "DESTROYED", field(t, show, "State"))
}

// supervisorPID finds the pid the supervisor of job logged.
func supervisorPID(t *testing.T, dir, job string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "state", "supervisor.log"))
	require.NoError(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, "job_id="+job) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "pid="); ok {
				pid, err := strconv.Atoi(v)
				require.NoError(t, err)
				return pid
			}
		}
	}
	t.Fatalf("no supervisor pid for %s in:\n%s", job, data)
	return 0
}

// TestJobSecretNeverStored delivers a secret from the environment through
// the supervisor's pipe: the job sees it, the store never holds it.
func TestJobSecretNeverStored(t *testing.T) {
	t.Setenv(asCLI, "1")
	t.Setenv("AL_TEST_SECRET", "s3cr3t-value")
	e := newSimEnv(t, simOptions{})
	var j jobJSON
	e.okJSON(&j, "job", "run", "--task", "use the secret", "--profile", "yolo-ephemeral",
		"--secret", "API_TOKEN=AL_TEST_SECRET", "--wait",
		"--command", `echo "secret length ${#API_TOKEN}"`)
	require.Equal(t, "COMPLETED", j.Status, "%+v", j.Result)
	require.Contains(t, e.ok("job", "logs", j.ID), "secret length 12")
	for _, name := range []string{"agentlab.db", "agentlab.db-wal"} {
		data, err := os.ReadFile(filepath.Join(e.dir, name))
		if err == nil {
			require.False(t, bytes.Contains(data, []byte("s3cr3t-value")), "secret in %s", name)
		}
	}
	r := e.cli("job", "run", "--task", "x", "--profile", "yolo-ephemeral", "--secret", "NOPE_UNSET")
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "environment variable NOPE_UNSET is not set")
}
