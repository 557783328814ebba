package agentlab_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/agentlabtest"
)

// startedJob runs a job that logs "started" and sleeps, and waits for the
// log line; it returns the job and its sandbox.
func startedJob(t *testing.T, env *agentlabtest.Env, spec agentlab.JobSpec) (*agentlab.Job,
	*agentlab.Sandbox) {
	t.Helper()
	ctx := ctxT(t)
	spec.Task, spec.Profile, spec.Command = "t", "test", "echo started; sleep 60"
	j, err := env.Manager.RunJob(ctx, spec)
	require.NoError(t, err)
	waitLog(t, env, j.ID(), "started")
	rec, err := j.Refresh(ctx)
	require.NoError(t, err)
	sb, err := env.Manager.Get(ctx, rec.VMID)
	require.NoError(t, err)
	return j, sb
}

func TestJob_SandboxLeaseExpires(t *testing.T) {
	clock := agentlabtest.NewClock(time.Now())
	env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{Clock: clock})
	ctx := ctxT(t)
	j, sb := startedJob(t, env, agentlab.JobSpec{TTL: 10 * time.Minute})
	clock.Advance(11 * time.Minute)
	rep, err := env.Manager.Reap(ctx)
	require.NoError(t, err)
	require.Equal(t, []int{sb.VMID()}, rep.Destroyed)
	rec, err := j.Refresh(ctx)
	require.NoError(t, err)
	require.Equal(t, agentlab.JobTimeout, rec.Status, "ended at once, not left RUNNING")
	require.Equal(t, "sandbox lease expired", rec.Message)
	require.Equal(t, agentlab.JobTimeout, waitJob(t, j).Status)
	require.Empty(t, env.Hypervisor.VMs())
}

func TestJob_SandboxVMDisappears(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	j, sb := startedJob(t, env, agentlab.JobSpec{})
	require.NoError(t, env.Hypervisor.Destroy(ctx, sb.VMID())) // behind the SDK's back
	_, err := env.Manager.Reconcile(ctx, agentlab.ReconcileOptions{Apply: true})
	require.NoError(t, err)
	rec, err := j.Refresh(ctx)
	require.NoError(t, err)
	require.Equal(t, agentlab.JobFailed, rec.Status, "failed at once, not left RUNNING")
	require.Equal(t, "sandbox vm disappeared", rec.Message)
	require.Equal(t, agentlab.JobFailed, waitJob(t, j).Status)
	require.Equal(t, agentlab.StateDestroyed, state(t, sb))
}

func TestJob_ProvisionFailureLeavesNoVM(t *testing.T) {
	for _, op := range []agentlabtest.Op{agentlabtest.OpProvision, agentlabtest.OpStart,
		agentlabtest.OpGuestInfo} {
		t.Run(string(op), func(t *testing.T) {
			env := newEnv(t)
			env.Hypervisor.FailNext(op, 0, 1, errors.New("injected"))
			j, err := env.Manager.RunJob(ctxT(t), agentlab.JobSpec{Task: "t", Profile: "test"})
			require.NoError(t, err)
			rec := waitJob(t, j)
			require.Equal(t, agentlab.JobFailed, rec.Status)
			require.Contains(t, rec.Message, "injected")
			require.Empty(t, env.Hypervisor.VMs(), "no VM left behind")
		})
	}
}

// TestJob_Ref checks out the ref the spec names, and fails a job whose ref
// does not exist.
func TestJob_Ref(t *testing.T) {
	repo := gitRepo(t)
	for _, args := range [][]string{{"checkout", "-q", "-b", "feature"},
		{"-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q",
			"--allow-empty", "-m", "feature"}, {"tag", "v1"}, {"checkout", "-q", "main"}} {
		out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).
			CombinedOutput()
		require.NoError(t, err, string(out))
	}
	env := jobEnv(t, "git log -1 --format=%s")
	tests := []struct{ ref, log string }{{"", "init\n"}, {"feature", "feature\n"},
		{"v1", "feature\n"}}
	for _, tt := range tests {
		j, err := env.Manager.RunJob(ctxT(t), agentlab.JobSpec{RepoURL: repo, Ref: tt.ref,
			Task: "t", Profile: "test"})
		require.NoError(t, err)
		rec := waitJob(t, j)
		require.Equal(t, agentlab.JobCompleted, rec.Status, "ref %q: %s", tt.ref, rec.Message)
		var logs bytes.Buffer
		require.NoError(t, j.Logs(ctxT(t), &logs, agentlab.LogOptions{}))
		require.Equal(t, tt.log, logs.String(), "ref %q", tt.ref)
	}
	j, err := env.Manager.RunJob(ctxT(t), agentlab.JobSpec{RepoURL: repo, Ref: "nosuch",
		Task: "t", Profile: "test"})
	require.NoError(t, err)
	rec := waitJob(t, j)
	require.Equal(t, agentlab.JobFailed, rec.Status)
	var logs bytes.Buffer
	require.NoError(t, j.Logs(ctxT(t), &logs, agentlab.LogOptions{}))
	require.Contains(t, logs.String(), "git checkout failed")
	require.Empty(t, env.Hypervisor.VMs())
}

// TestJob_SecretsRemovedWhenJobEnds keeps the sandbox after the job and
// looks at what the job left in the guest: while it ran, a task file only
// the guest user may read; afterwards neither the task nor the secrets.
func TestJob_SecretsRemovedWhenJobEnds(t *testing.T) {
	env := jobEnv(t, `stat -c %a "$AGENTLAB_TASK_FILE"`)
	ctx := ctxT(t)
	keep := true
	j, err := env.Manager.RunJob(ctx, agentlab.JobSpec{Task: "t", Profile: "test",
		Keepalive: &keep, Secrets: map[string]string{"API_TOKEN": "s3cr3t-value"}})
	require.NoError(t, err)
	rec := waitJob(t, j)
	require.Equal(t, agentlab.JobCompleted, rec.Status, rec.Message)
	var logs bytes.Buffer
	require.NoError(t, j.Logs(ctx, &logs, agentlab.LogOptions{}))
	require.Equal(t, "600\n", logs.String(), "the task file is private")

	sb, err := env.Manager.Get(ctx, rec.VMID)
	require.NoError(t, err)
	require.Equal(t, agentlab.StateCompleted, sb.State(), "keepalive keeps the sandbox")
	require.NotEmpty(t, rec.GuestDir)
	res, err := sb.Exec(ctx, agentlab.ExecRequest{Argv: []string{"sh", "-c",
		`cd && test -f "$1/run.sh" && ! test -e "$1/task" && ! test -e "$1/secrets"`,
		"sh", rec.GuestDir}})
	require.NoError(t, err)
	require.Equal(t, 0, res.ExitCode, "the job's script stays, its task and secrets are gone: %s",
		res.Stderr)
	require.NoError(t, sb.Destroy(context.Background()))
}
