package agentlab_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/agentlabtest"
)

// crashWorld is a Store and a fake hypervisor that outlive the Managers
// that crash on them.
type crashWorld struct {
	store agentlab.Store
	hv    *agentlabtest.Hypervisor
	cfg   agentlab.Config

	armed  atomic.Bool
	target int64 // crash at this call number (counted from 1)
	after  bool  // crash after the call's side effect instead of before
	calls  atomic.Int64
	crashd atomic.Bool
}

func newCrashWorld(t *testing.T) *crashWorld {
	hv, err := agentlabtest.NewHypervisor(agentlabtest.HypervisorOptions{Dir: t.TempDir()})
	require.NoError(t, err)
	profiles, err := agentlab.NewProfileSet(agentlab.Profile{Name: "test", TemplateVMID: 9000,
		Job: agentlab.JobSettings{Command: "echo working; echo done > out.txt",
			Artifacts: []string{"out.txt"}}})
	require.NoError(t, err)
	w := &crashWorld{store: agentlabtest.NewStore(), hv: hv}
	w.cfg = agentlab.Config{Store: w.store, Hypervisor: hv, Guest: hv.Guest(),
		Profiles: profiles, ArtifactDir: t.TempDir(), JobPollInterval: 5 * time.Millisecond,
		JobHeartbeatTimeout: time.Nanosecond, StaleOpAfter: time.Nanosecond,
		ReapInterval: -1, IdleInterval: -1, ReconcileInterval: -1,
		SkipInitialReconcile: true}
	hv.AddHook(func(context.Context, agentlabtest.Op, int) (error, bool) {
		if w.armed.Load() && !w.after && w.calls.Add(1) == w.target {
			w.crash()
		}
		return nil, false
	})
	hv.AddAfterHook(func(context.Context, agentlabtest.Op, int) {
		if w.armed.Load() && w.after && w.calls.Add(1) == w.target {
			w.crash()
		}
	})
	return w
}

// crash ends the calling goroutine at once, as a kill -9 would end the
// operation: nothing after this point runs, except deferred unlocks.
func (w *crashWorld) crash() {
	w.armed.Store(false)
	w.crashd.Store(true)
	runtime.Goexit()
}

// manager opens a Manager on the world. Crashed Managers are never closed:
// their process is gone.
func (w *crashWorld) manager(t *testing.T) *agentlab.Manager {
	m, err := agentlab.New(context.Background(), w.cfg)
	require.NoError(t, err)
	return m
}

// runCrashing runs op in a goroutine that may be ended by the crash hook.
func runCrashing(op func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		op()
	}()
	wg.Wait()
}

// crashScenario prepares the world (uncounted), then runs the operation
// that is crashed.
type crashScenario struct {
	name    string
	prepare func(t *testing.T, m *agentlab.Manager) *agentlab.Sandbox
	op      func(w *crashWorld, m *agentlab.Manager, sb *agentlab.Sandbox)
}

func prepSandbox(t *testing.T, m *agentlab.Manager) *agentlab.Sandbox {
	sb, err := m.Create(context.Background(), agentlab.CreateRequest{Profile: "test"})
	require.NoError(t, err)
	require.NoError(t, sb.SaveSnapshot(context.Background(), "s1", nil))
	return sb
}

