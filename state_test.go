package agentlab_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/agentlabtest"
)

// powerFor is the VM power state consistent with a sandbox state.
func powerFor(s agentlab.State) agentlab.PowerState {
	switch s {
	case agentlab.StateSuspended:
		return agentlab.PowerPaused
	case agentlab.StateStopped, agentlab.StateRequested, agentlab.StateProvisioning:
		return agentlab.PowerStopped
	}
	return agentlab.PowerRunning
}

type opCase struct {
	op agentlab.Op
	do func(ctx context.Context, sb *agentlab.Sandbox) error
}

var opCases = []opCase{
	{agentlab.OpPause, func(ctx context.Context, sb *agentlab.Sandbox) error {
		return sb.Pause(ctx)
	}},
	{agentlab.OpResume, func(ctx context.Context, sb *agentlab.Sandbox) error {
		return sb.Resume(ctx)
	}},
	{agentlab.OpStop, func(ctx context.Context, sb *agentlab.Sandbox) error {
		return sb.Stop(ctx)
	}},
	{agentlab.OpStart, func(ctx context.Context, sb *agentlab.Sandbox) error {
		return sb.Start(ctx)
	}},
	{agentlab.OpDestroy, func(ctx context.Context, sb *agentlab.Sandbox) error {
		return sb.Destroy(ctx)
	}},
	{agentlab.OpRenewLease, func(ctx context.Context, sb *agentlab.Sandbox) error {
		return sb.RenewLease(ctx, time.Hour)
	}},
	{agentlab.OpSnapshotSave, func(ctx context.Context, sb *agentlab.Sandbox) error {
		return sb.SaveSnapshot(ctx, "s2", nil)
	}},
	{agentlab.OpSnapshotRestore, func(ctx context.Context, sb *agentlab.Sandbox) error {
		return sb.RestoreSnapshot(ctx, "s1", nil)
	}},
	{agentlab.OpSnapshotList, func(ctx context.Context, sb *agentlab.Sandbox) error {
		_, err := sb.Snapshots(ctx)
		return err
	}},
	{agentlab.OpSnapshotDelete, func(ctx context.Context, sb *agentlab.Sandbox) error {
		return sb.DeleteSnapshot(ctx, "s1")
	}},
	{agentlab.OpRevert, func(ctx context.Context, sb *agentlab.Sandbox) error {
		return sb.Revert(ctx, nil)
	}},
	{agentlab.OpExec, func(ctx context.Context, sb *agentlab.Sandbox) error {
		_, err := sb.Exec(ctx, agentlab.ExecRequest{Shell: "true"})
		return err
	}},
}

// TestOperationsInEveryState runs every operation in every state: valid
// ones succeed, the others fail with an InvalidStateError listing exactly
// the valid states.
func TestOperationsInEveryState(t *testing.T) {
	for _, st := range agentlab.AllStates {
		for _, oc := range opCases {
			t.Run(string(st)+"/"+string(oc.op), func(t *testing.T) {
				env := newEnv(t)
				ctx := ctxT(t)
				sb := create(t, env, agentlab.CreateRequest{})
				require.NoError(t, sb.SaveSnapshot(ctx, "s1", nil))
				if st == agentlab.StateDestroyed {
					require.NoError(t, sb.Destroy(ctx))
				} else {
					forceState(t, env.Store, sb.VMID(), st)
					env.Hypervisor.SetPower(sb.VMID(), powerFor(st))
				}
				err := oc.do(ctx, sb)
				valid := slices.Contains(agentlab.ValidStates[oc.op], st)
				if valid {
					require.NoError(t, err)
					checkAfter(t, env, sb, oc.op, st)
					return
				}
				var ise *agentlab.InvalidStateError
				require.True(t, errors.As(err, &ise), "want InvalidStateError, got %v", err)
				require.Equal(t, oc.op, ise.Op)
				require.Equal(t, st, ise.State)
				require.Equal(t, agentlab.ValidStates[oc.op], ise.Valid)
				require.Contains(t, err.Error(), string(st))
			})
		}
	}
}

