package proxmox_test

import (
	"context"
	"errors"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
	px "github.com/luthermonson/go-proxmox"
	"github.com/stretchr/testify/require"
)

var (
	clonePath  = regexp.MustCompile(`/qemu/\d+/clone$`)
	configPath = regexp.MustCompile(`/qemu/\d+/config$`)
	startPath  = regexp.MustCompile(`/status/start$`)
	statusPath = regexp.MustCompile(`/status/current$`)
)

// cloneTasks counts the clone tasks that finished OK.
func cloneTasks(srv *pvesim.Server) (ok, all int) {
	for _, tk := range srv.Tasks() {
		if tk.Type != "qmclone" {
			continue
		}
		all++
		if tk.ExitStatus == "OK" {
			ok++
		}
	}
	return ok, all
}

func TestForeignVMIDIsAConflict(t *testing.T) {
	srv := startSim(t, pvesim.Config{})
	ctx := testCtx(t)
	// Another tool's VM holds 130.
	foreign := rawClient(srv).NodeRef(srv.Nodes()[0]).VirtualMachineRef(templateID)
	_, task, err := foreign.Clone(ctx, &px.VirtualMachineCloneOptions{NewID: 130, Name: "theirs",
		Description: "owned by someone else"})
	require.NoError(t, err)
	require.NoError(t, task.Wait(ctx, 5*time.Millisecond, 10*time.Second))

	hv := newHV(t, srv, nil)
	_, err = hv.Provision(ctx, spec(130, agentlab.NetworkNAT))
	require.ErrorIs(t, err, agentlab.ErrVMIDConflict)
	require.ErrorIs(t, err, agentlab.ErrAlreadyExists)

	info, ok := srv.VM(130)
	require.True(t, ok)
	require.Equal(t, "owned by someone else", info.Description, "the foreign VM is untouched")
	require.Len(t, srv.VMs(), 2, "no second VM was created")
	okClones, _ := cloneTasks(srv)
	require.Equal(t, 1, okClones)
}

func TestCloneTransportErrorCreatesOneVM(t *testing.T) {
	tests := []struct {
		name  string
		fault pvesim.Fault
	}{
		{"response lost after the clone started", pvesim.Fault{Method: "POST", Path: clonePath,
			DropResponse: true, Count: 1}},
		{"connection dropped before the request ran", pvesim.Fault{Method: "POST", Path: clonePath,
			DropConn: true, Count: 1}},
		{"gateway error", pvesim.Fault{Method: "POST", Path: clonePath, Status: 503, Count: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startSim(t, pvesim.Config{TaskDelays: map[string]time.Duration{
				"qmclone": 50 * time.Millisecond}})
			srv.InjectFault(tt.fault)
			hv := newHV(t, srv, nil)
			vm, err := hv.Provision(testCtx(t), spec(140, agentlab.NetworkNAT))
			require.NoError(t, err)
			require.Equal(t, owner, vm.Owner)
			require.Equal(t, []int{140}, ownedVMs(t, srv))
			okClones, allClones := cloneTasks(srv)
			require.Equal(t, 1, okClones, "exactly one clone ran")
			require.Equal(t, 1, allClones, "the clone was never sent twice successfully")
		})
	}
}

func TestParallelProvisionUnderLockContention(t *testing.T) {
	srv := startSim(t, pvesim.Config{Seed: 7, LockWait: 20 * time.Millisecond,
		TaskDelays: map[string]time.Duration{"qmclone": 20 * time.Millisecond}})
	srv.InjectFault(pvesim.Fault{Method: "POST", Path: clonePath, LockTimeout: true,
		FailTask: "qmclone", Count: 3})
	srv.InjectFault(pvesim.Fault{Method: "POST", Path: clonePath, LockTimeout: true,
		FailTask: "qmclone", Probability: 0.3})
	srv.InjectFault(pvesim.Fault{Method: "POST", Path: configPath, Status: 500,
		Message: "VM is locked (clone)", Probability: 0.3})
	srv.InjectFault(pvesim.Fault{Method: "POST", Path: clonePath, Status: 500,
		Message:     "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout",
		Probability: 0.3})
	hv := newHV(t, srv, func(c *proxmox.Config) { c.CloneConcurrency = 3 })
	ctx := testCtx(t)

	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = hv.Provision(ctx, spec(300+i, agentlab.NetworkOff)) })
	}
	wg.Wait()

	ids := ownedVMs(t, srv) // every VM carries the marker
	seen := map[int]bool{}
	for _, id := range ids {
		require.False(t, seen[id])
		seen[id] = true
	}
	for i, err := range errs {
		id := 300 + i
		if err != nil {
			require.True(t, agentlab.IsRetryable(err), "vm %d failed uncleanly: %v", id, err)
			continue
		}
		require.True(t, seen[id], "vm %d was provisioned", id)
		st, err := hv.Status(ctx, id)
		require.NoError(t, err)
		require.Equal(t, owner, st.Owner)
	}
	okClones, allClones := cloneTasks(srv)
	require.Equal(t, len(ids), okClones, "no VMID was cloned twice")
	require.GreaterOrEqual(t, allClones-okClones, 3, "lock timeouts were injected")
}

