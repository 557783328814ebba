package agentlab_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
)

var (
	stormLong = flag.Bool("storm.long", false, "run the long fault storm")
	stormSeed = flag.Int64("storm.seed", 1, "seed of the fault storm")
)

// classified reports whether err is one of the SDK's documented outcomes.
func classified(err error) bool {
	for _, target := range []error{agentlab.ErrNotFound, agentlab.ErrInvalidState,
		agentlab.ErrAlreadyExists, agentlab.ErrBusy, agentlab.ErrTimeout,
		agentlab.ErrClosed, agentlab.ErrUnsupported, agentlab.ErrInvalidArgument,
		agentlab.ErrHostKeyMismatch, agentlab.ErrUnreachable, agentlab.ErrNotReady,
		agentlab.ErrBackend, context.DeadlineExceeded, context.Canceled} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// injectStorm adds seeded faults of every kind the simulator offers and
// returns a function that removes them.
func injectStorm(sim *pvesim.Server, p float64) (clear func()) {
	anyVM := regexp.MustCompile(`/qemu/\d+`)
	faults := []pvesim.Fault{
		{Path: anyVM, Status: 500, Message: "internal error", Probability: p},
		{Path: anyVM, Status: 503, Probability: p},
		{Path: anyVM, Status: 596, Message: "Connection timed out", Probability: p / 2},
		{Path: anyVM, Latency: 20 * time.Millisecond, Probability: p},
		{Path: anyVM, DropConn: true, Probability: p / 2},
		{Path: anyVM, DropResponse: true, Probability: p / 2},
		{FailTask: "*", Probability: p / 2},
		{FailTask: "*", ApplyAnyway: true, Probability: p / 4},
		{LockTimeout: true, Probability: p / 2},
		{NextIDTaken: true, Probability: 0.5},
	}
	var removes []func()
	for _, f := range faults {
		removes = append(removes, sim.InjectFault(f))
	}
	return func() {
		for _, r := range removes {
			r()
		}
	}
}

// TestFaultStorm runs concurrent creates, operations and destroys while the
// simulator injects seeded faults, then checks that every call succeeded or
// failed with a classified error and that, after the faults stop and a
// reconcile pass, records and VMs agree and nothing leaked. -storm.long runs
// a bigger storm; -storm.seed picks another schedule.
func TestFaultStorm(t *testing.T) {
	workers, rounds := 4, 3
	if *stormLong {
		workers, rounds = 12, 10
	}
	w := newRealWorld(t, pvesim.Config{Seed: *stormSeed,
		TaskDelays: map[string]time.Duration{"qmclone": 5 * time.Millisecond}})
	clear := injectStorm(w.sim, 0.08)

	var mu sync.Mutex
	var unclassified []error
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(*stormSeed), uint64(i)))
			for range rounds {
				for _, err := range stormRound(w.manager, rng) {
					if err != nil && !classified(err) {
						mu.Lock()
						unclassified = append(unclassified, err)
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range unclassified {
		t.Errorf("unclassified error: %v", err)
	}

	// The storm is over: the faults stop and reconcile repairs.
	clear()
	ctx := ctxT(t)
	for range 3 {
		_, err := w.manager.Reconcile(ctx, agentlab.ReconcileOptions{Apply: true})
		require.NoError(t, err)
	}
	checkRealInvariants(t, w)
}

// stormRound creates a sandbox, runs a few operations on it and destroys
// it, returning every error it saw.
func stormRound(m *agentlab.Manager, rng *rand.Rand) []error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var errs []error
	sb, err := m.Create(ctx, agentlab.CreateRequest{Profile: "yolo-ephemeral"})
	errs = append(errs, err)
	if sb == nil {
		return errs
	}
	ops := []func(context.Context) error{sb.Pause, sb.Resume, sb.Stop, sb.Start,
		func(ctx context.Context) error { return sb.RenewLease(ctx, time.Hour) },
		func(ctx context.Context) error {
			return sb.SaveSnapshot(ctx, fmt.Sprintf("s%d", rng.IntN(1000)), nil)
		},
	}
	for range 3 {
		errs = append(errs, ops[rng.IntN(len(ops))](ctx))
	}
	// Destroy until it sticks, as an orchestrator would.
	for range 5 {
		if err := sb.Destroy(ctx); err == nil || !classified(err) {
			errs = append(errs, err)
			break
		}
	}
	return errs
}

// checkRealInvariants: every VM with our marker has a live record, no record
// is transient or mid-operation, and live records match their VM's power.
func checkRealInvariants(t *testing.T, w *realWorld) {
	t.Helper()
	ctx := ctxT(t)
	recs, err := w.manager.List(ctx, agentlab.SandboxFilter{})
	require.NoError(t, err)
	live := map[int]bool{}
	for _, r := range recs {
		if r.State == agentlab.StateDestroyed {
			continue
		}
		require.False(t, live[r.VMID], "vmid %d twice", r.VMID)
		live[r.VMID] = true
		require.False(t, r.State.Transient(), "vmid %d in %s", r.VMID, r.State)
		require.Empty(t, r.Op, "vmid %d mid-%s", r.VMID, r.Op)
		vm, err := w.hv.Status(ctx, r.VMID)
		require.NoError(t, err, "vmid %d", r.VMID)
		if want := expectedPower(r.State); want != "" {
			require.Equal(t, want, vm.Power, "vmid %d in %s", r.VMID, r.State)
		}
	}
	for _, vm := range w.sim.VMs() {
		if vm.Template {
			continue
		}
		require.True(t, live[vm.VMID], "VM %d (%s) has no live record", vm.VMID, vm.Description)
	}
}
