package agentlab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/agentlabtest"
)

// gitRepo makes a local repository with one commit and returns its path.
func gitRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q",
			"--allow-empty", "-m", "init"},
	} {
		if args[0] == "-c" {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "README"), []byte("hello\n"), 0o644))
			add := exec.Command("git", "-C", dir, "add", "README")
			out, err := add.CombinedOutput()
			require.NoError(t, err, string(out))
		}
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}
	return dir
}

func jobEnv(t *testing.T, cmd string) *agentlabtest.Env {
	t.Helper()
	return agentlabtest.NewEnv(t, agentlabtest.EnvOptions{Profiles: []agentlab.Profile{{
		Name: "test", TemplateVMID: 9000,
		Job: agentlab.JobSettings{Command: cmd, Artifacts: []string{"out.txt"}},
	}}})
}

func waitJob(t *testing.T, j *agentlab.Job) agentlab.JobRecord {
	t.Helper()
	rec, err := j.Wait(ctxT(t))
	require.NoError(t, err)
	return rec
}

func TestJob_CompletesWithLogAndArtifacts(t *testing.T) {
	env := jobEnv(t, `cat "$AGENTLAB_TASK_FILE"; echo; cat README; echo result > out.txt`)
	ctx := ctxT(t)
	j, err := env.Manager.RunJob(ctx, agentlab.JobSpec{RepoURL: gitRepo(t), Task: "do it",
		Profile: "test"})
	require.NoError(t, err)
	require.Regexp(t, `^job_[0-9a-f]{16}$`, j.ID())
	rec := waitJob(t, j)
	require.Equal(t, agentlab.JobCompleted, rec.Status, rec.Message)
	require.Equal(t, 0, rec.ExitCode)
	require.NotZero(t, rec.VMID)

	var names []string
	for _, a := range rec.Results {
		names = append(names, a.Name)
		require.Len(t, a.SHA256, 64)
	}
	require.ElementsMatch(t, []string{"job.log", "out.txt"}, names)
	f, err := j.OpenArtifact("out.txt")
	require.NoError(t, err)
	data, err := io.ReadAll(f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, "result\n", string(data))
	_, err = j.OpenArtifact("nope")
	require.ErrorIs(t, err, agentlab.ErrNotFound)

	var logs bytes.Buffer
	require.NoError(t, j.Logs(ctx, &logs, agentlab.LogOptions{}))
	require.Equal(t, "do it\nhello\n", logs.String())
	logs.Reset()
	require.NoError(t, j.Logs(ctx, &logs, agentlab.LogOptions{Tail: 1}))
	require.Equal(t, "hello\n", logs.String())

	sb, err := env.Manager.Get(ctx, rec.VMID)
	require.NoError(t, err)
	require.Equal(t, agentlab.StateDestroyed, sb.State(), "no sandbox left")
	require.Empty(t, env.Hypervisor.VMs())
	evs, err := env.Manager.Events(ctx, agentlab.EventFilter{JobID: j.ID(),
		Kinds: []string{agentlab.EventJobLog}})
	require.NoError(t, err)
	require.Len(t, evs, 2)
}

func TestJob_ExitCodes(t *testing.T) {
	tests := []struct {
		cmd  string
		want agentlab.JobStatus
		code int
	}{
		{"exit 3", agentlab.JobFailed, 3},
		{"exit 124", agentlab.JobTimeout, 124},
		{"true", agentlab.JobCompleted, 0},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			env := jobEnv(t, "echo never")
			j, err := env.Manager.RunJob(ctxT(t), agentlab.JobSpec{Task: "t",
				Profile: "test", Command: tt.cmd})
			require.NoError(t, err)
			rec := waitJob(t, j)
			require.Equal(t, tt.want, rec.Status, rec.Message)
			require.Equal(t, tt.code, rec.ExitCode)
			require.Empty(t, env.Hypervisor.VMs())
		})
	}
}

func TestJob_Deadline(t *testing.T) {
	clock := agentlabtest.NewClock(time.Now())
	env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{Clock: clock})
	ctx := ctxT(t)
	j, err := env.Manager.RunJob(ctx, agentlab.JobSpec{Task: "t", Profile: "test",
		Command: "echo started; sleep 60", Timeout: 10 * time.Minute})
	require.NoError(t, err)
	waitLog(t, env, j.ID(), "started")
	clock.Advance(11 * time.Minute)
	rec := waitJob(t, j)
	require.Equal(t, agentlab.JobTimeout, rec.Status)
	require.Contains(t, rec.Message, "deadline")
	require.Empty(t, env.Hypervisor.VMs())
}

