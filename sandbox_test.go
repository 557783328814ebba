package agentlab_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/agentlabtest"
)

func newEnv(t *testing.T) *agentlabtest.Env {
	t.Helper()
	return agentlabtest.NewEnv(t, agentlabtest.EnvOptions{})
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func create(t *testing.T, env *agentlabtest.Env, req agentlab.CreateRequest) *agentlab.Sandbox {
	t.Helper()
	if req.Profile == "" {
		req.Profile = "test"
	}
	sb, err := env.Manager.Create(ctxT(t), req)
	require.NoError(t, err)
	return sb
}

func state(t *testing.T, sb *agentlab.Sandbox) agentlab.State {
	t.Helper()
	rec, err := sb.Refresh(ctxT(t))
	require.NoError(t, err)
	return rec.State
}

func TestSandbox_Lifecycle(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	sub, err := env.Manager.Subscribe(agentlab.SubscribeOptions{})
	require.NoError(t, err)
	defer sub.Close()

	sb := create(t, env, agentlab.CreateRequest{Name: "life", TTL: 45 * time.Minute})
	rec := sb.Record()
	require.Equal(t, agentlab.StateRunning, rec.State)
	require.NotEmpty(t, rec.IP)
	require.NotEmpty(t, rec.HostKey, "host key pinned from the hypervisor")
	require.True(t, rec.CleanSnapshot)
	require.Equal(t, "nat", rec.NetworkMode)
	require.Empty(t, rec.Op)

	steps := []struct {
		do   func(context.Context) error
		want agentlab.State
	}{
		{sb.Pause, agentlab.StateSuspended},
		{sb.Pause, agentlab.StateSuspended}, // no-op
		{sb.Resume, agentlab.StateReady},
		{sb.Stop, agentlab.StateStopped},
		{sb.Stop, agentlab.StateStopped}, // no-op
		{sb.Start, agentlab.StateRunning},
		{sb.Start, agentlab.StateRunning}, // no-op
	}
	for i, st := range steps {
		require.NoError(t, st.do(ctx), "step %d", i)
		require.Equal(t, st.want, state(t, sb), "step %d", i)
	}
	require.NoError(t, sb.RenewLease(ctx, 90*time.Minute))
	require.NoError(t, sb.Destroy(ctx))
	require.NoError(t, sb.Destroy(ctx), "destroy is idempotent")
	require.Equal(t, agentlab.StateDestroyed, state(t, sb))
	require.Empty(t, env.Hypervisor.VMs())

	kinds := drain(sub)
	for _, k := range []string{agentlab.EventSandboxState, agentlab.EventSandboxReady,
		agentlab.EventSandboxSSHReady, agentlab.EventSandboxPauseDone,
		agentlab.EventSandboxResumeDone, agentlab.EventSandboxStopDone,
		agentlab.EventSandboxStartDone, agentlab.EventLeaseRenewed,
		agentlab.EventSandboxDestroyDone, agentlab.EventSnapshotCreated} {
		require.Contains(t, kinds, k)
	}
}

func drain(sub *agentlab.Subscription) []string {
	var kinds []string
	for {
		select {
		case ev := <-sub.C():
			kinds = append(kinds, ev.Kind)
		default:
			return kinds
		}
	}
}

func TestSandbox_RenewLeaseStates(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	sb := create(t, env, agentlab.CreateRequest{})
	require.NoError(t, sb.RenewLease(ctx, time.Hour), "RUNNING renews")
	require.NoError(t, sb.Stop(ctx))
	err := sb.RenewLease(ctx, time.Hour)
	var ise *agentlab.InvalidStateError
	require.ErrorAs(t, err, &ise)
	require.ErrorIs(t, err, agentlab.ErrInvalidState)
	require.Equal(t, agentlab.StateStopped, ise.State)
	require.Contains(t, err.Error(),
		"cannot renew lease in STOPPED state; valid states: READY, RUNNING")
	require.ErrorIs(t, sb.RenewLease(ctx, time.Second), agentlab.ErrInvalidArgument)
}

func TestCreate_ExplicitVMID(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	env.Hypervisor.AddForeignVM(1500, "someone-elses")
	_, err := env.Manager.Create(ctx, agentlab.CreateRequest{Profile: "test", VMID: 1500})
	require.ErrorIs(t, err, agentlab.ErrVMIDConflict)
	require.Contains(t, err.Error(), "1500")
	recs, err := env.Manager.List(ctx, agentlab.SandboxFilter{})
	require.NoError(t, err)
	require.Empty(t, recs, "nothing was reserved")

	sb := create(t, env, agentlab.CreateRequest{VMID: 1501})
	require.Equal(t, 1501, sb.VMID())
	_, err = env.Manager.Create(ctx, agentlab.CreateRequest{Profile: "test", VMID: 1501})
	require.ErrorIs(t, err, agentlab.ErrVMIDConflict, "a live sandbox's VMID is taken")
	require.Len(t, env.Hypervisor.VMs(), 2, "the foreign VM and ours, nothing else")
}

func TestCreate_AutoVMIDSkipsHypervisorConflict(t *testing.T) {
	env := newEnv(t)
	env.Hypervisor.AddForeignVM(1000, "foreign")
	sb := create(t, env, agentlab.CreateRequest{})
	require.Equal(t, 1001, sb.VMID())
	old, err := env.Manager.Get(ctxT(t), 1000)
	require.NoError(t, err)
	require.Equal(t, agentlab.StateDestroyed, old.State(),
		"the lost reservation is recorded, not left live")
}

func TestCreate_InvalidRequests(t *testing.T) {
	env := newEnv(t)
	tests := []struct {
		name string
		req  agentlab.CreateRequest
		want error
	}{
		{"unknown profile", agentlab.CreateRequest{Profile: "nope"}, agentlab.ErrNotFound},
		{"bad name", agentlab.CreateRequest{Profile: "test", Name: "-x"},
			agentlab.ErrInvalidArgument},
		{"name too long", agentlab.CreateRequest{Profile: "test",
			Name: strings.Repeat("a", 64)}, agentlab.ErrInvalidArgument},
		{"vmid too low", agentlab.CreateRequest{Profile: "test", VMID: 5},
			agentlab.ErrInvalidArgument},
		{"ttl too short", agentlab.CreateRequest{Profile: "test", TTL: time.Second},
			agentlab.ErrInvalidArgument},
		{"bad label", agentlab.CreateRequest{Profile: "test",
			Labels: map[string]string{"a b": "x"}}, agentlab.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := env.Manager.Create(ctxT(t), tt.req)
			require.ErrorIs(t, err, tt.want)
		})
	}
	require.Empty(t, env.Hypervisor.VMs())
	require.Contains(t, mustErr(env.Manager.Create(ctxT(t),
		agentlab.CreateRequest{Profile: "nope"})).Error(), "available: test")
}

