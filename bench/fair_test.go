package bench

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
)

// TestBareMatchesSDK checks that the baseline does the same work as the
// SDK: after create, the VM the bare client made has the same power state,
// tags, cloud-init user and keys, NIC firewall flag, firewall options and
// rules as the sandbox's; and both lifecycles run to the end.
func TestBareMatchesSDK(t *testing.T) {
	w := newWorld(t, worldOptions{})
	bare := newBareClient(t, w)
	ctx := context.Background()

	sb, err := w.m.Create(ctx, agentlab.CreateRequest{Profile: "bench"})
	require.NoError(t, err)
	v, err := bare.create(ctx, 20000)
	require.NoError(t, err)
	sdkState, ok := stateOf(w.sim, sb.VMID())
	require.True(t, ok)
	bareState, ok := stateOf(w.sim, 20000)
	require.True(t, ok)
	require.Equal(t, sdkState, bareState)
	require.Equal(t, "running", bareState.Status)
	require.Len(t, bareState.Rules, len(natRules))
	require.NoError(t, sb.Destroy(ctx))
	require.NoError(t, bare.destroy(ctx, v))

	for name, next := range map[string]lifecycleFunc{
		"sdk": sdkLifecycle(w.m), "bare": bareLifecycle(bare),
	} {
		_, err := runSteps(ctx, next())
		require.NoError(t, err, name)
	}
	require.Len(t, w.sim.VMs(), 1, "only the template is left")
}