// waitLog waits until the job published a log line containing s.
func waitLog(t *testing.T, env *agentlabtest.Env, id, s string) {
	t.Helper()
	ctx := ctxT(t)
	for {
		evs, err := env.Manager.Events(ctx, agentlab.EventFilter{JobID: id,
			Kinds: []string{agentlab.EventJobLog}})
		require.NoError(t, err)
		for _, ev := range evs {
			if strings.Contains(ev.Message, s) {
				return
			}
		}
		rec, err := env.Manager.GetJob(ctx, id)
		require.NoError(t, err)
		if st := rec.Record(); st.Status.Terminal() {
			t.Fatalf("job ended %s (%s) without log line %q", st.Status, st.Message, s)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no log line %q; job %s", s, rec.Record().Status)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestJob_SandboxDestroyedWhileRunning(t *testing.T) {
	env := jobEnv(t, "echo started; sleep 60")
	ctx := ctxT(t)
	j, err := env.Manager.RunJob(ctx, agentlab.JobSpec{Task: "t", Profile: "test"})
	require.NoError(t, err)
	waitLog(t, env, j.ID(), "started")
	rec, err := j.Refresh(ctx)
	require.NoError(t, err)
	sb, err := env.Manager.Get(ctx, rec.VMID)
	require.NoError(t, err)
	require.NoError(t, sb.Destroy(ctx))
	rec, err = j.Refresh(ctx)
	require.NoError(t, err)
	require.Equal(t, agentlab.JobFailed, rec.Status, "failed at once, not left RUNNING")
	require.Contains(t, rec.Message, "sandbox destroyed")
	rec = waitJob(t, j)
	require.Equal(t, agentlab.JobFailed, rec.Status)
}

func TestJob_Cancel(t *testing.T) {
	env := jobEnv(t, "echo started; sleep 60")
	ctx := ctxT(t)
	j, err := env.Manager.RunJob(ctx, agentlab.JobSpec{Task: "t", Profile: "test"})
	require.NoError(t, err)
	waitLog(t, env, j.ID(), "started")
	require.NoError(t, j.Cancel(ctx))
	rec := waitJob(t, j)
	require.Equal(t, agentlab.JobCanceled, rec.Status)
	require.Empty(t, env.Hypervisor.VMs())
	require.NoError(t, j.Cancel(ctx), "cancelling a finished job does nothing")
}

func TestJob_CancelKillsGuestProcess(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	env := jobEnv(t, "echo $$ > "+pidFile+"; echo started; sleep 60")
	ctx := ctxT(t)
	keep := true
	j, err := env.Manager.RunJob(ctx, agentlab.JobSpec{Task: "t", Profile: "test",
		Keepalive: &keep})
	require.NoError(t, err)
	waitLog(t, env, j.ID(), "started")
	require.NoError(t, j.Cancel(ctx))
	require.Equal(t, agentlab.JobCanceled, waitJob(t, j).Status)

	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid := strings.TrimSpace(string(b))
	require.Eventually(t, func() bool {
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		return err != nil || strings.Contains(string(st), ") Z ")
	}, 10*time.Second, 20*time.Millisecond, "the job's process survived the cancel")
}

func TestJob_SecretsStayOutOfRecords(t *testing.T) {
	env := jobEnv(t, `stat -c %a "$AGENTLAB_SECRETS_DIR/API_TOKEN"; `+
		`test "$API_TOKEN" = s3cr3t-value && echo env-ok`)
	ctx := ctxT(t)
	j, err := env.Manager.RunJob(ctx, agentlab.JobSpec{Task: "t", Profile: "test",
		Secrets: map[string]string{"API_TOKEN": "s3cr3t-value"}})
	require.NoError(t, err)
	rec := waitJob(t, j)
	require.Equal(t, agentlab.JobCompleted, rec.Status, rec.Message)
	var logs bytes.Buffer
	require.NoError(t, j.Logs(ctx, &logs, agentlab.LogOptions{}))
	require.Equal(t, "600\nenv-ok\n", logs.String())

	blob, err := json.Marshal(rec)
	require.NoError(t, err)
	require.NotContains(t, string(blob), "s3cr3t-value")
	require.Contains(t, string(blob), "API_TOKEN", "names are recorded")
	evs, err := env.Manager.Events(ctx, agentlab.EventFilter{})
	require.NoError(t, err)
	blob, err = json.Marshal(evs)
	require.NoError(t, err)
	require.NotContains(t, string(blob), "s3cr3t-value")
}

func TestJob_InvalidSpecs(t *testing.T) {
	env := newEnv(t)
	for _, spec := range []agentlab.JobSpec{
		{Task: "t"},
		{Profile: "test"},
		{Profile: "test", Task: "t", Timeout: -1},
		{Profile: "test", Task: "t", RepoURL: "--upload-pack=x"},
		{Profile: "test", Task: "t", Env: map[string]string{"A B": "x"}},
		{Profile: "test", Task: "t", Artifacts: []string{"../escape"}},
		{Profile: "test", Task: "t", Artifacts: []string{"/etc/passwd"}},
		{Profile: "test", Task: "t", Artifacts: []string{"a/../../b"}},
		{Profile: "test", Task: "t", Artifacts: []string{"."}},
		{Profile: "test", Task: "t", Artifacts: []string{"./job.log"}},
		{Profile: "test", Task: "t", Artifacts: []string{"job.log/x"}},
		{Profile: "test", Task: "t", Artifacts: []string{""}},
		{Profile: "test", Task: "t", TTL: time.Second},
	} {
		_, err := env.Manager.RunJob(ctxT(t), spec)
		require.ErrorIs(t, err, agentlab.ErrInvalidArgument, "%+v", spec)
	}
	jobs, err := env.Manager.ListJobs(ctxT(t), agentlab.JobFilter{})
	require.NoError(t, err)
	require.Empty(t, jobs, "a rejected spec leaves no job behind")
	_, err = env.Manager.RunJob(ctxT(t), agentlab.JobSpec{Task: "t", Profile: "nope"})
	require.ErrorIs(t, err, agentlab.ErrNotFound)
}

func TestJob_ParallelNoLeaks(t *testing.T) {
	env := jobEnv(t, "echo ok > out.txt")
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j, err := env.Manager.RunJob(ctx, agentlab.JobSpec{Task: fmt.Sprint(i),
				Profile: "test"})
			if err != nil {
				errs <- err
				return
			}
			rec, err := j.Wait(ctx)
			if err == nil && rec.Status != agentlab.JobCompleted {
				err = fmt.Errorf("job %s: %s %s", rec.ID, rec.Status, rec.Message)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Empty(t, env.Hypervisor.VMs())
	st, err := env.Manager.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, 20, st.JobsByStatus[agentlab.JobCompleted])
}

func TestJob_ReattachAfterRestart(t *testing.T) {
	hv, err := agentlabtest.NewHypervisor(agentlabtest.HypervisorOptions{Dir: t.TempDir()})
	require.NoError(t, err)
	st := agentlabtest.NewStore()
	profiles, err := agentlab.NewProfileSet(agentlab.Profile{Name: "test", TemplateVMID: 9000,
		Job: agentlab.JobSettings{Command: "echo started; sleep 1; echo finished > out.txt",
			Artifacts: []string{"out.txt"}}})
	require.NoError(t, err)
	cfg := agentlab.Config{Store: st, Hypervisor: hv, Guest: hv.Guest(), Profiles: profiles,
		JobPollInterval: 20 * time.Millisecond, JobHeartbeatTimeout: 200 * time.Millisecond,
		ArtifactDir: t.TempDir(), ReapInterval: -1, IdleInterval: -1, ReconcileInterval: -1}
	ctx := ctxT(t)

	first, err := agentlab.New(ctx, cfg)
	require.NoError(t, err)
	j, err := first.RunJob(ctx, agentlab.JobSpec{Task: "t", Profile: "test"})
	require.NoError(t, err)
	for { // wait until the guest process runs
		rec, err := j.Refresh(ctx)
		require.NoError(t, err)
		evs, err := first.Events(ctx, agentlab.EventFilter{JobID: j.ID(),
			Kinds: []string{agentlab.EventJobLog}})
		require.NoError(t, err)
		if rec.Status == agentlab.JobRunning && len(evs) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, first.Close(ctx), "the embedding process goes away")
	time.Sleep(300 * time.Millisecond) // its heartbeat goes stale

	second, err := agentlab.New(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = second.Close(context.Background()) })
	j2, err := second.GetJob(ctx, j.ID())
	require.NoError(t, err)
	rec, err := j2.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, agentlab.JobCompleted, rec.Status, rec.Message)
	require.Len(t, rec.Results, 2, "log and out.txt collected by the new Manager")
	require.Empty(t, hv.VMs())
}