func mustErr(_ any, err error) error { return err }

func TestCreate_ProvisionFailureLeavesNoVM(t *testing.T) {
	for _, op := range []agentlabtest.Op{agentlabtest.OpProvision, agentlabtest.OpStart,
		agentlabtest.OpGuestInfo} {
		t.Run(string(op), func(t *testing.T) {
			env := newEnv(t)
			env.Hypervisor.FailNext(op, 0, 1, errors.New("injected"))
			sb, err := env.Manager.Create(ctxT(t), agentlab.CreateRequest{Profile: "test"})
			require.ErrorContains(t, err, "injected")
			require.Empty(t, env.Hypervisor.VMs(), "no VM left behind")
			rec, err := sb.Refresh(ctxT(t))
			require.NoError(t, err)
			require.Equal(t, agentlab.StateDestroyed, rec.State)
			require.Contains(t, rec.LastError, "injected")
			evs, err := env.Manager.Events(ctxT(t), agentlab.EventFilter{
				Kinds: []string{agentlab.EventSandboxProvisionFail}})
			require.NoError(t, err)
			require.Len(t, evs, 1)
		})
	}
}

// TestCreate_FailedCleanupOnlyDestroyable: provisioning fails after the
// clone (configure or firewall refused) and the cleanup destroy fails too.
// The half-built VM (keys or network policy never applied) must not be
// started, paused or snapshotted; reconcile destroys it at once.
func TestCreate_FailedCleanupOnlyDestroyable(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	env.Hypervisor.AddHook(func(_ context.Context, op agentlabtest.Op, _ int) (error, bool) {
		if op == agentlabtest.OpProvision {
			return errors.New("injected firewall failure"), true
		}
		return nil, false
	})
	env.Hypervisor.FailNext(agentlabtest.OpDestroy, 0, 2, errors.New("injected destroy"))
	sb, err := env.Manager.Create(ctx, agentlab.CreateRequest{Profile: "test"})
	require.ErrorContains(t, err, "injected firewall failure")
	rec, err := sb.Refresh(ctx)
	require.NoError(t, err)
	require.Equal(t, agentlab.StateFailed, rec.State)
	require.Contains(t, rec.LastError, "injected destroy")
	require.Len(t, env.Hypervisor.VMs(), 1, "the VM the cleanup could not destroy")

	for name, op := range map[string]func(context.Context) error{
		"start": sb.Start, "stop": sb.Stop, "pause": sb.Pause,
		"snapshot": func(ctx context.Context) error { return sb.SaveSnapshot(ctx, "s1", nil) },
	} {
		require.ErrorIs(t, op(ctx), agentlab.ErrInvalidState, name)
	}
	require.ErrorContains(t, sb.Destroy(ctx), "injected destroy")
	require.ErrorIs(t, sb.Start(ctx), agentlab.ErrInvalidState, "a failed destroy keeps the mark")
	require.Equal(t, 0, env.Hypervisor.Calls(agentlabtest.OpStart), "never booted")

	rep, err := env.Manager.Reconcile(ctx, agentlab.ReconcileOptions{Apply: true})
	require.NoError(t, err)
	require.Equal(t, []string{agentlab.FindingInterrupted}, findingKinds(rep))
	require.Empty(t, env.Hypervisor.VMs(), "reconcile finished the cleanup")
	rec, err = sb.Refresh(ctx)
	require.NoError(t, err)
	require.Equal(t, agentlab.StateDestroyed, rec.State)
	require.Empty(t, rec.Op)
}

