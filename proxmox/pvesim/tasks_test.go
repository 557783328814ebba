package pvesim_test

import (
	"context"
	"strings"
	"testing"
	"time"

	proxmox "github.com/luthermonson/go-proxmox"
	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
)

func TestLockedVM(t *testing.T) {
	_, c := newSim(t, pvesim.Config{TaskDelays: map[string]time.Duration{"qmsnapshot": time.Hour}})
	ctx := ctxT(t)
	vm := cloneVM(t, ctx, c, "pve1", 101)

	snapTask, err := vm.NewSnapshot(ctx, "s1")
	require.NoError(t, err)
	err = vm.ConfigSync(ctx, proxmox.VirtualMachineOption{Name: "cores", Value: 2})
	require.Error(t, err)
	require.Equal(t, "500 VM is locked (snapshot)", err.Error())

	startTask, err := vm.Start(ctx)
	require.NoError(t, err, "start checks the lock inside its task")
	err = waitErr(t, ctx, startTask)
	require.True(t, proxmox.IsTaskFailed(err), "%v", err)
	require.Contains(t, err.Error(), "VM is locked (snapshot)")

	require.NoError(t, snapTask.Stop(ctx))
	require.ErrorContains(t, waitErr(t, ctx, snapTask), "received interrupt")
	require.NoError(t, vm.ConfigSync(ctx, proxmox.VirtualMachineOption{Name: "cores", Value: 2}),
		"the stopped task released the lock")
}

func TestLockFileWait(t *testing.T) {
	_, c := newSim(t, pvesim.Config{
		LockWait:   20 * time.Millisecond,
		TaskDelays: map[string]time.Duration{"qmstart": time.Hour},
	})
	ctx := ctxT(t)
	vm := cloneVM(t, ctx, c, "pve1", 101)
	first, err := vm.Start(ctx)
	require.NoError(t, err)
	second, err := vm.Stop(ctx)
	require.NoError(t, err)
	err = waitErr(t, ctx, second)
	require.ErrorContains(t, err, "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout")
	require.NoError(t, first.Stop(ctx))
	require.ErrorContains(t, waitErr(t, ctx, first), "received interrupt")
}

func TestTaskEndpoints(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{})
	ctx := ctxT(t)
	vm := cloneVM(t, ctx, c, "pve1", 101)
	task, err := vm.Start(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)
	require.Equal(t, "OK", task.ExitStatus)
	require.Equal(t, "qmstart", task.Type)
	require.Equal(t, "101", task.ID)
	require.Equal(t, "root@pam", task.User, "status reports the user; the token is separate")
	require.True(t, strings.HasSuffix(string(task.UPID), ":"+srv.TokenID()+":"),
		"the UPID names the token")

	log, err := task.Log(ctx, 0, 50)
	require.NoError(t, err)
	require.Equal(t, "TASK OK", log[len(log)-1])

	tasks, err := c.NodeRef("pve1").Tasks(ctx, &proxmox.NodeTasksOptions{VMID: 101})
	require.NoError(t, err)
	require.Len(t, tasks, 1)
	require.Equal(t, "qmstart", tasks[0].Type)
	require.Len(t, srv.Tasks(), 2)

	const unknown = "UPID:pve1:00000001:00000001:00000001:qmstart:1:root@pam:"
	err = c.Get(ctx, "/nodes/pve1/tasks/"+unknown+"/status", nil)
	require.ErrorIs(t, err, proxmox.ErrNotFound, "no such task")
}

func TestTaskStop(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{TaskDelays: map[string]time.Duration{"qmclone": time.Minute}})
	ctx := ctxT(t)
	tmpl, err := c.NodeRef("pve1").VirtualMachine(ctx, tmplID)
	require.NoError(t, err)
	_, task, err := tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{NewID: 160})
	require.NoError(t, err)
	info, ok := srv.VM(160)
	require.True(t, ok)
	require.Equal(t, "clone", info.Lock, "the new VM is locked while the clone runs")

	require.NoError(t, task.Stop(ctx))
	require.ErrorContains(t, waitErr(t, ctx, task), "received interrupt")
	_, ok = srv.VM(160)
	require.False(t, ok, "a stopped clone leaves no VM behind")
}

func TestShutdownTimeoutAndHibernate(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{
		TaskDelays: map[string]time.Duration{"qmshutdown": 2 * time.Second}})
	ctx := ctxT(t)
	vm := cloneVM(t, ctx, c, "pve1", 101)
	startVM(t, ctx, vm)

	var upid proxmox.UPID
	require.NoError(t, c.Post(ctx, "/nodes/pve1/qemu/101/status/shutdown",
		map[string]any{"timeout": 0}, &upid))
	err := waitErr(t, ctx, proxmox.NewTask(upid, c))
	require.ErrorContains(t, err, "VM quit/powerdown failed - got timeout")
	require.NoError(t, c.Post(ctx, "/nodes/pve1/qemu/101/status/shutdown",
		map[string]any{"timeout": 0, "forceStop": 1}, &upid))
	wait(t, ctx, proxmox.NewTask(upid, c))
	info, _ := srv.VM(101)
	require.Equal(t, "stopped", info.Status)

	startVM(t, ctx, vm)
	task, err := vm.Hibernate(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)
	require.NoError(t, vm.Ping(ctx))
	require.True(t, vm.IsHibernated())
	require.Contains(t, string(task.UPID), ":qmsuspend:")
	task, err = vm.Resume(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)
	require.NoError(t, vm.Ping(ctx))
	require.True(t, vm.IsRunning())
	require.Empty(t, vm.Lock)
}