var crashScenarios = []crashScenario{
	{"create", nil, func(_ *crashWorld, m *agentlab.Manager, _ *agentlab.Sandbox) {
		_, _ = m.Create(context.Background(), agentlab.CreateRequest{Profile: "test"})
	}},
	{"destroy", prepSandbox, func(_ *crashWorld, _ *agentlab.Manager, sb *agentlab.Sandbox) {
		_ = sb.Destroy(context.Background())
	}},
	{"pause", prepSandbox, func(_ *crashWorld, _ *agentlab.Manager, sb *agentlab.Sandbox) {
		_ = sb.Pause(context.Background())
	}},
	{"stop-start", prepSandbox, func(_ *crashWorld, _ *agentlab.Manager, sb *agentlab.Sandbox) {
		_ = sb.Stop(context.Background())
		_ = sb.Start(context.Background())
	}},
	{"snapshot", prepSandbox, func(_ *crashWorld, _ *agentlab.Manager, sb *agentlab.Sandbox) {
		_ = sb.SaveSnapshot(context.Background(), "s2", nil)
	}},
	{"restore", prepSandbox, func(_ *crashWorld, _ *agentlab.Manager, sb *agentlab.Sandbox) {
		_ = sb.RestoreSnapshot(context.Background(), "s1", nil)
	}},
	{"reap", func(t *testing.T, m *agentlab.Manager) *agentlab.Sandbox {
		// expireAll moves this lease into the past before the reap.
		sb, err := m.Create(context.Background(), agentlab.CreateRequest{Profile: "test",
			TTL: time.Minute})
		require.NoError(t, err)
		return sb
	}, func(_ *crashWorld, m *agentlab.Manager, _ *agentlab.Sandbox) {
		_, _ = m.Reap(context.Background())
	}},
	{"job", nil, func(w *crashWorld, m *agentlab.Manager, _ *agentlab.Sandbox) {
		ctx := context.Background()
		j, err := m.RunJob(ctx, agentlab.JobSpec{Profile: "test", Task: "t"})
		for err == nil && !w.crashd.Load() {
			var rec agentlab.JobRecord
			if rec, err = j.Refresh(ctx); err == nil && rec.Status.Terminal() {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}},
}

// countCalls runs the scenario once without crashing and returns how many
// hypervisor and guest calls its operation makes.
func countCalls(t *testing.T, sc crashScenario) int64 {
	w := newCrashWorld(t)
	m := w.manager(t)
	defer m.Close(context.Background())
	var sb *agentlab.Sandbox
	if sc.prepare != nil {
		sb = sc.prepare(t, m)
	}
	expireAll(t, w)
	w.target = -1
	w.armed.Store(true)
	sc.op(w, m, sb)
	w.armed.Store(false)
	return w.calls.Load()
}

func expireAll(t *testing.T, w *crashWorld) {
	recs, err := w.store.ListSandboxes(context.Background(), agentlab.SandboxFilter{})
	require.NoError(t, err)
	for _, r := range recs {
		if r.LeaseExpires.IsZero() {
			continue
		}
		_, err := w.store.UpdateSandbox(context.Background(), r.VMID,
			func(rec *agentlab.SandboxRecord) error {
				rec.LeaseExpires = time.Now().Add(-time.Second)
				return nil
			})
		require.NoError(t, err)
	}
}

// TestCrashConsistency stops each multi-step operation at every call
// boundary, before and after each side effect, then opens a new Manager on
// the same Store and hypervisor and checks the invariants.
func TestCrashConsistency(t *testing.T) {
	for _, sc := range crashScenarios {
		n := countCalls(t, sc)
		require.Positive(t, n, sc.name)
		for i := int64(1); i <= n; i++ {
			for _, after := range []bool{false, true} {
				name := fmt.Sprintf("%s/call%d/before", sc.name, i)
				if after {
					name = fmt.Sprintf("%s/call%d/after", sc.name, i)
				}
				t.Run(name, func(t *testing.T) { crashAt(t, sc, i, after) })
			}
		}
	}
}

func crashAt(t *testing.T, sc crashScenario, call int64, after bool) {
	w := newCrashWorld(t)
	m := w.manager(t)
	var sb *agentlab.Sandbox
	if sc.prepare != nil {
		sb = sc.prepare(t, m)
	}
	expireAll(t, w)
	w.target, w.after = call, after
	w.armed.Store(true)
	runCrashing(func() { sc.op(w, m, sb) })
	w.armed.Store(false)
	if !w.crashd.Load() {
		_ = m.Close(context.Background())
	}
	// The crashed process's job runners may still hold goroutines; they end
	// with it in real life. Here its Manager is closed to stop them.
	_ = m.Close(context.Background())

	cfg := w.cfg
	cfg.SkipInitialReconcile = false
	m2, err := agentlab.New(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m2.Close(context.Background()) })
	waitJobsTerminal(t, m2)
	_, err = m2.Reconcile(context.Background(), agentlab.ReconcileOptions{Apply: true})
	require.NoError(t, err)
	checkInvariants(t, w, m2)
}

func waitJobsTerminal(t *testing.T, m *agentlab.Manager) {
	t.Helper()
	ctx := ctxT(t)
	jobs, err := m.ListJobs(ctx, agentlab.JobFilter{})
	require.NoError(t, err)
	for _, rec := range jobs {
		j, err := m.GetJob(ctx, rec.ID)
		require.NoError(t, err)
		got, err := j.Wait(ctx)
		require.NoError(t, err, "job %s terminal after restart", rec.ID)
		require.True(t, got.Status.Terminal())
	}
}

// checkInvariants: every VM with our marker has a live record, no record is
// transient or mid-operation, records agree with VM power, every running
// sandbox has a pinned host key.
func checkInvariants(t *testing.T, w *crashWorld, m *agentlab.Manager) {
	t.Helper()
	ctx := context.Background()
	vms, err := w.hv.List(ctx, "agentlab")
	require.NoError(t, err)
	live := map[int]agentlab.SandboxRecord{}
	recs, err := m.List(ctx, agentlab.SandboxFilter{})
	require.NoError(t, err)
	for _, r := range recs {
		if r.State == agentlab.StateDestroyed {
			continue
		}
		require.NotContains(t, live, r.VMID, "VMID used twice")
		live[r.VMID] = r
		require.False(t, r.State.Transient(), "vmid %d left in %s", r.VMID, r.State)
		require.Empty(t, r.Op, "vmid %d left mid-%s", r.VMID, r.Op)
		vm, err := w.hv.Status(ctx, r.VMID)
		require.NoError(t, err, "live record %d has a VM", r.VMID)
		if want := expectedPower(r.State); want != "" {
			require.Equal(t, want, vm.Power, "vmid %d in %s", r.VMID, r.State)
		}
		if vm.Power == agentlab.PowerRunning {
			require.NotEmpty(t, r.HostKey, "running sandbox %d has a pinned key", r.VMID)
		}
	}
	for _, vm := range vms {
		require.Contains(t, live, vm.VMID, "VM %d with our marker has a live record", vm.VMID)
	}
}

func expectedPower(s agentlab.State) agentlab.PowerState {
	switch s {
	case agentlab.StateReady, agentlab.StateRunning:
		return agentlab.PowerRunning
	case agentlab.StateSuspended:
		return agentlab.PowerPaused
	case agentlab.StateStopped:
		return agentlab.PowerStopped
	}
	return ""
}