func TestCreate_NoWait(t *testing.T) {
	env := newEnv(t)
	sb := create(t, env, agentlab.CreateRequest{NoWait: true})
	rec, err := sb.Wait(ctxT(t), agentlab.StateRunning)
	require.NoError(t, err)
	require.NotEmpty(t, rec.IP)
}

func TestSandbox_StartAfterFailure(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	sb := create(t, env, agentlab.CreateRequest{})
	// A crash: the VM stops and reconcile marks the sandbox; then a FAILED
	// sandbox whose VM exists can be started again.
	_, err := env.Store.UpdateSandbox(ctx, sb.VMID(), func(r *agentlab.SandboxRecord) error {
		r.State = agentlab.StateFailed
		return nil
	})
	require.NoError(t, err)
	env.Hypervisor.SetPower(sb.VMID(), agentlab.PowerStopped)
	require.NoError(t, sb.Start(ctx))
	require.Equal(t, agentlab.StateRunning, state(t, sb))
	require.NoError(t, sb.Stop(ctx))
}

// TestSandbox_FailedStartKeepsSandbox: a start whose guest never becomes
// usable leaves the sandbox FAILED (not BOOTING, which reconcile would take
// for an interrupted provisioning and destroy, disk and all); it can be
// started again once the guest answers.
func TestSandbox_FailedStartKeepsSandbox(t *testing.T) {
	env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{
		Config: agentlab.Config{ReadyTimeout: 200 * time.Millisecond}})
	ctx := ctxT(t)
	sb := create(t, env, agentlab.CreateRequest{})
	require.NoError(t, sb.Stop(ctx))
	env.Hypervisor.FailNext(agentlabtest.OpGuestInfo, 0, 1<<30, agentlab.ErrNotReady)
	require.ErrorIs(t, sb.Start(ctx), agentlab.ErrTimeout)
	require.Equal(t, agentlab.StateFailed, state(t, sb))

	env.Hypervisor.FailNext(agentlabtest.OpStart, 0, 1, errors.New("injected"))
	require.NoError(t, sb.Stop(ctx))
	require.ErrorContains(t, sb.Start(ctx), "injected")
	require.Equal(t, agentlab.StateStopped, state(t, sb), "the VM did not start")

	_, err := env.Manager.Reconcile(ctx, agentlab.ReconcileOptions{Apply: true})
	require.NoError(t, err)
	require.Len(t, env.Hypervisor.VMs(), 1, "reconcile keeps the sandbox")
	require.Equal(t, agentlab.StateStopped, state(t, sb))
}