func TestRollbackWithRAMKeepsRunning(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{})
	ctx := ctxT(t)
	vm := cloneVM(t, ctx, c, "pve1", 101)
	task, err := vm.Start(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)

	var upid proxmox.UPID
	require.NoError(t, c.Post(ctx, "/nodes/pve1/qemu/101/snapshot",
		map[string]any{"snapname": "live", "vmstate": 1}, &upid))
	wait(t, ctx, proxmox.NewTask(upid, c))
	task, err = vm.Stop(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)

	task, err = vm.Snapshot("live").Rollback(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)
	info, _ := srv.VM(101)
	require.Equal(t, "running", info.Status)
	require.Equal(t, "live", info.Parent)
	require.True(t, info.Snapshots[0].VMState)

	task, err = vm.NewSnapshot(ctx, "disk")
	require.NoError(t, err)
	wait(t, ctx, task)
	require.NoError(t, c.Post(ctx, "/nodes/pve1/qemu/101/snapshot/disk/rollback",
		map[string]any{"start": 1}, &upid))
	wait(t, ctx, proxmox.NewTask(upid, c))
	info, _ = srv.VM(101)
	require.Equal(t, "running", info.Status, "start=1 boots the VM after a disk-only rollback")
	require.False(t, info.Snapshots[1].VMState)
}

// TestConcurrentLifecycles runs several clone/start/snapshot/destroy cycles
// at once, for the race detector and for lock ordering.
func TestConcurrentLifecycles(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{Nodes: []string{"pve1", "pve2"},
		DefaultTaskDelay: 2 * time.Millisecond})
	ctx := ctxT(t)
	const n = 6
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- lifecycle(ctx, c, 200+i) }()
	}
	for range n {
		require.NoError(t, <-errs)
	}
	require.Len(t, srv.VMs(), 1, "only the template is left")
}

func lifecycle(ctx context.Context, c *proxmox.Client, id int) error {
	node := c.NodeRef("pve1")
	tmpl, err := node.VirtualMachine(ctx, tmplID)
	if err != nil {
		return err
	}
	_, task, err := tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{NewID: id})
	if err != nil {
		return err
	}
	steps := []func(vm *proxmox.VirtualMachine) (*proxmox.Task, error){
		func(*proxmox.VirtualMachine) (*proxmox.Task, error) { return task, nil },
		func(vm *proxmox.VirtualMachine) (*proxmox.Task, error) { return vm.Start(ctx) },
		func(vm *proxmox.VirtualMachine) (*proxmox.Task, error) { return vm.NewSnapshot(ctx, "s1") },
		func(vm *proxmox.VirtualMachine) (*proxmox.Task, error) { return vm.Stop(ctx) },
		func(vm *proxmox.VirtualMachine) (*proxmox.Task, error) { return vm.Snapshot("s1").Rollback(ctx) },
		func(vm *proxmox.VirtualMachine) (*proxmox.Task, error) {
			return vm.Delete(ctx, &proxmox.VirtualMachineDeleteOptions{Purge: true})
		},
	}
	vm := node.VirtualMachineRef(id)
	for _, step := range steps {
		task, err := step(vm)
		if err != nil {
			return err
		}
		if err := task.Wait(ctx, 2*time.Millisecond, 10*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func TestActionsOnStoppedVM(t *testing.T) {
	_, c := newSim(t, pvesim.Config{})
	ctx := ctxT(t)
	vm := cloneVM(t, ctx, c, "pve1", 101)
	tests := []struct {
		name string
		call func() (*proxmox.Task, error)
	}{
		{"reboot", func() (*proxmox.Task, error) { return vm.Reboot(ctx) }},
		{"reset", func() (*proxmox.Task, error) { return vm.Reset(ctx) }},
		{"pause", func() (*proxmox.Task, error) { return vm.Pause(ctx) }},
		{"hibernate", func() (*proxmox.Task, error) { return vm.Hibernate(ctx) }},
		{"resume", func() (*proxmox.Task, error) { return vm.Resume(ctx) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.call()
			require.EqualError(t, err, "500 VM 101 not running", "a sync error, no task")
		})
	}
	for _, call := range []func(context.Context) (*proxmox.Task, error){vm.Stop, vm.Shutdown} {
		task, err := call(ctx)
		require.NoError(t, err)
		wait(t, ctx, task) // stop and shutdown of a stopped VM are no-ops
	}
}

func TestStartResumesHibernatedVM(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{})
	ctx := ctxT(t)
	vm := cloneVM(t, ctx, c, "pve1", 101)
	startVM(t, ctx, vm)
	task, err := vm.Hibernate(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)
	info, _ := srv.VM(101)
	require.True(t, info.Hibernated)
	require.Equal(t, "suspended", info.Lock)
	require.NotEmpty(t, info.Config["vmstate"])

	startVM(t, ctx, vm)
	info, _ = srv.VM(101)
	require.Equal(t, "running", info.Status)
	require.Empty(t, info.Lock)
	require.Empty(t, info.Config["vmstate"])
}