// wantAfter is the state a valid operation leaves a sandbox in when it
// started in "from" (no job is bound, and the snapshots were taken while
// RUNNING).
func wantAfter(op agentlab.Op, from agentlab.State) agentlab.State {
	switch op {
	case agentlab.OpPause:
		return agentlab.StateSuspended
	case agentlab.OpStop:
		return agentlab.StateStopped
	case agentlab.OpDestroy:
		return agentlab.StateDestroyed
	case agentlab.OpResume:
		if from == agentlab.StateSuspended {
			return agentlab.StateReady
		}
	case agentlab.OpStart:
		if from != agentlab.StateReady && from != agentlab.StateRunning {
			return agentlab.StateRunning
		}
	}
	return from
}

// checkAfter checks the state a valid operation left, that the move is in
// the transition table, that no operation is left in flight, and that the
// VM's power matches the record.
func checkAfter(t *testing.T, env *agentlabtest.Env, sb *agentlab.Sandbox,
	op agentlab.Op, from agentlab.State) {
	t.Helper()
	rec, err := sb.Refresh(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, wantAfter(op, from), rec.State, "%s from %s", op, from)
	require.True(t, agentlab.CanTransition(from, rec.State), "%s -> %s", from, rec.State)
	require.Empty(t, rec.Op, "no operation left in flight")
	vm, err := env.Hypervisor.Status(ctxT(t), sb.VMID())
	if rec.State == agentlab.StateDestroyed {
		require.ErrorIs(t, err, agentlab.ErrNotFound, "a destroyed sandbox has no VM")
		return
	}
	require.NoError(t, err)
	require.Equal(t, powerFor(rec.State), vm.Power, "record matches the VM")
}

func forceState(t *testing.T, st agentlab.Store, vmid int, s agentlab.State) {
	t.Helper()
	_, err := st.UpdateSandbox(context.Background(), vmid, func(r *agentlab.SandboxRecord) error {
		r.State = s
		return nil
	})
	require.NoError(t, err)
}

// TestEveryTransition tries every (from, to) pair through the Manager's
// transition path: a move in the table succeeds and is recorded with a
// sandbox.state event, any other is refused with ErrInvalidState and leaves
// the record as it was.
func TestEveryTransition(t *testing.T) {
	for _, from := range agentlab.AllStates {
		for _, to := range agentlab.AllStates {
			t.Run(string(from)+"->"+string(to), func(t *testing.T) {
				env := newEnv(t)
				ctx := ctxT(t)
				sb := create(t, env, agentlab.CreateRequest{})
				forceState(t, env.Store, sb.VMID(), from)
				before, err := env.Manager.Events(ctx, agentlab.EventFilter{
					VMID: sb.VMID(), Kinds: []string{agentlab.EventSandboxState}})
				require.NoError(t, err)
				err = sb.TransitionForTest(ctx, to)
				after, evErr := env.Manager.Events(ctx, agentlab.EventFilter{
					VMID: sb.VMID(), Kinds: []string{agentlab.EventSandboxState}})
				require.NoError(t, evErr)
				if !agentlab.CanTransition(from, to) {
					require.ErrorIs(t, err, agentlab.ErrInvalidState)
					require.Equal(t, from, state(t, sb), "a refused move changes nothing")
					require.Len(t, after, len(before), "a refused move records no event")
					return
				}
				require.NoError(t, err)
				require.Equal(t, to, state(t, sb))
				if from == to {
					require.Len(t, after, len(before), "staying put records no event")
					return
				}
				require.Len(t, after, len(before)+1)
				last := after[len(after)-1]
				require.Equal(t, string(from), last.Data["from_state"])
				require.Equal(t, string(to), last.Data["to_state"])
			})
		}
	}
}

func TestTransitionsTable(t *testing.T) {
	for _, from := range agentlab.AllStates {
		require.True(t, agentlab.CanTransition(from, from), "%s to itself", from)
		for _, to := range agentlab.Transitions[from] {
			require.True(t, to.Valid(), "%s -> %s", from, to)
			require.NotEqual(t, from, to)
		}
	}
	require.Empty(t, agentlab.Transitions[agentlab.StateDestroyed])
	for _, s := range agentlab.AllStates {
		if s != agentlab.StateDestroyed {
			require.True(t, agentlab.CanTransition(s, agentlab.StateDestroyed),
				"every state can be destroyed: %s", s)
		}
	}
	for op, states := range agentlab.ValidStates {
		require.NotEmpty(t, states, "op %s", op)
	}
}
