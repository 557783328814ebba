package agentlab_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/agentlabtest"
)

func findingKinds(rep agentlab.ReconcileReport) []string {
	var out []string
	for _, f := range rep.Findings {
		out = append(out, f.Kind)
	}
	return out
}

func TestReconcile_Drift(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	gone := create(t, env, agentlab.CreateRequest{})
	stopped := create(t, env, agentlab.CreateRequest{})
	paused := create(t, env, agentlab.CreateRequest{})
	fine := create(t, env, agentlab.CreateRequest{})

	// Drift behind the SDK's back: a VM deleted, one stopped, one paused,
	// and an orphan VM with our marker but no record.
	require.NoError(t, env.Hypervisor.Destroy(ctx, gone.VMID()))
	env.Hypervisor.SetPower(stopped.VMID(), agentlab.PowerStopped)
	env.Hypervisor.SetPower(paused.VMID(), agentlab.PowerPaused)
	_, err := env.Hypervisor.Provision(ctx, agentlab.ProvisionSpec{VMID: 4000,
		Template: 9000, Owner: "agentlab", Network: agentlab.NetworkPolicy{Mode: "nat"}})
	require.NoError(t, err)

	rep, err := env.Manager.Reconcile(ctx, agentlab.ReconcileOptions{})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{agentlab.FindingMissingVM,
		agentlab.FindingPowerMismatch, agentlab.FindingPowerMismatch,
		agentlab.FindingUnmanagedVM}, findingKinds(rep))
	require.Equal(t, agentlab.StateRunning, state(t, gone), "report only changes nothing")

	_, err = env.Manager.Reconcile(ctx, agentlab.ReconcileOptions{Apply: true})
	require.NoError(t, err)
	require.Equal(t, agentlab.StateDestroyed, state(t, gone))
	require.Equal(t, agentlab.StateStopped, state(t, stopped))
	require.Equal(t, agentlab.StateSuspended, state(t, paused))
	require.Equal(t, agentlab.StateRunning, state(t, fine))
	_, err = env.Hypervisor.Status(ctx, 4000)
	require.ErrorIs(t, err, agentlab.ErrNotFound, "orphan destroyed")

	rep, err = env.Manager.Reconcile(ctx, agentlab.ReconcileOptions{Apply: true})
	require.NoError(t, err)
	require.Empty(t, rep.Findings, "a second pass finds nothing")
}

// TestReconcile_HostileAddressRefresh: reconcile refreshes a running
// sandbox's missing address from the guest agent, but never to an address
// another live sandbox holds or one that is not a unicast address.
func TestReconcile_HostileAddressRefresh(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	victim := create(t, env, agentlab.CreateRequest{})
	liar := create(t, env, agentlab.CreateRequest{})
	for _, ip := range []string{victim.Record().IP, "0.0.0.0", "127.0.0.1", "not-an-ip"} {
		_, err := env.Store.UpdateSandbox(ctx, liar.VMID(), func(r *agentlab.SandboxRecord) error {
			r.IP = ""
			return nil
		})
		require.NoError(t, err)
		env.Hypervisor.SetGuestIP(liar.VMID(), ip)
		rep, err := env.Manager.Reconcile(ctx, agentlab.ReconcileOptions{Apply: true})
		require.NoError(t, err)
		require.Equal(t, []string{agentlab.FindingMissingIP}, findingKinds(rep), ip)
		rec, err := liar.Refresh(ctx)
		require.NoError(t, err)
		require.Empty(t, rec.IP, "%q was not taken", ip)
	}
	env.Hypervisor.SetGuestIP(liar.VMID(), "10.99.0.7")
	_, err := env.Manager.Reconcile(ctx, agentlab.ReconcileOptions{Apply: true})
	require.NoError(t, err)
	rec, err := liar.Refresh(ctx)
	require.NoError(t, err)
	require.Equal(t, "10.99.0.7", rec.IP, "a usable address is refreshed")
	vrec, err := victim.Refresh(ctx)
	require.NoError(t, err)
	require.Equal(t, victim.Record().IP, vrec.IP, "the victim keeps its own")
	require.NotEmpty(t, vrec.IP)
}

