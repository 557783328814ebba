package pvesim_test

import (
	"context"
	"errors"
	"testing"
	"time"

	proxmox "github.com/luthermonson/go-proxmox"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
)

// sshGuest connects to a guest through the simulator's dialer, pinning the
// host key the guest agent reports.
func sshGuest(
	t *testing.T, ctx context.Context, srv *pvesim.Server, vm *proxmox.VirtualMachine,
	user string, key ssh.Signer,
) *ssh.Client {
	t.Helper()
	ifaces, err := vm.AgentGetNetworkIFaces(ctx)
	require.NoError(t, err)
	addr := ifaces[0].IPAddresses[0].IPAddress + ":22"
	fr, err := vm.AgentFileRead(ctx, "/etc/ssh/ssh_host_ed25519_key.pub")
	require.NoError(t, err)
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(fr.Content))
	require.NoError(t, err)

	conn, err := srv.Dialer()(ctx, "tcp", addr)
	require.NoError(t, err)
	cfg := &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(hostKey), Timeout: 10 * time.Second}
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	require.NoError(t, err)
	client := ssh.NewClient(sc, chans, reqs)
	t.Cleanup(func() { _ = client.Close() })
	return client
}

func run(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	sess, err := c.NewSession()
	require.NoError(t, err)
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	require.NoError(t, err, "run %q: %s", cmd, out)
	return string(out)
}

func TestGuestSSHSnapshotRollback(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{})
	ctx := ctxT(t)
	vm := cloneVM(t, ctx, c, "pve1", 101)
	key, pub := newKey(t)
	require.NoError(t, vm.ConfigSync(ctx,
		proxmox.VirtualMachineOption{Name: "ciuser", Value: "agent"},
		proxmox.VirtualMachineOption{Name: "sshkeys", Value: proxmox.EncodeSSHKeys(pub)}))
	startVM(t, ctx, vm)

	client := sshGuest(t, ctx, srv, vm, "agent", key)
	run(t, client, "echo before > state.txt")
	task, err := vm.NewSnapshot(ctx, "s1")
	require.NoError(t, err)
	wait(t, ctx, task)
	run(t, client, "echo after > state.txt && touch extra.txt")
	require.Equal(t, "after\n", run(t, client, "cat state.txt"))

	fr, err := vm.AgentFileRead(ctx, "/home/agent/state.txt")
	require.NoError(t, err)
	require.Equal(t, "after\n", fr.Content)

	task, err = vm.Snapshot("s1").Rollback(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)
	_, err = client.NewSession()
	require.Error(t, err, "rollback stopped the VM and dropped the connection")
	info, _ := srv.VM(101)
	_, err = srv.Dialer()(ctx, "tcp", info.GuestIP.String()+":22")
	require.Error(t, err, "a stopped guest refuses connections")

	startVM(t, ctx, vm)
	client = sshGuest(t, ctx, srv, vm, "agent", key)
	require.Equal(t, "before\n", run(t, client, "cat state.txt"))
	require.Equal(t, "gone\n", run(t, client, "test -e extra.txt || echo gone"))
}

func TestGuestPauseAndJumpHost(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{})
	ctx := ctxT(t)
	vm := cloneVM(t, ctx, c, "pve1", 101)
	key, pub := newKey(t)
	require.NoError(t, vm.ConfigSync(ctx,
		proxmox.VirtualMachineOption{Name: "ciuser", Value: "agent"},
		proxmox.VirtualMachineOption{Name: "sshkeys", Value: proxmox.EncodeSSHKeys(pub)}))
	startVM(t, ctx, vm)
	info, _ := srv.VM(101)

	jumpAddr, jumpKey, jumpUser := srv.JumpHost()
	jump, err := ssh.Dial("tcp", jumpAddr, &ssh.ClientConfig{User: jumpUser,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: ssh.FixedHostKey(jumpKey)})
	require.NoError(t, err)
	defer jump.Close()
	addr := info.GuestIP.String() + ":22"
	conn, err := jump.Dial("tcp", addr)
	require.NoError(t, err)
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{User: "agent",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: ssh.FixedHostKey(info.HostKey)})
	require.NoError(t, err)
	guest := ssh.NewClient(sc, chans, reqs)
	defer guest.Close()
	require.Equal(t, "ok\n", run(t, guest, "echo ok"))

	task, err := vm.Pause(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)
	_, err = jump.Dial("tcp", addr)
	require.Error(t, err, "a paused guest does not answer")
	require.Error(t, guest.Wait(), "pausing dropped the guest connection")
}

func TestPauseAndAgentDelay(t *testing.T) {
	_, c := newSim(t, pvesim.Config{AgentDelay: time.Hour})
	ctx := ctxT(t)
	vm := cloneVM(t, ctx, c, "pve1", 101)
	_, err := vm.AgentGetNetworkIFaces(ctx)
	require.ErrorContains(t, err, "VM 101 is not running")

	task, err := vm.Start(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)
	_, err = vm.AgentGetNetworkIFaces(ctx)
	require.ErrorContains(t, err, "QEMU guest agent is not running")

	task, err = vm.Pause(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)
	require.Contains(t, string(task.UPID), ":qmpause:")
	require.NoError(t, vm.Ping(ctx))
	require.True(t, vm.IsPaused())
	_, err = vm.Shutdown(ctx)
	require.ErrorContains(t, err, "VM is paused - cannot shutdown")

	task, err = vm.Resume(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)
	require.NoError(t, vm.Ping(ctx))
	require.True(t, vm.IsRunning())

	_, err = vm.Delete(ctx, &proxmox.VirtualMachineDeleteOptions{Purge: true})
	require.ErrorContains(t, err, "VM 101 is running - destroy failed")
	_, err = vm.Delete(ctx, &proxmox.VirtualMachineDeleteOptions{SkipLock: true})
	require.True(t, errors.Is(err, proxmox.ErrBadRequest), "skiplock is root@pam only: %v", err)
}

func TestAgentExec(t *testing.T) {
	_, c := newSim(t, pvesim.Config{})
	ctx := ctxT(t)
	vm := cloneVM(t, ctx, c, "pve1", 101)
	startVM(t, ctx, vm)
	pid, err := vm.AgentExec(ctx, []string{"/bin/sh", "-c", "echo hi; echo oops >&2; exit 3"}, "")
	require.NoError(t, err)
	st, err := vm.WaitForAgentExecExit(ctx, pid, 10)
	require.NoError(t, err)
	require.Equal(t, 3, st.ExitCode)
	require.Equal(t, "hi\n", st.OutData)
	require.Equal(t, "oops\n", st.ErrData)
}