// TestJob_DestroyedByAnotherManager: a second Manager on the same Store
// destroys a running job's sandbox and is slow to record it; the runner's
// own failing poll must not win over the destroy as the job's reason.
func TestJob_DestroyedByAnotherManager(t *testing.T) {
	env := jobEnv(t, "echo started; sleep 60")
	ctx := ctxT(t)
	j, err := env.Manager.RunJob(ctx, agentlab.JobSpec{Task: "t", Profile: "test"})
	require.NoError(t, err)
	waitLog(t, env, j.ID(), "started")

	var slow sync.Once // only the other Manager's destroy is slow
	env.Hypervisor.AddAfterHook(func(_ context.Context, op agentlabtest.Op, _ int) {
		if op == agentlabtest.OpDestroy {
			slow.Do(func() { time.Sleep(500 * time.Millisecond) }) // the runner's polls fail
		}
	})
	profiles, err := agentlab.NewProfileSet(agentlab.Profile{Name: "test", TemplateVMID: 9000})
	require.NoError(t, err)
	other, err := agentlab.New(ctx, agentlab.Config{Store: env.Store,
		Hypervisor: env.Hypervisor, Guest: env.Guest, Profiles: profiles,
		ReapInterval: -1, IdleInterval: -1, ReconcileInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close(context.Background()) })
	sb, err := other.Get(ctx, j.Record().VMID)
	require.NoError(t, err)
	require.NoError(t, sb.Destroy(ctx))

	rec := waitJob(t, j)
	require.Equal(t, agentlab.JobFailed, rec.Status)
	require.Equal(t, "sandbox destroyed", rec.Message)
}