func TestReconcile_InterruptedProvisioning(t *testing.T) {
	clock := agentlabtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{Clock: clock})
	ctx := ctxT(t)
	// Simulate a crash right after the clone: record PROVISIONING with the
	// provision op, VM exists.
	rec := agentlab.SandboxRecord{VMID: 1200, Name: "crashed", Profile: "test",
		State: agentlab.StateProvisioning, Op: "provision", OpStarted: clock.Now(),
		Owner: "agentlab"}
	require.NoError(t, env.Store.CreateSandbox(ctx, &rec))
	_, err := env.Hypervisor.Provision(ctx, agentlab.ProvisionSpec{VMID: 1200,
		Template: 9000, Owner: "agentlab", Network: agentlab.NetworkPolicy{Mode: "nat"}})
	require.NoError(t, err)

	rep, err := env.Manager.Reconcile(ctx, agentlab.ReconcileOptions{Apply: true})
	require.NoError(t, err)
	require.Empty(t, rep.Findings, "a fresh operation may still be running elsewhere")

	clock.Advance(11 * time.Minute)
	rep, err = env.Manager.Reconcile(ctx, agentlab.ReconcileOptions{Apply: true})
	require.NoError(t, err)
	require.Equal(t, []string{agentlab.FindingInterrupted}, findingKinds(rep))
	got, err := env.Store.GetSandbox(ctx, 1200)
	require.NoError(t, err)
	require.Equal(t, agentlab.StateDestroyed, got.State)
	require.Empty(t, env.Hypervisor.VMs())
}

// TestReconcile_InterruptedStartKeepsSandbox: a crash in the middle of a
// start leaves BOOTING with the start op; reconcile makes the state follow
// the VM instead of destroying a sandbox that was ready before.
func TestReconcile_InterruptedStartKeepsSandbox(t *testing.T) {
	clock := agentlabtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{Clock: clock})
	ctx := ctxT(t)
	sb := create(t, env, agentlab.CreateRequest{})
	// A crash mid-start keeps the start op; a failed start (before this
	// was settled) left no op.
	for _, c := range []struct {
		power agentlab.PowerState
		op    string
		kind  string
	}{
		{agentlab.PowerRunning, "start", agentlab.FindingInterrupted},
		{agentlab.PowerStopped, "start", agentlab.FindingInterrupted},
		{agentlab.PowerRunning, "", agentlab.FindingStuck},
		{agentlab.PowerStopped, "", agentlab.FindingStuck},
	} {
		power := c.power
		env.Hypervisor.SetPower(sb.VMID(), power)
		_, err := env.Store.UpdateSandbox(ctx, sb.VMID(), func(r *agentlab.SandboxRecord) error {
			r.State, r.Op, r.OpStarted = agentlab.StateBooting, c.op, clock.Now()
			return nil
		})
		require.NoError(t, err)
		clock.Advance(11 * time.Minute)
		rep, err := env.Manager.Reconcile(ctx, agentlab.ReconcileOptions{Apply: true})
		require.NoError(t, err)
		require.Equal(t, []string{c.kind}, findingKinds(rep))
		require.Len(t, env.Hypervisor.VMs(), 1, "the VM is kept")
		rec, err := sb.Refresh(ctx)
		require.NoError(t, err)
		require.Equal(t, map[agentlab.PowerState]agentlab.State{
			agentlab.PowerRunning: agentlab.StateReady,
			agentlab.PowerStopped: agentlab.StateStopped}[power], rec.State)
		require.Empty(t, rec.Op)
	}
}

func TestEvents_SlowSubscriberNeverBlocks(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	slow, err := env.Manager.Subscribe(agentlab.SubscribeOptions{Buffer: 1})
	require.NoError(t, err)
	defer slow.Close()
	filtered, err := env.Manager.Subscribe(agentlab.SubscribeOptions{
		EventFilter: agentlab.EventFilter{Kinds: []string{agentlab.EventSandboxPauseDone}}})
	require.NoError(t, err)
	defer filtered.Close()

	sb := create(t, env, agentlab.CreateRequest{})
	for range 5 {
		require.NoError(t, sb.Pause(ctx))
		require.NoError(t, sb.Resume(ctx))
	}
	require.Positive(t, slow.Dropped(), "the full buffer dropped events")
	first := <-slow.C()

	// Catch up from the durable log.
	rest, err := env.Manager.Events(ctx, agentlab.EventFilter{AfterID: first.ID})
	require.NoError(t, err)
	all, err := env.Manager.Events(ctx, agentlab.EventFilter{})
	require.NoError(t, err)
	require.Len(t, rest, len(all)-1)
	for i := 1; i < len(all); i++ {
		require.Greater(t, all[i].ID, all[i-1].ID, "IDs increase")
	}
	require.Len(t, drain(filtered), 5, "the filtered subscriber saw only its kind")
	require.Zero(t, filtered.Dropped())

	slow.Close()
	slow.Close() // idempotent
	_, open := <-slow.C()
	require.False(t, open)
}