// TestSandbox_StaleHandleAfterVMIDReuse: a handle on a destroyed sandbox
// whose VMID a new sandbox took acts on nothing: a repeated Destroy stays
// the no-op it is documented to be, other operations see a DESTROYED
// sandbox, and the new sandbox is untouched.
func TestSandbox_StaleHandleAfterVMIDReuse(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	old := create(t, env, agentlab.CreateRequest{})
	require.NoError(t, old.Destroy(ctx))
	fresh := create(t, env, agentlab.CreateRequest{})
	require.Equal(t, old.VMID(), fresh.VMID(), "the freed VMID is reused")
	before, err := fresh.Refresh(ctx)
	require.NoError(t, err)

	require.NoError(t, old.Destroy(ctx), "destroying a destroyed sandbox succeeds")
	for name, op := range map[string]func(context.Context) error{
		"pause": old.Pause, "stop": old.Stop, "start": old.Start, "resume": old.Resume,
		"renew": func(ctx context.Context) error { return old.RenewLease(ctx, time.Hour) },
		"snapshot": func(ctx context.Context) error {
			return old.SaveSnapshot(ctx, "s1", nil)
		},
		"exec": func(ctx context.Context) error {
			_, err := old.Exec(ctx, agentlab.ExecRequest{Shell: "true"})
			return err
		},
		"touch": old.Touch,
	} {
		require.ErrorIs(t, op(ctx), agentlab.ErrInvalidState, name)
	}
	rec, err := old.Refresh(ctx)
	require.NoError(t, err)
	require.Equal(t, agentlab.StateDestroyed, rec.State, "the old handle sees its sandbox gone")

	after, err := fresh.Refresh(ctx)
	require.NoError(t, err)
	require.Equal(t, before.Version, after.Version, "the new sandbox's record is untouched")
	require.Equal(t, agentlab.StateRunning, after.State)
	require.Len(t, env.Hypervisor.VMs(), 1)
	require.Zero(t, env.Hypervisor.Calls(agentlabtest.OpSuspend))
}

func TestSandbox_StopFromJobStates(t *testing.T) {
	for _, st := range []agentlab.State{agentlab.StateCompleted, agentlab.StateFailed,
		agentlab.StateTimeout} {
		t.Run(string(st), func(t *testing.T) {
			env := newEnv(t)
			sb := create(t, env, agentlab.CreateRequest{})
			_, err := env.Store.UpdateSandbox(ctxT(t), sb.VMID(),
				func(r *agentlab.SandboxRecord) error { r.State = st; return nil })
			require.NoError(t, err)
			require.NoError(t, sb.Stop(ctxT(t)))
			require.Equal(t, agentlab.StateStopped, state(t, sb))
		})
	}
}

func TestSandbox_Busy(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	sb := create(t, env, agentlab.CreateRequest{})
	_, err := env.Store.UpdateSandbox(ctx, sb.VMID(), func(r *agentlab.SandboxRecord) error {
		r.Op, r.OpStarted = "stop", time.Now()
		return nil
	})
	require.NoError(t, err)
	require.ErrorIs(t, sb.Pause(ctx), agentlab.ErrBusy)
	require.True(t, agentlab.IsRetryable(sb.Pause(ctx)))
	require.NoError(t, sb.Destroy(ctx), "destroy takes over")
}

func TestSandbox_ExecAndFiles(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	sb := create(t, env, agentlab.CreateRequest{})
	res, err := sb.Exec(ctx, agentlab.ExecRequest{Shell: "echo hi; echo err >&2; exit 3"})
	require.NoError(t, err)
	require.Equal(t, 3, res.ExitCode)
	require.Equal(t, "hi\n", string(res.Stdout))
	require.Equal(t, "err\n", string(res.Stderr))

	res, err = sb.Exec(ctx, agentlab.ExecRequest{Argv: []string{"printf", "%s", "a b'c"}})
	require.NoError(t, err)
	require.Equal(t, "a b'c", string(res.Stdout))

	require.NoError(t, sb.Pause(ctx))
	_, err = sb.Exec(ctx, agentlab.ExecRequest{Shell: "true"})
	require.ErrorIs(t, err, agentlab.ErrInvalidState)
}

