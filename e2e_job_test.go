package agentlab_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
)

// TestE2E_JobEndsOnSimulator runs jobs on the real path: one reads the
// cloned repository and completes, a non-zero exit is FAILED with its code,
// a deadline is TIMEOUT, and none leaves a VM.
func TestE2E_JobEndsOnSimulator(t *testing.T) {
	w := newRealWorld(t, pvesim.Config{})
	ctx := ctxT(t)
	tests := []struct {
		name, cmd string
		timeout   time.Duration
		status    agentlab.JobStatus
		code      int
		log       string
	}{
		{"reads the clone", "cat README", 0, agentlab.JobCompleted, 0, "hello\n"},
		{"failing command", "echo oops >&2; exit 3", 0, agentlab.JobFailed, 3, "oops\n"},
		{"deadline", "echo started; sleep 30", time.Second, agentlab.JobTimeout, -1,
			"started\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			j, err := w.manager.RunJob(ctx, agentlab.JobSpec{RepoURL: gitRepo(t),
				Profile: "yolo-ephemeral", Task: "t", Command: tt.cmd, Timeout: tt.timeout})
			require.NoError(t, err)
			rec, err := j.Wait(ctx)
			require.NoError(t, err)
			require.Equal(t, tt.status, rec.Status, rec.Message)
			if tt.code >= 0 {
				require.Equal(t, tt.code, rec.ExitCode)
			} else {
				require.Contains(t, rec.Message, "deadline")
				require.Less(t, time.Since(start), 15*time.Second, "the deadline ends it")
			}
			var logs bytes.Buffer
			require.NoError(t, j.Logs(ctx, &logs, agentlab.LogOptions{}))
			require.Equal(t, tt.log, logs.String())
			require.Len(t, w.sim.VMs(), 1, "only the template is left")
		})
	}
}

// TestE2E_JobSandboxDestroyed destroys a job's sandbox on the real path
// while the job is still QUEUED (its guest agent is slow to answer) and
// while it is RUNNING: the job ends FAILED with the reason within seconds.
func TestE2E_JobSandboxDestroyed(t *testing.T) {
	for _, tt := range []struct {
		name  string
		delay time.Duration
		want  agentlab.JobStatus
	}{
		{"queued", 30 * time.Second, agentlab.JobQueued},
		{"running", 0, agentlab.JobRunning},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newRealWorld(t, pvesim.Config{AgentDelay: tt.delay})
			ctx := ctxT(t)
			j, err := w.manager.RunJob(ctx, agentlab.JobSpec{Profile: "yolo-ephemeral",
				Task: "t", Command: "echo started; sleep 30"})
			require.NoError(t, err)
			sb := jobSandbox(t, w.manager, j, tt.want)
			start := time.Now()
			require.NoError(t, sb.Destroy(ctx))
			rec, err := j.Wait(ctx)
			require.NoError(t, err)
			require.Less(t, time.Since(start), 5*time.Second)
			require.Equal(t, agentlab.JobFailed, rec.Status)
			require.Equal(t, "sandbox destroyed", rec.Message)
			require.Len(t, w.sim.VMs(), 1, "only the template is left")
		})
	}
}

// jobSandbox waits until j has a sandbox and is in status want (for
// RUNNING, until its command logged), and returns the sandbox.
func jobSandbox(t *testing.T, m *agentlab.Manager, j *agentlab.Job,
	want agentlab.JobStatus) *agentlab.Sandbox {
	t.Helper()
	ctx := ctxT(t)
	for {
		rec, err := j.Refresh(ctx)
		require.NoError(t, err)
		sbs, err := m.List(ctx, agentlab.SandboxFilter{JobID: j.ID(),
			States: []agentlab.State{agentlab.StateBooting, agentlab.StateRunning}})
		require.NoError(t, err)
		logs, err := m.Events(ctx, agentlab.EventFilter{JobID: j.ID(),
			Kinds: []string{agentlab.EventJobLog}})
		require.NoError(t, err)
		ready := want == agentlab.JobQueued || len(logs) > 0
		if rec.Status == want && len(sbs) == 1 && ready {
			sb, err := m.Get(ctx, sbs[0].VMID)
			require.NoError(t, err)
			return sb
		}
		require.False(t, rec.Status.Terminal(), "job ended: %s", rec.Message)
		time.Sleep(20 * time.Millisecond)
	}
}
