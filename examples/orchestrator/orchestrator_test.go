package orchestrator_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/agentlabtest"
	"github.com/agentlab-sdk/agentlab/examples/orchestrator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunBatch(t *testing.T) {
	env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{})
	tasks := []string{"echo one", "echo two >&2", "exit 3", "echo $HOME | grep -q . && echo home"}
	results, err := orchestrator.Run(context.Background(), env.Manager, orchestrator.Batch{
		Profile: "test", Tasks: tasks, Parallel: 2, Labels: map[string]string{"batch": "b1"}})
	require.NoError(t, err)
	require.Len(t, results, len(tasks))
	want := []struct {
		out  string
		code int
	}{{"one\n", 0}, {"two\n", 0}, {"", 3}, {"home\n", 0}}
	for i, r := range results {
		require.NoError(t, r.Err, r.Task)
		require.Equal(t, want[i].out, r.Output, r.Task)
		require.Equal(t, want[i].code, r.ExitCode, r.Task)
	}
	require.Empty(t, env.Hypervisor.VMs(), "every sandbox was destroyed")
	recs, err := env.Manager.List(context.Background(), agentlab.SandboxFilter{
		Labels: map[string]string{"batch": "b1"}})
	require.NoError(t, err)
	require.Len(t, recs, len(tasks), "each task ran in a sandbox of its own")
	for _, r := range recs {
		require.Equal(t, agentlab.StateDestroyed, r.State)
	}
}

func TestRunBatchCreateFailure(t *testing.T) {
	env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{})
	boom := errors.New("clone failed")
	env.Hypervisor.FailNext(agentlabtest.OpProvision, 0, 1, boom)
	results, err := orchestrator.Run(context.Background(), env.Manager, orchestrator.Batch{
		Profile: "test", Tasks: []string{"echo a", "echo b"}, Parallel: 1})
	require.NoError(t, err)
	failed, ok := results[0], results[1]
	if failed.Err == nil {
		failed, ok = ok, failed
	}
	require.ErrorIs(t, failed.Err, boom, "one create fails")
	require.NoError(t, ok.Err, "the other task still runs")
	require.Equal(t, ok.Task[len("echo "):]+"\n", ok.Output)
	require.Empty(t, env.Hypervisor.VMs())
}

func TestRunInvalidBatch(t *testing.T) {
	env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{})
	_, err := orchestrator.Run(context.Background(), env.Manager, orchestrator.Batch{})
	require.Error(t, err)
}

func TestRunCanceled(t *testing.T) {
	env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	results, err := orchestrator.Run(ctx, env.Manager, orchestrator.Batch{Profile: "test",
		Tasks: []string{"echo a"}})
	require.NoError(t, err)
	require.ErrorIs(t, results[0].Err, context.Canceled)
	require.Empty(t, env.Hypervisor.VMs())
}
