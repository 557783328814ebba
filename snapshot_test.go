package agentlab_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/agentlabtest"
)

func run(t *testing.T, sb *agentlab.Sandbox, cmd string) string {
	t.Helper()
	res, err := sb.Exec(ctxT(t), agentlab.ExecRequest{Shell: cmd})
	require.NoError(t, err)
	require.Equal(t, 0, res.ExitCode, "%s: %s", cmd, res.Stderr)
	return strings.TrimSpace(string(res.Stdout))
}

func TestSnapshot_RestoreUndoesChange(t *testing.T) {
	tests := []struct {
		name   string
		before func(*agentlab.Sandbox, context.Context) error
		opts   *agentlab.RestoreOptions
		want   agentlab.State
		memory bool
	}{
		{"running", nil, nil, agentlab.StateRunning, false},
		{"running with memory", nil, nil, agentlab.StateRunning, true},
		{"stopped stays stopped", (*agentlab.Sandbox).Stop, nil, agentlab.StateStopped, false},
		{"paused stays paused", (*agentlab.Sandbox).Pause, nil, agentlab.StateSuspended, false},
		{"asked to stop", nil, &agentlab.RestoreOptions{Stopped: true},
			agentlab.StateStopped, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t)
			ctx := ctxT(t)
			sb := create(t, env, agentlab.CreateRequest{})
			require.Equal(t, "ORIGINAL", run(t, sb, "echo ORIGINAL > state.txt; cat state.txt"))
			require.NoError(t, sb.SaveSnapshot(ctx, "live-snap1",
				&agentlab.SnapshotOptions{Memory: tt.memory}))
			require.Equal(t, "CHANGED", run(t, sb, "echo CHANGED > state.txt; cat state.txt"))
			if tt.before != nil {
				require.NoError(t, tt.before(sb, ctx))
			}
			require.NoError(t, sb.RestoreSnapshot(ctx, "live-snap1", tt.opts))
			require.Equal(t, tt.want, state(t, sb))
			vm, err := env.Hypervisor.Status(ctx, sb.VMID())
			require.NoError(t, err)
			require.Equal(t, powerFor(tt.want), vm.Power, "record matches the VM")
			if tt.want == agentlab.StateRunning {
				require.Equal(t, "ORIGINAL", run(t, sb, "cat state.txt"),
					"guest reachable right after the restore, change undone")
			}
		})
	}
}

func TestSnapshot_NamesAndList(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	sb := create(t, env, agentlab.CreateRequest{})
	for _, bad := range []string{"", "a", "current", "1abc", "has space",
		strings.Repeat("a", 41), "dash/slash"} {
		require.ErrorIs(t, sb.SaveSnapshot(ctx, bad, nil), agentlab.ErrInvalidArgument, bad)
	}
	// Names that would change the API path or query if they reached it.
	for _, bad := range []string{"", "..", "../..", "clean/../..", "x?y=1", "%2e%2e",
		"a#b", "current", strings.Repeat("a", 41)} {
		require.ErrorIs(t, sb.RestoreSnapshot(ctx, bad, nil), agentlab.ErrInvalidArgument, bad)
		require.ErrorIs(t, sb.DeleteSnapshot(ctx, bad), agentlab.ErrInvalidArgument, bad)
	}
	require.Zero(t, env.Hypervisor.Calls(agentlabtest.OpRollback), "no bad name reached it")
	require.Zero(t, env.Hypervisor.Calls(agentlabtest.OpDeleteSnapshot))
	require.NoError(t, sb.SaveSnapshot(ctx, "livecheck1", nil))
	snaps, err := sb.Snapshots(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"clean", "livecheck1"}, names(snaps))
	require.NoError(t, sb.DeleteSnapshot(ctx, "livecheck1"))
	require.ErrorIs(t, sb.DeleteSnapshot(ctx, "livecheck1"), agentlab.ErrNotFound)
	require.ErrorIs(t, sb.RestoreSnapshot(ctx, "nosuch", nil), agentlab.ErrNotFound)
	require.Equal(t, agentlab.StateRunning, state(t, sb), "a failed restore keeps the state")
}

func names(snaps []agentlab.SnapshotInfo) []string {
	var out []string
	for _, s := range snaps {
		out = append(out, s.Name)
	}
	return out
}

func TestSnapshot_Revert(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	sb := create(t, env, agentlab.CreateRequest{})
	run(t, sb, "touch dirty")
	require.NoError(t, sb.Revert(ctx, nil))
	require.Equal(t, "clean", run(t, sb, "test -e dirty && echo dirty || echo clean"))

	off := false
	env2 := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{Profiles: []agentlab.Profile{{
		Name: "noclean", TemplateVMID: 9000,
		Behavior: agentlab.Behavior{CleanSnapshot: &off}}}})
	sb2, err := env2.Manager.Create(ctx, agentlab.CreateRequest{Profile: "noclean"})
	require.NoError(t, err)
	require.ErrorIs(t, sb2.Revert(ctx, nil), agentlab.ErrNotFound)
}