func TestSandbox_GetByNameAndList(t *testing.T) {
	env := newEnv(t)
	ctx := ctxT(t)
	a := create(t, env, agentlab.CreateRequest{Name: "alpha",
		Labels: map[string]string{"team": "x"}})
	create(t, env, agentlab.CreateRequest{Name: "beta"})
	got, err := env.Manager.GetByName(ctx, "alpha")
	require.NoError(t, err)
	require.Equal(t, a.VMID(), got.VMID())
	recs, err := env.Manager.List(ctx, agentlab.SandboxFilter{
		Labels: map[string]string{"team": "x"}})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	_, err = env.Manager.Create(ctx, agentlab.CreateRequest{Profile: "test", Name: "alpha"})
	require.ErrorIs(t, err, agentlab.ErrAlreadyExists)
	_, err = env.Manager.Get(ctx, 4242)
	require.ErrorIs(t, err, agentlab.ErrNotFound)
}

func TestCreate_HostileOrSilentGuest(t *testing.T) {
	t.Run("never answers", func(t *testing.T) {
		env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{
			Config: agentlab.Config{ReadyTimeout: 200 * time.Millisecond}})
		env.Hypervisor.FailNext(agentlabtest.OpGuestInfo, 0, 1<<30, agentlab.ErrNotReady)
		_, err := env.Manager.Create(ctxT(t), agentlab.CreateRequest{Profile: "test"})
		require.ErrorIs(t, err, agentlab.ErrTimeout)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Empty(t, env.Hypervisor.VMs(), "the silent VM is destroyed")
	})
	// An address SSH must never be sent to: the host itself (unspecified,
	// loopback), multicast, broadcast, link-local, or not an address at all.
	for _, ip := range []string{"0.0.0.0", "127.0.0.1", "::", "::1", "224.0.0.1",
		"255.255.255.255", "169.254.169.254", "fe80::1", "evil.example.com", "10.0.0.1:2222",
		"10.0.0.1\n"} {
		t.Run("reports "+strings.TrimSpace(ip), func(t *testing.T) {
			env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{
				Config: agentlab.Config{ReadyTimeout: 200 * time.Millisecond}})
			env.Hypervisor.SetGuestIP(1000, ip)
			sb, err := env.Manager.Create(ctxT(t), agentlab.CreateRequest{Profile: "test"})
			require.ErrorIs(t, err, agentlab.ErrTimeout)
			require.ErrorContains(t, err, "not a usable address")
			require.Empty(t, env.Hypervisor.VMs(), "the VM is destroyed")
			require.Equal(t, agentlab.StateDestroyed, sb.Record().State)
			evs, err := env.Manager.Events(ctxT(t), agentlab.EventFilter{Kinds: []string{
				agentlab.EventSandboxSSHReady, agentlab.EventSandboxSSHFailed}})
			require.NoError(t, err)
			require.Empty(t, evs, "SSH was never tried at that address")
		})
	}
	t.Run("claims another sandbox's address", func(t *testing.T) {
		env := agentlabtest.NewEnv(t, agentlabtest.EnvOptions{
			Config: agentlab.Config{ReadyTimeout: 300 * time.Millisecond}})
		first := create(t, env, agentlab.CreateRequest{})
		env.Hypervisor.SetGuestIP(first.VMID()+1, first.Record().IP)
		_, err := env.Manager.Create(ctxT(t), agentlab.CreateRequest{Profile: "test"})
		require.ErrorIs(t, err, agentlab.ErrTimeout)
		require.ErrorContains(t, err, "held by sandbox")
		evs, err := env.Manager.Events(ctxT(t), agentlab.EventFilter{
			Kinds: []string{agentlab.EventIPConflict}})
		require.NoError(t, err)
		require.Len(t, evs, 1)
		require.Equal(t, agentlab.StateRunning, state(t, first), "the victim is untouched")
	})
}