// TestJob_HeartbeatWhileProvisioning: a job whose sandbox takes longer to
// come up than the heartbeat timeout is not taken for abandoned by another
// Manager's reconcile.
func TestJob_HeartbeatWhileProvisioning(t *testing.T) {
	env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{Config: agentlab.Config{
		JobHeartbeatTimeout: 100 * time.Millisecond}})
	ctx := ctxT(t)
	release := make(chan struct{})
	env.Hypervisor.AddHook(func(ctx context.Context, op agentlabtest.Op, _ int) (error, bool) {
		if op == agentlabtest.OpGuestInfo {
			<-release // hold the sandbox in BOOTING
		}
		return nil, false
	})
	j, err := env.Manager.RunJob(ctx, agentlab.JobSpec{Task: "t", Profile: "test"})
	require.NoError(t, err)

	profiles, err := agentlab.NewProfileSet(agentlab.Profile{Name: "test", TemplateVMID: 9000})
	require.NoError(t, err)
	other, err := agentlab.New(ctx, agentlab.Config{Store: env.Store,
		Hypervisor: env.Hypervisor, Guest: env.Guest, Profiles: profiles,
		JobHeartbeatTimeout: 100 * time.Millisecond,
		ReapInterval:        -1, IdleInterval: -1, ReconcileInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close(context.Background()) })
	for range 5 {
		time.Sleep(100 * time.Millisecond)
		_, err := other.Reconcile(ctx, agentlab.ReconcileOptions{Apply: true})
		require.NoError(t, err)
	}
	close(release)
	rec := waitJob(t, j)
	require.Equal(t, agentlab.JobCompleted, rec.Status, rec.Message)
}

func TestJob_SandboxDestroyedWhileQueued(t *testing.T) {
	env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{})
	ctx := ctxT(t)
	release := make(chan struct{})
	env.Hypervisor.AddHook(func(ctx context.Context, op agentlabtest.Op, _ int) (error, bool) {
		if op == agentlabtest.OpGuestInfo {
			select { // hold the sandbox in BOOTING
			case <-release:
			case <-ctx.Done():
				return ctx.Err(), false
			}
		}
		return nil, false
	})
	j, err := env.Manager.RunJob(ctx, agentlab.JobSpec{Task: "t", Profile: "test"})
	require.NoError(t, err)
	var sbs []agentlab.SandboxRecord
	for len(sbs) == 0 {
		sbs, err = env.Manager.List(ctx, agentlab.SandboxFilter{JobID: j.ID(),
			States: []agentlab.State{agentlab.StateBooting}})
		require.NoError(t, err)
		time.Sleep(5 * time.Millisecond)
	}
	queued, err := j.Refresh(ctx)
	require.NoError(t, err)
	require.Equal(t, agentlab.JobQueued, queued.Status, "the job has not started yet")
	sb, err := env.Manager.Get(ctx, sbs[0].VMID)
	require.NoError(t, err)
	require.NoError(t, sb.Destroy(ctx))
	rec, err := j.Refresh(ctx)
	require.NoError(t, err)
	require.Equal(t, agentlab.JobFailed, rec.Status, "failed at once")
	require.Contains(t, rec.Message, "sandbox destroyed")
	close(release)
	rec = waitJob(t, j)
	require.Equal(t, agentlab.JobFailed, rec.Status)
	require.Empty(t, env.Hypervisor.VMs())
}