func TestLockContentionGivesUpWithErrBusy(t *testing.T) {
	srv := startSim(t, pvesim.Config{})
	hv := newHV(t, srv, func(c *proxmox.Config) { c.RetryTimeout = 100 * time.Millisecond })
	ctx := testCtx(t)
	_, err := hv.Provision(ctx, spec(150, agentlab.NetworkNAT))
	require.NoError(t, err)
	remove := srv.InjectFault(pvesim.Fault{Method: "POST", Path: startPath, Status: 500,
		Message: "VM is locked (backup)"})
	err = hv.Start(ctx, 150)
	require.ErrorIs(t, err, agentlab.ErrBusy)
	require.Contains(t, err.Error(), "VM is locked (backup)")
	remove()
	require.NoError(t, hv.Start(ctx, 150))
}

func TestTransientReadsAreRetried(t *testing.T) {
	srv := startSim(t, pvesim.Config{})
	hv := newHV(t, srv, nil)
	ctx := testCtx(t)
	_, err := hv.Provision(ctx, spec(160, agentlab.NetworkNAT))
	require.NoError(t, err)
	srv.InjectFault(pvesim.Fault{Method: "GET", Path: statusPath, Status: 596,
		Message: "Connection timed out", Count: 2})
	srv.InjectFault(pvesim.Fault{Method: "GET", Path: statusPath, DropConn: true, Count: 1})
	st, err := hv.Status(ctx, 160)
	require.NoError(t, err)
	require.Equal(t, agentlab.PowerStopped, st.Power)
}

func TestFailedTaskCarriesText(t *testing.T) {
	srv := startSim(t, pvesim.Config{})
	hv := newHV(t, srv, nil)
	ctx := testCtx(t)
	_, err := hv.Provision(ctx, spec(170, agentlab.NetworkNAT))
	require.NoError(t, err)
	srv.InjectFault(pvesim.Fault{Path: startPath, FailTask: "qmstart",
		Message: "start failed: QEMU exited with code 1", Count: 1})
	err = hv.Start(ctx, 170)
	require.Error(t, err)
	require.Contains(t, err.Error(), "QEMU exited with code 1")
	var tfe *px.TaskFailedError
	require.True(t, errors.As(err, &tfe))
	require.False(t, agentlab.IsRetryable(err))
}

// TestTaskWarningsAreSuccess: a task that ends "WARNINGS: n" did its work,
// and PVE counts it a success; so does the backend.
func TestTaskWarningsAreSuccess(t *testing.T) {
	srv := startSim(t, pvesim.Config{})
	hv := newHV(t, srv, nil)
	ctx := testCtx(t)
	_, err := hv.Provision(ctx, spec(175, agentlab.NetworkNAT))
	require.NoError(t, err)
	srv.InjectFault(pvesim.Fault{Path: startPath, FailTask: "qmstart",
		Message: "WARNINGS: 2", ApplyAnyway: true, Count: 1})
	require.NoError(t, hv.Start(ctx, 175))
	var warned bool
	for _, tk := range srv.Tasks() {
		warned = warned || (tk.Type == "qmstart" && tk.ExitStatus == "WARNINGS: 2")
	}
	require.True(t, warned, "the start task ended with warnings")
	st, err := hv.Status(ctx, 175)
	require.NoError(t, err)
	require.Equal(t, agentlab.PowerRunning, st.Power)
}

func TestGuestAgentNotReady(t *testing.T) {
	srv := startSim(t, pvesim.Config{AgentDelay: time.Hour})
	hv := newHV(t, srv, nil)
	ctx := testCtx(t)
	_, err := hv.Provision(ctx, spec(180, agentlab.NetworkNAT))
	require.NoError(t, err)
	require.NoError(t, hv.Start(ctx, 180))
	_, err = hv.GuestInfo(ctx, 180)
	require.ErrorIs(t, err, agentlab.ErrNotReady)
	require.True(t, agentlab.IsRetryable(err))
}

