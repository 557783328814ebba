package agentlab_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
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
					return
				}
				var ise *agentlab.InvalidStateError
				require.True(t, errors.As(err, &ise), "want InvalidStateError, got %v", err)
				require.Equal(t, st, ise.State)
				require.Equal(t, agentlab.ValidStates[oc.op], ise.Valid)
			})
		}
	}
}

func forceState(t *testing.T, st agentlab.Store, vmid int, s agentlab.State) {
	t.Helper()
	_, err := st.UpdateSandbox(context.Background(), vmid, func(r *agentlab.SandboxRecord) error {
		r.State = s
		return nil
	})
	require.NoError(t, err)
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
