package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/store"
	"github.com/stretchr/testify/require"
)

// Environment of a TestHelperProcess child.
const (
	envHelper = "AGENTLAB_STORE_HELPER" // the worker number
	envPath   = "AGENTLAB_STORE_PATH"   // the shared database file
)

// Workload of one worker: creates with automatic VMIDs in [vmidLow,
// vmidHigh), a transition of each (every third one to DESTROYED, so VMIDs
// get reused), and increments of the shared counter sandbox.
const (
	vmidLow, vmidHigh = 5000, 6000
	counterVMID       = 1
	createsPerWorker  = 12
	incrPerWorker     = 30
)

// TestHelperProcess is not a test: TestMultiProcess runs the test binary
// with -test.run=TestHelperProcess as a child that works on a shared file.
func TestHelperProcess(t *testing.T) {
	id, err := strconv.Atoi(os.Getenv(envHelper))
	if err != nil {
		t.Skip("helper process for TestMultiProcess")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := store.Open(ctx, os.Getenv(envPath), nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	require.NoError(t, runWorker(ctx, s, id))
	t.Logf("worker %d: %d vmid conflicts retried", id, vmidConflicts.Load())
}

// vmidConflicts counts the creates that lost a VMID race and retried.
var vmidConflicts atomic.Int64

func TestMultiProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	const children = 4
	path := filepath.Join(t.TempDir(), "shared.db") // fresh: children race to migrate
	var wg sync.WaitGroup
	outs := make([][]byte, children)
	errs := make([]error, children)
	for i := range children {
		cmd := exec.CommandContext(t.Context(), os.Args[0],
			"-test.run=^TestHelperProcess$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), envHelper+"="+strconv.Itoa(i), envPath+"="+path)
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = cmd.CombinedOutput()
		}()
	}
	wg.Wait()
	for i := range children {
		require.NoError(t, errs[i], "child %d output:\n%s", i, outs[i])
		t.Logf("child %d:\n%s", i, outs[i])
	}
	s, err := store.Open(t.Context(), path, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	checkWorkers(t, s, children)
}

func TestConcurrentHandlesOneFile(t *testing.T) {
	const handles, perHandle = 3, 2
	path := filepath.Join(t.TempDir(), "shared.db")
	var wg sync.WaitGroup
	errs := make([]error, handles*perHandle)
	stores := make([]*store.SQLite, handles)
	for h := range handles {
		s, err := store.Open(t.Context(), path, nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		stores[h] = s
		for g := range perHandle {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[h*perHandle+g] = runWorker(t.Context(), s, h*perHandle+g)
			}()
		}
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	checkWorkers(t, stores[0], handles*perHandle)
}

// runWorker runs one worker's share of the workload against s.
func runWorker(ctx context.Context, s agentlab.Store, id int) error {
	err := s.CreateSandbox(ctx, &agentlab.SandboxRecord{VMID: counterVMID, Name: "counter",
		State: agentlab.StateReady, Labels: map[string]string{"n": "0"}})
	if err != nil && !errors.Is(err, agentlab.ErrAlreadyExists) {
		return err
	}
	for i := range max(createsPerWorker, incrPerWorker) {
		if i < createsPerWorker {
			if err := createAndMove(ctx, s, id, i); err != nil {
				return err
			}
		}
		if i < incrPerWorker {
			if err := increment(ctx, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// createAndMove creates worker id's i-th sandbox on the lowest free VMID
// and moves it to READY, or to DESTROYED every third time.
func createAndMove(ctx context.Context, s agentlab.Store, id, i int) error {
	name := fmt.Sprintf("w%d-%d", id, i)
	vmid, err := createLowest(ctx, s, name)
	if err != nil {
		return err
	}
	to := agentlab.StateReady
	if i%3 == 2 {
		to = agentlab.StateDestroyed
	}
	_, err = s.UpdateSandbox(ctx, vmid, func(r *agentlab.SandboxRecord) error {
		if r.Name != name {
			return fmt.Errorf("vmid %d holds %q, want %q", vmid, r.Name, name)
		}
		r.State = to
		return nil
	})
	if err != nil {
		return err
	}
	return s.AppendEvent(ctx, &agentlab.Event{Kind: agentlab.EventSandboxState, VMID: vmid,
		Message: name})
}

// createLowest creates a sandbox named name on the lowest VMID in range no
// live sandbox holds, moving on when another writer wins the race.
func createLowest(ctx context.Context, s agentlab.Store, name string) (int, error) {
	for {
		vmid, err := lowestFree(ctx, s)
		if err != nil {
			return 0, err
		}
		rec := agentlab.SandboxRecord{VMID: vmid, Name: name, State: agentlab.StateRequested}
		err = s.CreateSandbox(ctx, &rec)
		if !errors.Is(err, agentlab.ErrVMIDConflict) {
			return vmid, err
		}
		vmidConflicts.Add(1)
	}
}

// lowestFree returns the lowest VMID in range that no live sandbox holds.
func lowestFree(ctx context.Context, s agentlab.Store) (int, error) {
	live := slices.DeleteFunc(slices.Clone(agentlab.AllStates),
		func(st agentlab.State) bool { return st == agentlab.StateDestroyed })
	recs, err := s.ListSandboxes(ctx, agentlab.SandboxFilter{States: live})
	if err != nil {
		return 0, err
	}
	used := map[int]bool{}
	for _, r := range recs {
		used[r.VMID] = true
	}
	for v := vmidLow; v < vmidHigh; v++ {
		if !used[v] {
			return v, nil
		}
	}
	return 0, errors.New("vmid range exhausted")
}

// increment adds one to the counter sandbox's "n" label.
func increment(ctx context.Context, s agentlab.Store) error {
	_, err := s.UpdateSandbox(ctx, counterVMID, func(r *agentlab.SandboxRecord) error {
		n, err := strconv.Atoi(r.Labels["n"])
		r.Labels["n"] = strconv.Itoa(n + 1)
		return err
	})
	return err
}

// checkWorkers checks what workers 0..n-1 left in s.
func checkWorkers(t *testing.T, s agentlab.Store, n int) {
	t.Helper()
	ctx := t.Context()
	all, err := s.ListSandboxes(ctx, agentlab.SandboxFilter{})
	require.NoError(t, err)
	live := map[int]string{}
	names := map[string]agentlab.State{}
	for _, r := range all {
		if r.State != agentlab.StateDestroyed {
			prev, dup := live[r.VMID]
			require.False(t, dup, "vmid %d live twice: %q and %q", r.VMID, prev, r.Name)
			live[r.VMID] = r.Name
		}
		names[r.Name] = r.State
	}
	for w := range n {
		for i := range createsPerWorker {
			want := agentlab.StateReady
			if i%3 == 2 {
				want = agentlab.StateDestroyed
			}
			require.Equal(t, want, names[fmt.Sprintf("w%d-%d", w, i)], "worker %d create %d", w, i)
		}
	}
	counter, err := s.GetSandbox(ctx, counterVMID)
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(n*incrPerWorker), counter.Labels["n"], "no lost increment")
	require.Equal(t, int64(1+n*incrPerWorker), counter.Version)

	evs, err := s.ListEvents(ctx, agentlab.EventFilter{})
	require.NoError(t, err)
	require.Len(t, evs, n*createsPerWorker)
	ids := make([]int64, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	require.True(t, slices.IsSorted(ids))
	require.Len(t, slices.Compact(ids), len(evs), "event IDs are unique")
}
