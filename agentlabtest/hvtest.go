package agentlabtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
)

// HypervisorHarness is what [RunHypervisorTests] needs of an implementation.
type HypervisorHarness struct {
	// Hypervisor is the implementation under test.
	Hypervisor agentlab.Hypervisor

	// Template is the VMID of a template the suite may clone.
	Template int

	// FirstVMID starts a range of at least 20 free VMIDs the suite may use.
	FirstVMID int

	// Timeout bounds each wait (guest agent, task). Zero means 30 seconds.
	Timeout time.Duration
}

// RunHypervisorTests checks that a Hypervisor keeps the contract of
// [agentlab.Hypervisor]: provisioning with ownership markers, VMID conflicts,
// power operations, guest info, snapshots and their rollback semantics,
// idempotent destroy, and error translation. newHarness is called once per
// subtest and must return a fresh backend (or one with fresh VMIDs).
func RunHypervisorTests(t *testing.T, newHarness func(t *testing.T) HypervisorHarness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h *hvSuite)
	}{
		{"ProvisionMarksOwner", testProvisionMarksOwner},
		{"ProvisionConflict", testProvisionConflict},
		{"ProvisionBadTemplate", testProvisionBadTemplate},
		{"NotFound", testHVNotFound},
		{"PowerCycle", testPowerCycle},
		{"GuestInfo", testGuestInfo},
		{"DiskSnapshotRollbackStops", testDiskSnapshot},
		{"MemorySnapshotRollbackRuns", testMemorySnapshot},
		{"DestroyIdempotent", testDestroyIdempotent},
		{"ParallelProvision", testParallelProvision},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if h.Timeout == 0 {
				h.Timeout = 30 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), 4*h.Timeout)
			t.Cleanup(cancel)
			tt.fn(t, &hvSuite{HypervisorHarness: h, ctx: ctx})
		})
	}
}

type hvSuite struct {
	HypervisorHarness
	ctx context.Context
}

const suiteOwner = "agentlab-conformance"

func (s *hvSuite) spec(vmid int) agentlab.ProvisionSpec {
	return agentlab.ProvisionSpec{
		VMID: vmid, Name: fmt.Sprintf("conf-%d", vmid), Template: s.Template,
		Cores: 1, MemoryMB: 512, User: "agent", Owner: suiteOwner,
		Sandbox: fmt.Sprintf("conf-%d", vmid),
		Network: agentlab.NetworkPolicy{Mode: agentlab.NetworkNAT},
		SSHKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJmHnsNObKnKbf0sIhPS3Jq9" +
			"2aPSrbaYn3qzqWl2xO1h conformance"},
	}
}

// provision creates a VM and destroys it when the test ends.
func (s *hvSuite) provision(t *testing.T, vmid int) agentlab.VM {
	t.Helper()
	vm, err := s.Hypervisor.Provision(s.ctx, s.spec(vmid))
	require.NoError(t, err, "provision %d", vmid)
	t.Cleanup(func() {
		_ = s.Hypervisor.Destroy(context.Background(), vmid)
	})
	return vm
}

func (s *hvSuite) power(t *testing.T, vmid int) agentlab.PowerState {
	t.Helper()
	vm, err := s.Hypervisor.Status(s.ctx, vmid)
	require.NoError(t, err, "status %d", vmid)
	return vm.Power
}

// guestInfo polls GuestInfo while it reports ErrNotReady.
func (s *hvSuite) guestInfo(t *testing.T, vmid int) agentlab.GuestInfo {
	t.Helper()
	deadline := time.Now().Add(s.Timeout)
	for {
		info, err := s.Hypervisor.GuestInfo(s.ctx, vmid)
		if err == nil && info.IP != "" {
			return info
		}
		if err != nil && !errors.Is(err, agentlab.ErrNotReady) {
			require.NoError(t, err, "guest info %d", vmid)
		}
		require.True(t, time.Now().Before(deadline), "guest of %d not ready in time", vmid)
		time.Sleep(20 * time.Millisecond)
	}
}

