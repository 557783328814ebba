package agentlab_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
	"github.com/agentlab-sdk/agentlab/store"
)

// Child processes re-run this test binary with these variables set and
// drive a Manager on the parent's simulator and SQLite file.
const (
	envChildMode = "AGENTLAB_TEST_CHILD"
	envSimURL    = "AGENTLAB_TEST_SIM_URL"
	envSimToken  = "AGENTLAB_TEST_SIM_TOKEN"
	envSimSecret = "AGENTLAB_TEST_SIM_SECRET"
	envSimFP     = "AGENTLAB_TEST_SIM_FP"
	envDB        = "AGENTLAB_TEST_DB"
	envShared    = "AGENTLAB_TEST_SHARED_VMID"
)

// childManager opens a Manager the way a child process does.
func childManager(ctx context.Context, staleOp time.Duration) (*agentlab.Manager, func(), error) {
	hv, err := proxmox.New(ctx, proxmox.Config{URL: os.Getenv(envSimURL),
		TokenID: os.Getenv(envSimToken), TokenSecret: os.Getenv(envSimSecret),
		Fingerprint: os.Getenv(envSimFP), PollInterval: 5 * time.Millisecond,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	if err != nil {
		return nil, nil, err
	}
	st, err := store.Open(ctx, os.Getenv(envDB), nil)
	if err != nil {
		return nil, nil, err
	}
	set, err := agentlab.NewProfileSet(agentlab.Profile{Name: "p", TemplateVMID: 9000})
	if err != nil {
		return nil, nil, err
	}
	m, err := agentlab.New(ctx, agentlab.Config{Store: st, Hypervisor: hv, Profiles: set,
		StaleOpAfter: staleOp, ReapInterval: -1, IdleInterval: -1, ReconcileInterval: -1})
	if err != nil {
		return nil, nil, err
	}
	return m, func() {
		_ = m.Close(context.Background())
		_ = st.Close()
		_ = hv.Close()
	}, nil
}

// TestChildProcess is the body of the child processes; it is skipped in a
// normal run.
func TestChildProcess(t *testing.T) {
	mode := os.Getenv(envChildMode)
	if mode == "" {
		t.Skip("run by TestMultiProcess* as a child process")
	}
	ctx := context.Background()
	m, done, err := childManager(ctx, 10*time.Minute)
	require.NoError(t, err)
	defer done()
	switch mode {
	case "work":
		childWork(t, ctx, m)
	case "loop":
		for { // until killed
			sb, err := m.Create(ctx, agentlab.CreateRequest{Profile: "p"})
			if err == nil {
				_ = sb.Pause(ctx)
				_ = sb.SaveSnapshot(ctx, "s1", nil)
				_ = sb.Destroy(ctx)
			}
		}
	}
}

// childWork creates sandboxes and races the other children on a shared one.
func childWork(t *testing.T, ctx context.Context, m *agentlab.Manager) {
	shared, err := strconv.Atoi(os.Getenv(envShared))
	require.NoError(t, err)
	sb, err := m.Get(ctx, shared)
	require.NoError(t, err)
	for range 4 {
		_, err := m.Create(ctx, agentlab.CreateRequest{Profile: "p"})
		require.NoError(t, err)
		for _, op := range []func(context.Context) error{sb.Pause, sb.Resume,
			func(ctx context.Context) error { return sb.RenewLease(ctx, time.Hour) }} {
			err := op(ctx)
			if err != nil && !errors.Is(err, agentlab.ErrBusy) &&
				!errors.Is(err, agentlab.ErrInvalidState) {
				t.Fatalf("shared sandbox: %v", err)
			}
		}
	}
}

type procWorld struct {
	sim *pvesim.Server
	db  string
	env []string
}

func newProcWorld(t *testing.T) *procWorld {
	sim := pvesim.Start(t, pvesim.Config{})
	require.NoError(t, sim.AddTemplate(sim.Nodes()[0], 9000, "tmpl", nil))
	w := &procWorld{sim: sim, db: filepath.Join(t.TempDir(), "agentlab.db")}
	w.env = append(os.Environ(), envSimURL+"="+sim.URL(), envSimToken+"="+sim.TokenID(),
		envSimSecret+"="+sim.TokenSecret(), envSimFP+"="+sim.Fingerprint(), envDB+"="+w.db)
	for _, kv := range w.env[len(os.Environ()):] {
		k, v, _ := cut(kv)
		t.Setenv(k, v) // for the parent's own childManager
	}
	return w
}

func cut(kv string) (string, string, bool) {
	for i := range kv {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

func (w *procWorld) child(t *testing.T, mode string, extra ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.count=1")
	cmd.Env = append(append(w.env, envChildMode+"="+mode), extra...)
	out, err := os.CreateTemp(t.TempDir(), "child-*.log")
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = out, out
	return cmd
}

// TestMultiProcessManagers runs three processes with their own Managers on
// one SQLite file and one simulated cluster, creating sandboxes and racing
// on a shared one: no duplicate VMID, every create recorded, and the shared
// sandbox's record matches its VM.
func TestMultiProcessManagers(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	w := newProcWorld(t)
	ctx := ctxT(t)
	m, done, err := childManager(ctx, 10*time.Minute)
	require.NoError(t, err)
	defer done()
	shared, err := m.Create(ctx, agentlab.CreateRequest{Profile: "p", Name: "shared"})
	require.NoError(t, err)

	var cmds []*exec.Cmd
	for range 3 {
		cmd := w.child(t, "work", envShared+"="+strconv.Itoa(shared.VMID()))
		require.NoError(t, cmd.Start())
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			log, _ := os.ReadFile(cmd.Stdout.(*os.File).Name())
			t.Fatalf("child: %v\n%s", err, log)
		}
	}
	recs, err := m.List(ctx, agentlab.SandboxFilter{States: []agentlab.State{
		agentlab.StateRunning, agentlab.StateReady, agentlab.StateSuspended}})
	require.NoError(t, err)
	require.Len(t, recs, 13, "12 creates by the children and the shared sandbox")
	seen := map[int]bool{}
	for _, r := range recs {
		require.False(t, seen[r.VMID], "vmid %d twice", r.VMID)
		seen[r.VMID] = true
	}
	require.Len(t, w.sim.VMs(), 14, "13 VMs and the template")
	rec, err := shared.Refresh(ctx)
	require.NoError(t, err)
	require.Empty(t, rec.Op)
	vm, ok := w.sim.VM(shared.VMID())
	require.True(t, ok)
	require.Equal(t, expectedPower(rec.State), powerOf(vm), "shared record matches its VM")
}

func powerOf(vm pvesim.VMInfo) agentlab.PowerState {
	if vm.QMPStatus == "paused" {
		return agentlab.PowerPaused
	}
	return agentlab.PowerState(vm.Status)
}

// TestKillNine kills a child process with SIGKILL in the middle of its
// creates, pauses, snapshots and destroys, then opens a new Manager on the
// same SQLite file and cluster and checks the invariants after reconcile.
func TestKillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	rng := rand.New(rand.NewPCG(uint64(*stormSeed), 9))
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			w := newProcWorld(t)
			cmd := w.child(t, "loop")
			require.NoError(t, cmd.Start())
			waitForRecords(t, w.db)
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			_ = cmd.Wait()

			ctx := ctxT(t)
			m, done, err := childManager(ctx, time.Nanosecond)
			require.NoError(t, err)
			defer done()
			_, err = m.Reconcile(ctx, agentlab.ReconcileOptions{Apply: true})
			require.NoError(t, err)
			checkProcInvariants(t, w, m)
		})
	}
}

