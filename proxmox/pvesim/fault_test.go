package pvesim_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	proxmox "github.com/luthermonson/go-proxmox"
	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
)

func TestLockTimeoutAndTaskFaults(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{})
	ctx := ctxT(t)
	vm := cloneVM(t, ctx, c, "pve1", 101)

	remove := srv.InjectFault(pvesim.Fault{FailTask: "qmstart", LockTimeout: true, Count: 1})
	defer remove()
	task, err := vm.Start(ctx)
	require.NoError(t, err)
	err = waitErr(t, ctx, task)
	require.True(t, proxmox.IsTaskFailed(err))
	require.Contains(t, err.Error(), "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout")

	task, err = vm.Start(ctx)
	require.NoError(t, err)
	wait(t, ctx, task) // the fault fired once

	srv.InjectFault(pvesim.Fault{FailTask: "qmclone", Message: "storage full", VMID: 102})
	tmpl, err := c.NodeRef("pve1").VirtualMachine(ctx, tmplID)
	require.NoError(t, err)
	_, task, err = tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{NewID: 102})
	require.NoError(t, err)
	err = waitErr(t, ctx, task)
	require.Contains(t, err.Error(), "clone failed: storage full")
	_, ok := srv.VM(102)
	require.False(t, ok, "a failed clone leaves no VM behind")
}

func TestRequestFaults(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{})
	ctx := ctxT(t)

	remove := srv.InjectFault(pvesim.Fault{
		Path: regexp.MustCompile(`^/nodes$`), Status: 596, Message: "Connection timed out"})
	_, err := c.Nodes(ctx)
	require.ErrorIs(t, err, proxmox.ErrNodeUnreachable)
	require.Equal(t, "596 Connection timed out", err.Error())
	remove()
	_, err = c.Nodes(ctx)
	require.NoError(t, err)

	tmpl, err := c.NodeRef("pve1").VirtualMachine(ctx, tmplID)
	require.NoError(t, err)
	// POSTs are not retried by net/http, so the dropped connection surfaces.
	srv.InjectFault(pvesim.Fault{
		Method: http.MethodPost, Path: regexp.MustCompile(`/clone$`), DropConn: true, Count: 1})
	_, _, err = tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{NewID: 150})
	require.Error(t, err)
	_, ok := srv.VM(150)
	require.False(t, ok, "the request was dropped before it was handled")

	srv.InjectFault(pvesim.Fault{Path: regexp.MustCompile(`/clone$`), DropResponse: true, Count: 1})
	_, _, err = tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{NewID: 150})
	require.Error(t, err, "the response was lost")
	_, ok = srv.VM(150)
	require.True(t, ok, "but the clone happened")

	srv.InjectFault(pvesim.Fault{NextIDTaken: true, Count: 1})
	cl, err := c.Cluster(ctx)
	require.NoError(t, err)
	id, err := cl.NextID(ctx)
	require.NoError(t, err)
	require.Equal(t, 150, id, "nextid handed out the VMID just taken")
	_, _, err = tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{NewID: id})
	require.ErrorContains(t, err, "unable to create VM 150: config file already exists")
}

// faultPattern records which of n requests a probabilistic fault failed.
func faultPattern(t *testing.T, seed int64, n int) string {
	t.Helper()
	srv, c := newSim(t, pvesim.Config{Seed: seed})
	srv.InjectFault(pvesim.Fault{
		Path: regexp.MustCompile(`^/version$`), Status: 503, Probability: 0.5})
	ctx := ctxT(t)
	var b strings.Builder
	for range n {
		if _, err := c.Version(ctx); err != nil {
			b.WriteByte('x')
		} else {
			b.WriteByte('.')
		}
	}
	return b.String()
}

func TestFaultDeterminism(t *testing.T) {
	a := faultPattern(t, 42, 24)
	b := faultPattern(t, 42, 24)
	other := faultPattern(t, 7, 24)
	require.Equal(t, a, b, "same seed, same failures")
	require.Contains(t, a, "x")
	require.Contains(t, a, ".")
	require.NotEqual(t, a, other, "another seed draws differently")
}

func TestNodeOfflineAndLatency(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{Nodes: []string{"pve1", "pve2"}})
	ctx := ctxT(t)
	require.NoError(t, srv.SetNodeOnline("pve2", false))
	_, err := c.NodeRef("pve2").VirtualMachines(ctx)
	require.ErrorIs(t, err, proxmox.ErrNodeUnreachable)
	nodes, err := c.Nodes(ctx)
	require.NoError(t, err)
	require.Equal(t, "offline", nodes[1].Status)
	require.Error(t, srv.SetNodeOnline("pve9", true))

	srv.InjectFault(pvesim.Fault{
		Path: regexp.MustCompile(`^/version$`), Latency: 20 * time.Millisecond, Count: 1})
	_, err = c.Version(ctx)
	require.NoError(t, err, "latency alone only delays")
}

func TestStaleLockQuorumAndApplyAnyway(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{Users: map[string]string{"root@pam": "pw"}})
	ctx := ctxT(t)
	vm := cloneVM(t, ctx, c, "pve1", 101)

	require.NoError(t, srv.SetLock(101, "backup"))
	require.Error(t, srv.SetLock(101, "bogus"))
	err := vm.ConfigSync(ctx, proxmox.VirtualMachineOption{Name: "cores", Value: 2})
	require.EqualError(t, err, "500 VM is locked (backup)")
	unlock := []proxmox.VirtualMachineOption{
		{Name: "delete", Value: "lock"}, {Name: "skiplock", Value: 1}}
	require.ErrorIs(t, vm.ConfigSync(ctx, unlock...), proxmox.ErrBadRequest,
		"a token may not skip locks")
	root := newClient(t, srv, password("pw"))
	require.NoError(t, root.NodeRef("pve1").VirtualMachineRef(101).ConfigSync(ctx, unlock...))
	info, _ := srv.VM(101)
	require.Empty(t, info.Lock)

	srv.SetQuorate(false)
	_, err = vm.Start(ctx)
	require.EqualError(t, err, "500 cluster not ready - no quorum?")
	require.NoError(t, vm.Ping(ctx), "reads work without quorum")
	srv.SetQuorate(true)

	srv.InjectFault(pvesim.Fault{
		FailTask: "qmstart", Message: "start failed: timeout", ApplyAnyway: true, Count: 1})
	task, err := vm.Start(ctx)
	require.NoError(t, err)
	require.ErrorContains(t, waitErr(t, ctx, task), "start failed: timeout")
	info, _ = srv.VM(101)
	require.Equal(t, "running", info.Status, "the task failed but the VM started")
}