func testProvisionMarksOwner(t *testing.T, s *hvSuite) {
	id := s.FirstVMID
	vm := s.provision(t, id)
	require.Equal(t, id, vm.VMID)
	require.Equal(t, agentlab.PowerStopped, s.power(t, id), "a new VM is left stopped")
	got, err := s.Hypervisor.Status(s.ctx, id)
	require.NoError(t, err)
	require.Equal(t, suiteOwner, got.Owner)
	require.NotEmpty(t, got.Node)

	owned, err := s.Hypervisor.List(s.ctx, suiteOwner)
	require.NoError(t, err)
	require.True(t, slices.ContainsFunc(owned, func(v agentlab.VM) bool { return v.VMID == id }),
		"List(owner) includes the VM")
	other, err := s.Hypervisor.List(s.ctx, "someone-else")
	require.NoError(t, err)
	require.False(t, slices.ContainsFunc(other, func(v agentlab.VM) bool { return v.VMID == id }),
		"List(other owner) excludes the VM")
}

func testProvisionConflict(t *testing.T, s *hvSuite) {
	id := s.FirstVMID + 1
	s.provision(t, id)
	_, err := s.Hypervisor.Provision(s.ctx, s.spec(id))
	require.ErrorIs(t, err, agentlab.ErrVMIDConflict)
	require.ErrorIs(t, err, agentlab.ErrAlreadyExists)
	owned, err := s.Hypervisor.List(s.ctx, suiteOwner)
	require.NoError(t, err)
	n := 0
	for _, v := range owned {
		if v.VMID == id {
			n++
		}
	}
	require.Equal(t, 1, n, "one VM holds the VMID")
}

func testProvisionBadTemplate(t *testing.T, s *hvSuite) {
	spec := s.spec(s.FirstVMID + 2)
	spec.Template = 999999
	_, err := s.Hypervisor.Provision(s.ctx, spec)
	require.Error(t, err)
	_, err = s.Hypervisor.Status(s.ctx, spec.VMID)
	require.ErrorIs(t, err, agentlab.ErrNotFound, "no VM is left behind")
}

func testHVNotFound(t *testing.T, s *hvSuite) {
	id := s.FirstVMID + 3
	_, err := s.Hypervisor.Status(s.ctx, id)
	require.ErrorIs(t, err, agentlab.ErrNotFound)
	require.NoError(t, s.Hypervisor.Destroy(s.ctx, id), "destroying a missing VM succeeds")
	require.ErrorIs(t, s.Hypervisor.Start(s.ctx, id), agentlab.ErrNotFound)
	_, err = s.Hypervisor.Snapshots(s.ctx, id)
	require.ErrorIs(t, err, agentlab.ErrNotFound)
}

func testPowerCycle(t *testing.T, s *hvSuite) {
	id := s.FirstVMID + 4
	s.provision(t, id)
	hv := s.Hypervisor
	require.NoError(t, hv.Start(s.ctx, id))
	require.Equal(t, agentlab.PowerRunning, s.power(t, id))
	require.NoError(t, hv.Start(s.ctx, id), "starting a running VM is not an error")
	require.NoError(t, hv.Suspend(s.ctx, id))
	require.Equal(t, agentlab.PowerPaused, s.power(t, id))
	require.NoError(t, hv.Resume(s.ctx, id))
	require.Equal(t, agentlab.PowerRunning, s.power(t, id))
	require.NoError(t, hv.Stop(s.ctx, id, agentlab.StopOptions{Timeout: time.Second}))
	require.Equal(t, agentlab.PowerStopped, s.power(t, id))
	require.NoError(t, hv.Stop(s.ctx, id, agentlab.StopOptions{}),
		"stopping a stopped VM is not an error")
}

func testGuestInfo(t *testing.T, s *hvSuite) {
	id := s.FirstVMID + 5
	s.provision(t, id)
	_, err := s.Hypervisor.GuestInfo(s.ctx, id)
	require.ErrorIs(t, err, agentlab.ErrNotReady, "a stopped guest is not ready")
	require.NoError(t, s.Hypervisor.Start(s.ctx, id))
	info := s.guestInfo(t, id)
	require.NotEmpty(t, info.IP)
}