// waitForRecords waits until the child wrote its first sandbox record, so
// that the kill lands in the middle of real work.
func waitForRecords(t *testing.T, db string) {
	t.Helper()
	ctx := ctxT(t)
	for ctx.Err() == nil {
		if st, err := store.Open(ctx, db, nil); err == nil {
			recs, err := st.ListSandboxes(ctx, agentlab.SandboxFilter{Limit: 1})
			_ = st.Close()
			if err == nil && len(recs) > 0 {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the child wrote no record")
}

func checkProcInvariants(t *testing.T, w *procWorld, m *agentlab.Manager) {
	t.Helper()
	recs, err := m.List(ctxT(t), agentlab.SandboxFilter{})
	require.NoError(t, err)
	live := map[int]agentlab.SandboxRecord{}
	for _, r := range recs {
		if r.State == agentlab.StateDestroyed {
			continue
		}
		require.NotContains(t, live, r.VMID)
		live[r.VMID] = r
		require.False(t, r.State.Transient(), "vmid %d in %s", r.VMID, r.State)
		require.Empty(t, r.Op)
		vm, ok := w.sim.VM(r.VMID)
		require.True(t, ok, "live record %d has a VM", r.VMID)
		if want := expectedPower(r.State); want != "" {
			require.Equal(t, want, powerOf(vm), "vmid %d in %s", r.VMID, r.State)
		}
	}
	for _, vm := range w.sim.VMs() {
		if !vm.Template {
			require.Contains(t, live, vm.VMID, "VM %d has a live record", vm.VMID)
		}
	}
}