func TestLease_Reaper(t *testing.T) {
	clock := agentlabtest.NewClock(time.Date(2026, 2, 14, 13, 0, 0, 0, time.UTC))
	env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{Clock: clock,
		Profiles: []agentlab.Profile{
			{Name: "test", TemplateVMID: 9000,
				Behavior: agentlab.Behavior{TTLMinutesDefault: 30}},
			{Name: "stopper", TemplateVMID: 9000,
				Behavior: agentlab.Behavior{OnExpiry: "stop"}},
		}})
	ctx := ctxT(t)
	def := create(t, env, agentlab.CreateRequest{})
	require.Equal(t, clock.Now().Add(30*time.Minute), def.Record().LeaseExpires)
	long := create(t, env, agentlab.CreateRequest{TTL: 2 * time.Hour})
	never := create(t, env, agentlab.CreateRequest{TTL: -1})
	require.True(t, never.Record().LeaseExpires.IsZero(), "negative TTL means no expiry")
	stop := create(t, env, agentlab.CreateRequest{Profile: "stopper", TTL: 10 * time.Minute})

	clock.Advance(31 * time.Minute)
	rep, err := env.Manager.Reap(ctx)
	require.NoError(t, err)
	require.Equal(t, []int{def.VMID()}, rep.Destroyed)
	require.Equal(t, []int{stop.VMID()}, rep.Stopped)
	require.Equal(t, agentlab.StateDestroyed, state(t, def))
	require.Equal(t, agentlab.StateStopped, state(t, stop))
	require.Equal(t, agentlab.StateRunning, state(t, long))
	require.Equal(t, agentlab.StateRunning, state(t, never))

	rep, err = env.Manager.Reap(ctx)
	require.NoError(t, err)
	require.Empty(t, rep.Destroyed, "reaping is idempotent")
	require.Empty(t, rep.Stopped)

	evs, err := env.Manager.Events(ctx, agentlab.EventFilter{
		Kinds: []string{agentlab.EventLeaseExpired}})
	require.NoError(t, err)
	require.Len(t, evs, 2)
	require.Equal(t, "destroy", evs[0].Data["action"])
}

func TestLease_IdleStop(t *testing.T) {
	clock := agentlabtest.NewClock(time.Date(2026, 2, 14, 13, 0, 0, 0, time.UTC))
	env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{Clock: clock,
		Profiles: []agentlab.Profile{{Name: "test", TemplateVMID: 9000,
			Behavior: agentlab.Behavior{IdleStopMinutes: 30}}}})
	ctx := ctxT(t)
	idle := create(t, env, agentlab.CreateRequest{})
	busy := create(t, env, agentlab.CreateRequest{})
	clock.Advance(20 * time.Minute)
	run(t, busy, "true") // activity
	clock.Advance(15 * time.Minute)
	stopped, err := env.Manager.StopIdle(ctx)
	require.NoError(t, err)
	require.Equal(t, []int{idle.VMID()}, stopped)
	require.Equal(t, agentlab.StateStopped, state(t, idle))
	require.Equal(t, agentlab.StateRunning, state(t, busy))
}

// TestLease_IdleStopSparesRunningExec: a sandbox whose Exec runs longer
// than its idle timeout is not stopped under it, and the Exec's end counts
// as activity.
func TestLease_IdleStopSparesRunningExec(t *testing.T) {
	clock := agentlabtest.NewClock(time.Date(2026, 2, 14, 13, 0, 0, 0, time.UTC))
	env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{Clock: clock,
		Profiles: []agentlab.Profile{{Name: "test", TemplateVMID: 9000,
			Behavior: agentlab.Behavior{IdleStopMinutes: 30}}}})
	ctx := ctxT(t)
	sb := create(t, env, agentlab.CreateRequest{})
	done := make(chan error, 1)
	go func() {
		_, err := sb.Exec(ctx, agentlab.ExecRequest{
			Shell: "touch started; while [ ! -e go ]; do sleep 0.02; done"})
		done <- err
	}()
	run(t, sb, "while [ ! -e started ]; do sleep 0.02; done")
	clock.Advance(31 * time.Minute)
	stopped, err := env.Manager.StopIdle(ctx)
	require.NoError(t, err)
	require.Empty(t, stopped, "an Exec is running")
	run(t, sb, "touch go")
	require.NoError(t, <-done)
	stopped, err = env.Manager.StopIdle(ctx)
	require.NoError(t, err)
	require.Empty(t, stopped, "the Exec just ended")
	clock.Advance(31 * time.Minute)
	stopped, err = env.Manager.StopIdle(ctx)
	require.NoError(t, err)
	require.Equal(t, []int{sb.VMID()}, stopped)
}