func testDiskSnapshot(t *testing.T, s *hvSuite) {
	id := s.FirstVMID + 6
	s.provision(t, id)
	hv := s.Hypervisor
	require.NoError(t, hv.Start(s.ctx, id))
	require.NoError(t, hv.Snapshot(s.ctx, id, agentlab.SnapshotSpec{Name: "disk1"}))
	require.Error(t, hv.Snapshot(s.ctx, id, agentlab.SnapshotSpec{Name: "disk1"}),
		"a duplicate snapshot name is refused")
	snaps, err := hv.Snapshots(s.ctx, id)
	require.NoError(t, err)
	names := snapshotNames(snaps)
	require.Equal(t, []string{"disk1"}, names, "listed without \"current\"")

	require.NoError(t, hv.Rollback(s.ctx, id, "disk1"))
	require.Equal(t, agentlab.PowerStopped, s.power(t, id),
		"a rollback to a disk-only snapshot leaves the VM stopped")
	require.ErrorIs(t, hv.Rollback(s.ctx, id, "nosuch"), agentlab.ErrNotFound)

	require.NoError(t, hv.DeleteSnapshot(s.ctx, id, "disk1"))
	snaps, err = hv.Snapshots(s.ctx, id)
	require.NoError(t, err)
	require.Empty(t, snaps)
	require.ErrorIs(t, hv.DeleteSnapshot(s.ctx, id, "disk1"), agentlab.ErrNotFound)
}

func snapshotNames(snaps []agentlab.SnapshotInfo) []string {
	var out []string
	for _, s := range snaps {
		out = append(out, s.Name)
	}
	return out
}

func testMemorySnapshot(t *testing.T, s *hvSuite) {
	id := s.FirstVMID + 7
	s.provision(t, id)
	hv := s.Hypervisor
	require.NoError(t, hv.Start(s.ctx, id))
	require.NoError(t, hv.Snapshot(s.ctx, id, agentlab.SnapshotSpec{Name: "withram",
		Memory: true}))
	require.NoError(t, hv.Stop(s.ctx, id, agentlab.StopOptions{}))
	require.NoError(t, hv.Rollback(s.ctx, id, "withram"))
	require.Equal(t, agentlab.PowerRunning, s.power(t, id),
		"a rollback to a snapshot with memory resumes the VM")
	snaps, err := hv.Snapshots(s.ctx, id)
	require.NoError(t, err)
	require.Len(t, snaps, 1)
	require.True(t, snaps[0].Memory)
}

func testDestroyIdempotent(t *testing.T, s *hvSuite) {
	id := s.FirstVMID + 8
	s.provision(t, id)
	hv := s.Hypervisor
	require.NoError(t, hv.Start(s.ctx, id))
	require.NoError(t, hv.Destroy(s.ctx, id), "destroying a running VM")
	_, err := hv.Status(s.ctx, id)
	require.ErrorIs(t, err, agentlab.ErrNotFound)
	require.NoError(t, hv.Destroy(s.ctx, id))
	owned, err := hv.List(s.ctx, suiteOwner)
	require.NoError(t, err)
	require.False(t, slices.ContainsFunc(owned, func(v agentlab.VM) bool { return v.VMID == id }))
}

func testParallelProvision(t *testing.T, s *hvSuite) {
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Hypervisor.Provision(s.ctx, s.spec(s.FirstVMID+10+i))
		}()
	}
	wg.Wait()
	for i := range n {
		id := s.FirstVMID + 10 + i
		t.Cleanup(func() { _ = s.Hypervisor.Destroy(context.Background(), id) })
		require.NoError(t, errs[i], "provision %d", id)
		vm, err := s.Hypervisor.Status(s.ctx, id)
		require.NoError(t, err)
		require.Equal(t, suiteOwner, vm.Owner)
	}
}
