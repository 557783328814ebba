package agentlab_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/agentlabtest"
)

// recordingGuest wraps a Guest, records Drop calls and can fail WaitReady.
type recordingGuest struct {
	agentlab.Guest
	mu        sync.Mutex
	drops     []int
	readyFail error
}

func (g *recordingGuest) Drop(vmid int) {
	g.mu.Lock()
	g.drops = append(g.drops, vmid)
	g.mu.Unlock()
	g.Guest.Drop(vmid)
}

func (g *recordingGuest) WaitReady(ctx context.Context, ep agentlab.Endpoint) error {
	if g.readyFail != nil {
		return g.readyFail
	}
	return g.Guest.WaitReady(ctx, ep)
}

// takeDrops returns and clears the recorded drops.
func (g *recordingGuest) takeDrops() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := g.drops
	g.drops = nil
	return out
}

// recordingEnv is an Env whose Manager reaches its guests through a
// recordingGuest.
func recordingEnv(t *testing.T) (*agentlabtest.Env, *recordingGuest) {
	t.Helper()
	hv, err := agentlabtest.NewHypervisor(agentlabtest.HypervisorOptions{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = hv.Close() })
	set, err := agentlab.NewProfileSet(agentlab.Profile{Name: "test", TemplateVMID: 9000})
	require.NoError(t, err)
	g := &recordingGuest{Guest: hv.Guest()}
	st := agentlabtest.NewStore()
	m, err := agentlab.New(context.Background(), agentlab.Config{Store: st, Hypervisor: hv,
		Guest: g, Profiles: set, ReapInterval: -1, IdleInterval: -1, ReconcileInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return &agentlabtest.Env{Manager: m, Hypervisor: hv, Guest: hv.Guest(), Store: st}, g
}

// TestGuest_DroppedWhenVMGoesDown checks that the Manager drops the pooled
// guest connection when a sandbox pauses, stops, restarts, is restored or
// destroyed, and keeps it across operations that leave the VM up.
func TestGuest_DroppedWhenVMGoesDown(t *testing.T) {
	env, g := recordingEnv(t)
	ctx := ctxT(t)
	sb := create(t, env, agentlab.CreateRequest{})
	g.takeDrops()
	steps := []struct {
		name string
		do   func(context.Context) error
		drop bool
	}{
		{"exec", func(ctx context.Context) error {
			_, err := sb.Exec(ctx, agentlab.ExecRequest{Shell: "true"})
			return err
		}, false},
		{"renew", func(ctx context.Context) error { return sb.RenewLease(ctx, time.Hour) }, false},
		{"pause", sb.Pause, true},
		{"resume", sb.Resume, false},
		{"stop", sb.Stop, true},
		{"start", sb.Start, true},
		{"restore", func(ctx context.Context) error { return sb.Revert(ctx, nil) }, true},
		{"destroy", sb.Destroy, true},
	}
	for _, st := range steps {
		require.NoError(t, st.do(ctx), st.name)
		drops := g.takeDrops()
		if st.drop {
			require.True(t, slices.Contains(drops, sb.VMID()), "%s drops the connection",
				st.name)
		} else {
			require.Empty(t, drops, "%s keeps the connection", st.name)
		}
	}
}

// TestCreate_SSHFailedEvent: a guest whose SSH never gets ready fails the
// create with a sandbox.slo.ssh_failed event carrying the duration and the
// error, and leaves no VM.
func TestCreate_SSHFailedEvent(t *testing.T) {
	env, g := recordingEnv(t)
	g.readyFail = errors.New("handshake refused")
	_, err := env.Manager.Create(ctxT(t), agentlab.CreateRequest{Profile: "test"})
	require.ErrorContains(t, err, "handshake refused")
	evs, err := env.Manager.Events(ctxT(t), agentlab.EventFilter{
		Kinds: []string{agentlab.EventSandboxSSHFailed}})
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Contains(t, evs[0].Data, "duration_ms")
	require.Equal(t, "handshake refused", evs[0].Data["error"])
	require.Empty(t, env.Hypervisor.VMs())
}