func TestEvents_LastAndFilters(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	a := create(t, env, agentlab.CreateRequest{})
	create(t, env, agentlab.CreateRequest{})
	evs, err := env.Manager.Events(ctx, agentlab.EventFilter{VMID: a.VMID()})
	require.NoError(t, err)
	require.NotEmpty(t, evs)
	for _, ev := range evs {
		require.Equal(t, a.VMID(), ev.VMID)
		require.Equal(t, agentlab.EventSchemaVersion, ev.SchemaVersion)
	}
	last, err := env.Manager.Events(ctx, agentlab.EventFilter{Limit: 2, Last: true})
	require.NoError(t, err)
	all, err := env.Manager.Events(ctx, agentlab.EventFilter{})
	require.NoError(t, err)
	require.Equal(t, all[len(all)-2:], last)
}

func TestStatus(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	create(t, env, agentlab.CreateRequest{})
	sb := create(t, env, agentlab.CreateRequest{})
	require.NoError(t, sb.Stop(ctx))
	env.Hypervisor.FailNext(agentlabtest.OpStart, 0, 1, context.DeadlineExceeded)
	_, err := env.Manager.Create(ctx, agentlab.CreateRequest{Profile: "test"})
	require.Error(t, err)
	st, err := env.Manager.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, st.SandboxesByState[agentlab.StateRunning])
	require.Equal(t, 1, st.SandboxesByState[agentlab.StateStopped])
	require.Equal(t, 1, st.SandboxesByState[agentlab.StateDestroyed])
	require.Equal(t, 2, st.SandboxesByMode["nat"])
	require.Len(t, st.RecentFailures, 1)
	require.Equal(t, agentlab.EventSandboxProvisionFail, st.RecentFailures[0].Kind)
}

func TestManager_CloseJoinsLoops(t *testing.T) {
	before := goleak.IgnoreCurrent()
	hv, err := agentlabtest.NewHypervisor(agentlabtest.HypervisorOptions{Dir: t.TempDir()})
	require.NoError(t, err)
	m, err := agentlab.New(context.Background(), agentlab.Config{
		Store: agentlabtest.NewStore(), Hypervisor: hv,
		ReapInterval: time.Millisecond, IdleInterval: time.Millisecond,
		ReconcileInterval: time.Millisecond})
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, m.Close(context.Background()))
	goleak.VerifyNone(t, before) // the loops are gone once Close returns
	require.ErrorIs(t, m.Close(context.Background()), agentlab.ErrClosed)
	_, err = m.Create(context.Background(), agentlab.CreateRequest{Profile: "x"})
	require.ErrorIs(t, err, agentlab.ErrClosed)
	_, err = agentlab.New(context.Background(), agentlab.Config{})
	require.ErrorIs(t, err, agentlab.ErrInvalidArgument)
}

// TestManager_CloseWaitsForPassInFlight holds a reconcile pass inside the
// hypervisor when Close is called: Close returns only after the pass ended.
func TestManager_CloseWaitsForPassInFlight(t *testing.T) {
	hv, err := agentlabtest.NewHypervisor(agentlabtest.HypervisorOptions{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = hv.Close() })
	entered := make(chan struct{})
	var once sync.Once
	var finished atomic.Bool
	hv.AddHook(func(_ context.Context, op agentlabtest.Op, _ int) (error, bool) {
		if op == agentlabtest.OpList {
			once.Do(func() {
				close(entered)
				time.Sleep(200 * time.Millisecond) // ignores the context on purpose
				finished.Store(true)
			})
		}
		return nil, false
	})
	m, err := agentlab.New(context.Background(), agentlab.Config{
		Store: agentlabtest.NewStore(), Hypervisor: hv, SkipInitialReconcile: true,
		ReapInterval: -1, IdleInterval: -1, ReconcileInterval: time.Millisecond})
	require.NoError(t, err)
	<-entered
	require.NoError(t, m.Close(context.Background()))
	require.True(t, finished.Load(), "Close returned while a pass was still running")
}