// TestJob_FloodedLogIsBounded: a guest that floods its log (thousands of
// lines, a line of 300 kB) gets at most maxLogEvents job.log events, each
// cut to about 1000 bytes, while the full log is kept as an artifact.
func TestJob_FloodedLogIsBounded(t *testing.T) {
	env := jobEnv(t, `seq 1 3000 | sed 's/^/line /'; head -c 300000 /dev/zero | tr '\0' x;`+
		` echo; echo done > out.txt`)
	ctx := ctxT(t)
	j, err := env.Manager.RunJob(ctx, agentlab.JobSpec{Task: "flood", Profile: "test"})
	require.NoError(t, err)
	rec := waitJob(t, j)
	require.Equal(t, agentlab.JobCompleted, rec.Status, rec.Message)
	evs, err := env.Manager.Events(ctx, agentlab.EventFilter{JobID: rec.ID,
		Kinds: []string{agentlab.EventJobLog}})
	require.NoError(t, err)
	require.Len(t, evs, 2000, "job.log events are capped")
	for _, ev := range evs {
		require.LessOrEqual(t, len(ev.Message), 1000+len("…"))
	}
	var full bytes.Buffer
	require.NoError(t, j.Logs(ctx, &full, agentlab.LogOptions{}))
	require.Contains(t, full.String(), "line 3000\n", "the full log is kept")
	require.Contains(t, full.String(), strings.Repeat("x", 300000))
}

// TestJob_ArtifactBudget: a guest that writes artifacts larger than
// Config.MaxArtifactBytes fills no host disk: what does not fit is not
// kept (a partial tree is removed), the rest is, and the job still ends.
func TestJob_ArtifactBudget(t *testing.T) {
	env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{Profiles: []agentlab.Profile{{
		Name: "test", TemplateVMID: 9000,
		Job: agentlab.JobSettings{Command: "head -c 5000 /dev/zero > big.bin; " +
			"mkdir tree; for i in 1 2 3 4 5 6; do head -c 300 /dev/zero > tree/$i; done; " +
			"echo small > small.txt", Artifacts: []string{"big.bin", "tree", "small.txt"}},
	}}, Config: agentlab.Config{MaxArtifactBytes: 1500}})
	ctx := ctxT(t)
	j, err := env.Manager.RunJob(ctx, agentlab.JobSpec{Task: "t", Profile: "test"})
	require.NoError(t, err)
	rec := waitJob(t, j)
	require.Equal(t, agentlab.JobCompleted, rec.Status, rec.Message)
	var names []string
	dir := ""
	for _, a := range rec.Results {
		names = append(names, a.Name)
		dir = filepath.Dir(a.Path)
	}
	require.ElementsMatch(t, []string{"job.log", "small.txt"}, names)
	for _, gone := range []string{"big.bin", "tree"} {
		_, err := os.Stat(filepath.Join(dir, gone))
		require.ErrorIs(t, err, os.ErrNotExist, "%s is not kept", gone)
	}
	evs, err := env.Manager.Events(ctx, agentlab.EventFilter{JobID: rec.ID,
		Kinds: []string{agentlab.EventJobStep}})
	require.NoError(t, err)
	over := 0
	for _, ev := range evs {
		if strings.Contains(ev.Message, "MaxArtifactBytes") {
			over++
		}
	}
	require.Equal(t, 2, over, "each refused artifact is reported")
}

// TestJob_SilentGuestHitsDeadline: a guest that accepts the runner's
// commands and never answers (its connection kept alive) does not hold the
// job RUNNING past its deadline.
func TestJob_SilentGuestHitsDeadline(t *testing.T) {
	env := jobEnv(t, "sleep 30")
	var silent atomic.Bool
	env.Hypervisor.AddHook(func(ctx context.Context, op agentlabtest.Op, _ int) (error, bool) {
		if op == agentlabtest.OpExec && silent.Load() {
			<-ctx.Done()
			return ctx.Err(), false
		}
		return nil, false
	})
	ctx := ctxT(t)
	j, err := env.Manager.RunJob(ctx, agentlab.JobSpec{Task: "t", Profile: "test",
		Timeout: time.Second})
	require.NoError(t, err)
	for {
		rec, err := j.Refresh(ctx)
		require.NoError(t, err)
		if rec.Status == agentlab.JobRunning && rec.GuestDir != "" {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	silent.Store(true)
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	rec, err := j.Wait(wctx)
	require.NoError(t, err, "the job ends although the guest never answers")
	require.Equal(t, agentlab.JobTimeout, rec.Status, rec.Message)
	silent.Store(false)
}