func TestNetworkModes(t *testing.T) {
	tests := []struct {
		mode       agentlab.NetworkMode
		in, out    string
		rules      int
		dropsLocal bool
	}{
		{agentlab.NetworkOff, "DROP", "DROP", 1, false},
		{agentlab.NetworkNAT, "DROP", "ACCEPT", 7, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			srv := startSim(t, pvesim.Config{})
			ctx := testCtx(t)
			// The template's own firewall rule must not survive the clone.
			tmpl := rawClient(srv).NodeRef(srv.Nodes()[0]).VirtualMachineRef(templateID)
			require.NoError(t, tmpl.NewFirewallRule(ctx, &px.FirewallRule{Type: "out",
				Action: "ACCEPT", Enable: 1, Comment: "template allows all"}))
			hv := newHV(t, srv, nil)
			vm, err := hv.Provision(ctx, spec(190, tt.mode))
			require.NoError(t, err)
			require.Len(t, vm.Warnings, 1, "the datacenter firewall is off")
			require.Contains(t, vm.Warnings[0], "datacenter firewall is disabled")

			info, _ := srv.VM(190)
			fw := info.Firewall
			require.Equal(t, tt.in, fw.Options["policy_in"])
			require.Equal(t, tt.out, fw.Options["policy_out"])
			require.Len(t, fw.Rules, tt.rules)
			for _, r := range fw.Rules {
				require.NotEqual(t, "template allows all", r.Comment)
			}
			require.Empty(t, fw.IPSets[proxmox.AllowIPSet])
			if tt.dropsLocal {
				require.Equal(t, "10.0.0.0/8", fw.Rules[1].Dest)
				require.Equal(t, "DROP", fw.Rules[1].Action)
			}
		})
	}
}

func TestPlacement(t *testing.T) {
	const sharedTmpl = 9100
	newSim := func(t *testing.T) *pvesim.Server {
		srv := startSim(t, pvesim.Config{Nodes: []string{"pve1", "pve2", "pve3"}})
		require.NoError(t, srv.AddTemplate("pve1", sharedTmpl, "shared-tmpl", map[string]string{
			"scsi0": "shared:base-9100-disk-0,size=8G", "ide2": "shared:vm-9100-cloudinit,media=cdrom"}))
		return srv
	}
	t.Run("local template stays on its node", func(t *testing.T) {
		srv := newSim(t)
		hv := newHV(t, srv, nil)
		vm, err := hv.Provision(testCtx(t), spec(401, agentlab.NetworkNAT))
		require.NoError(t, err)
		require.Equal(t, "pve1", vm.Node)
	})
	t.Run("shared template goes to an allowed online node", func(t *testing.T) {
		srv := newSim(t)
		require.NoError(t, srv.SetNodeOnline("pve3", false))
		hv := newHV(t, srv, func(c *proxmox.Config) { c.Nodes = []string{"pve2", "pve3"} })
		sp := spec(402, agentlab.NetworkNAT)
		sp.Template = sharedTmpl
		vm, err := hv.Provision(testCtx(t), sp)
		require.NoError(t, err)
		require.Equal(t, "pve2", vm.Node)
		info, _ := srv.VM(402)
		require.Equal(t, "pve2", info.Node)
		require.NoError(t, hv.Start(testCtx(t), 402))
		require.NoError(t, hv.Destroy(testCtx(t), 402))
	})
	t.Run("explicit node for a local template fails cleanly", func(t *testing.T) {
		srv := newSim(t)
		hv := newHV(t, srv, nil)
		sp := spec(403, agentlab.NetworkNAT)
		sp.Node = "pve2"
		_, err := hv.Provision(testCtx(t), sp)
		require.ErrorContains(t, err, "local storage")
		_, ok := srv.VM(403)
		require.False(t, ok)
	})
	t.Run("node outside Config.Nodes is refused", func(t *testing.T) {
		srv := newSim(t)
		hv := newHV(t, srv, func(c *proxmox.Config) { c.Nodes = []string{"pve2"} })
		_, err := hv.Provision(testCtx(t), spec(404, agentlab.NetworkNAT))
		require.ErrorIs(t, err, agentlab.ErrInvalidArgument)
	})
}

func TestListConfirmsMarker(t *testing.T) {
	srv := startSim(t, pvesim.Config{})
	ctx := testCtx(t)
	hv := newHV(t, srv, nil)
	for _, id := range []int{501, 502} {
		_, err := hv.Provision(ctx, spec(id, agentlab.NetworkNAT))
		require.NoError(t, err)
	}
	// 502 keeps our tags but its description now names another owner.
	vm := rawClient(srv).NodeRef("pve1").VirtualMachineRef(502)
	task, err := vm.Config(ctx, px.VirtualMachineOption{Name: "description",
		Value: "agentlab-owner: intruder\n"})
	require.NoError(t, err)
	require.NoError(t, task.Wait(ctx, 5*time.Millisecond, 10*time.Second))

	list, err := hv.List(ctx, owner)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, 501, list[0].VMID)
	require.Equal(t, owner, list[0].Owner)
	other, err := hv.List(ctx, "intruder")
	require.NoError(t, err)
	require.Empty(t, other, "the intruder has no owner tag")
}

func TestStopWithTimeoutShutsDown(t *testing.T) {
	srv := startSim(t, pvesim.Config{})
	hv := newHV(t, srv, nil)
	ctx := testCtx(t)
	_, err := hv.Provision(ctx, spec(510, agentlab.NetworkNAT))
	require.NoError(t, err)
	require.NoError(t, hv.Start(ctx, 510))
	require.NoError(t, hv.Stop(ctx, 510, agentlab.StopOptions{Timeout: 3 * time.Second}))
	var types []string
	for _, tk := range srv.Tasks() {
		types = append(types, tk.Type)
	}
	require.Contains(t, types, "qmshutdown")
	st, err := hv.Status(ctx, 510)
	require.NoError(t, err)
	require.Equal(t, agentlab.PowerStopped, st.Power)
}

func TestLostResponsesAreReconciled(t *testing.T) {
	tests := []struct {
		name   string
		method string
		path   *regexp.Regexp
		op     func(ctx context.Context, hv *proxmox.Hypervisor) error
		check  func(t *testing.T, srv *pvesim.Server)
	}{
		{"snapshot", "POST", regexp.MustCompile(`/snapshot$`),
			func(ctx context.Context, hv *proxmox.Hypervisor) error {
				return hv.Snapshot(ctx, 520, agentlab.SnapshotSpec{Name: "once"})
			},
			func(t *testing.T, srv *pvesim.Server) {
				info, _ := srv.VM(520)
				require.Len(t, info.Snapshots, 1)
			}},
		{"delete snapshot", "DELETE", regexp.MustCompile(`/snapshot/base$`),
			func(ctx context.Context, hv *proxmox.Hypervisor) error {
				return hv.DeleteSnapshot(ctx, 520, "base")
			},
			func(t *testing.T, srv *pvesim.Server) {
				info, _ := srv.VM(520)
				require.Empty(t, info.Snapshots)
			}},
		{"destroy", "DELETE", regexp.MustCompile(`/qemu/520$`),
			func(ctx context.Context, hv *proxmox.Hypervisor) error { return hv.Destroy(ctx, 520) },
			func(t *testing.T, srv *pvesim.Server) {
				_, ok := srv.VM(520)
				require.False(t, ok)
			}},
		{"start", "POST", startPath,
			func(ctx context.Context, hv *proxmox.Hypervisor) error { return hv.Start(ctx, 520) },
			func(t *testing.T, srv *pvesim.Server) {
				info, _ := srv.VM(520)
				require.Equal(t, "running", info.Status)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startSim(t, pvesim.Config{})
			hv := newHV(t, srv, nil)
			ctx := testCtx(t)
			_, err := hv.Provision(ctx, spec(520, agentlab.NetworkNAT))
			require.NoError(t, err)
			if tt.name == "delete snapshot" {
				require.NoError(t, hv.Snapshot(ctx, 520, agentlab.SnapshotSpec{Name: "base"}))
			}
			srv.InjectFault(pvesim.Fault{Method: tt.method, Path: tt.path,
				DropResponse: true, Count: 1})
			require.NoError(t, tt.op(ctx, hv))
			tt.check(t, srv)
		})
	}
}

// TestDestroyFailingOnStorageKeepsTheVM: a delete that fails because the
// VM's storage is gone ("storage 'x' does not exist") has not destroyed the
// VM; Destroy must say so instead of reporting success.
func TestDestroyFailingOnStorageKeepsTheVM(t *testing.T) {
	srv := startSim(t, pvesim.Config{})
	hv := newHV(t, srv, nil)
	ctx := testCtx(t)
	_, err := hv.Provision(ctx, spec(176, agentlab.NetworkNAT))
	require.NoError(t, err)
	srv.InjectFault(pvesim.Fault{Method: "DELETE", VMID: 176, FailTask: "qmdestroy",
		Message: "storage 'local-lvm' does not exist"})
	err = hv.Destroy(ctx, 176)
	require.Error(t, err)
	require.NotErrorIs(t, err, agentlab.ErrNotFound)
	require.Contains(t, err.Error(), "storage 'local-lvm' does not exist")
	_, err = hv.Status(ctx, 176)
	require.NoError(t, err, "the VM is still there")
}
