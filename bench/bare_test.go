package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	px "github.com/luthermonson/go-proxmox"
	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab/proxmox"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
)

// bareClient is the baseline: the fewest go-proxmox calls and one
// x/crypto/ssh handshake that leave a VM in the same state as the SDK's
// operations, with what a hand-written client would know beforehand (the
// template's node and config, the VM's node, its power state). It keeps no
// records, emits no events and checks nothing it does not need to.
type bareClient struct {
	c      *px.Client
	node   string
	jump   *ssh.Client // one connection to the jump host, like sshx's
	signer ssh.Signer
	pubKey string
	cidr   netip.Prefix
}

// bareVM is what the bare client knows about a VM it created.
type bareVM struct {
	vm      *px.VirtualMachine
	ip      string
	hostKey ssh.PublicKey
}

// natRules are the firewall rules of the nat network mode, top to bottom,
// as the SDK writes them.
var natRules = []px.FirewallRule{
	{Type: "in", Action: "ACCEPT", Proto: "tcp", Dport: "22", Enable: 1, Comment: "agentlab: ssh"},
	privateDrop("10.0.0.0/8"), privateDrop("172.16.0.0/12"), privateDrop("192.168.0.0/16"),
	privateDrop("169.254.0.0/16"), privateDrop("fc00::/7"), privateDrop("fe80::/10"),
}

func privateDrop(cidr string) px.FirewallRule {
	return px.FirewallRule{Type: "out", Action: "DROP", Dest: cidr, Enable: 1,
		Comment: "agentlab: private range"}
}

// newBareClient connects a go-proxmox client and an SSH client to the jump
// host of w's simulator, with w's key.
func newBareClient(tb testing.TB, w *world) *bareClient {
	tb.Helper()
	c := px.NewClient(w.sim.URL(), px.WithHTTPClient(w.sim.Client()),
		px.WithAPIToken(w.sim.TokenID(), w.sim.TokenSecret()))
	addr, jumpKey, jumpUser := w.sim.JumpHost()
	jump, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: jumpUser,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(w.signer)}, HostKeyCallback: ssh.FixedHostKey(jumpKey)})
	check(tb, err)
	tb.Cleanup(func() { _ = jump.Close() })
	return &bareClient{c: c, node: w.sim.Nodes()[0], jump: jump, signer: w.signer,
		pubKey: strings.TrimSpace(w.pubKey), cidr: netip.MustParsePrefix(guestCIDR)}
}

// wait waits for a task with the same poll interval as the SDK.
func wait(ctx context.Context, t *px.Task, err error) error {
	if err != nil {
		return err
	}
	return t.Wait(ctx, pollInterval, time.Minute)
}

// create clones the template, configures cloud-init and tags, sets the nat
// firewall, starts the VM, reads its address and host key from the guest
// agent and runs `true` over SSH. The template's net0 already has
// firewall=1 and the agent on, so neither is sent again.
func (b *bareClient) create(ctx context.Context, vmid int) (*bareVM, error) {
	name := fmt.Sprintf("bare-%d", vmid)
	_, task, err := b.c.NodeRef(b.node).VirtualMachineRef(templateVMID).Clone(ctx,
		&px.VirtualMachineCloneOptions{NewID: vmid, Name: name,
			Description: "agentlab-owner: " + owner + "\nagentlab-sandbox: " + name + "\n"})
	if err := wait(ctx, task, err); err != nil {
		return nil, fmt.Errorf("clone: %w", err)
	}
	v := &bareVM{vm: b.c.NodeRef(b.node).VirtualMachineRef(vmid)}
	task, err = v.vm.Config(ctx,
		px.VirtualMachineOption{Name: "tags", Value: "agentlab;" + proxmox.OwnerTag(owner)},
		px.VirtualMachineOption{Name: "ciuser", Value: "agent"},
		px.VirtualMachineOption{Name: "sshkeys", Value: px.EncodeSSHKeys(b.pubKey)})
	if err := wait(ctx, task, err); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := b.firewall(ctx, v.vm); err != nil {
		return nil, err
	}
	return v, b.boot(ctx, v, true)
}

// firewall writes the nat mode's options and rules (PVE inserts each rule
// at the top, so they are written bottom up).
func (b *bareClient) firewall(ctx context.Context, vm *px.VirtualMachine) error {
	err := vm.FirewallOptionSet(ctx, &px.FirewallVirtualMachineOption{Enable: true,
		Dhcp: true, PolicyIn: "DROP", PolicyOut: "ACCEPT"})
	if err != nil {
		return fmt.Errorf("firewall options: %w", err)
	}
	for i := len(natRules) - 1; i >= 0; i-- {
		r := natRules[i]
		if err := vm.NewFirewallRule(ctx, &r); err != nil {
			return fmt.Errorf("firewall rule: %w", err)
		}
	}
	return nil
}

// boot starts the VM, waits for its address (and, when readKey, reads its
// host key) and proves SSH with `true`.
func (b *bareClient) boot(ctx context.Context, v *bareVM, readKey bool) error {
	task, err := v.vm.Start(ctx)
	if err := wait(ctx, task, err); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	if err := b.awaitIP(ctx, v); err != nil {
		return err
	}
	if readKey {
		f, err := v.vm.AgentFileRead(ctx, "/etc/ssh/ssh_host_ed25519_key.pub")
		if err != nil {
			return fmt.Errorf("read host key: %w", err)
		}
		if v.hostKey, _, _, _, err = ssh.ParseAuthorizedKey([]byte(f.Content)); err != nil {
			return fmt.Errorf("parse host key: %w", err)
		}
	}
	return b.sshTrue(v)
}

// awaitIP polls the guest agent until it reports an address in the guest
// network.
func (b *bareClient) awaitIP(ctx context.Context, v *bareVM) error {
	for {
		ifaces, last := v.vm.AgentGetNetworkIFaces(ctx)
		if last == nil {
			if ip := pickIP(ifaces, b.cidr); ip != "" {
				v.ip = ip
				return nil
			}
		}
		if err := sleepCtx(ctx, pollInterval); err != nil {
			return fmt.Errorf("wait for guest address: %w (last error: %v)", err, last)
		}
	}
}

func pickIP(ifaces []*px.AgentNetworkIface, cidr netip.Prefix) string {
	for _, iface := range ifaces {
		for _, a := range iface.IPAddresses {
			if ip, err := netip.ParseAddr(a.IPAddress); err == nil && cidr.Contains(ip) {
				return ip.String()
			}
		}
	}
	return ""
}

// sshTrue opens a connection to the guest through the jump host, runs
// `true` and closes it.
func (b *bareClient) sshTrue(v *bareVM) error {
	addr := net.JoinHostPort(v.ip, "22")
	nc, err := b.jump.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("dial guest: %w", err)
	}
	cc, chans, reqs, err := ssh.NewClientConn(nc, addr, &ssh.ClientConfig{User: "agent",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(b.signer)}, HostKeyCallback: ssh.FixedHostKey(v.hostKey)})
	if err != nil {
		nc.Close()
		return fmt.Errorf("ssh handshake: %w", err)
	}
	client := ssh.NewClient(cc, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return fmt.Errorf("ssh session: %w", err)
	}
	defer sess.Close()
	return sess.Run("true")
}

// pause suspends the VM in memory.
func (b *bareClient) pause(ctx context.Context, v *bareVM) error {
	task, err := v.vm.Pause(ctx)
	return wait(ctx, task, err)
}

// resume continues it.
func (b *bareClient) resume(ctx context.Context, v *bareVM) error {
	task, err := v.vm.Resume(ctx)
	return wait(ctx, task, err)
}

// snapshot takes a disk-only snapshot.
func (b *bareClient) snapshot(ctx context.Context, v *bareVM, name string) error {
	task, err := v.vm.NewSnapshot(ctx, name)
	return wait(ctx, task, err)
}

// restore rolls back to a disk-only snapshot (which leaves the VM stopped)
// and boots it again, as far as SSH answering; the host key is known.
func (b *bareClient) restore(ctx context.Context, v *bareVM, name string) error {
	task, err := v.vm.Snapshot(name).Rollback(ctx)
	if err := wait(ctx, task, err); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	return b.boot(ctx, v, false)
}

// destroy powers the running VM off and deletes it with its disks.
func (b *bareClient) destroy(ctx context.Context, v *bareVM) error {
	task, err := v.vm.Stop(ctx)
	if err := wait(ctx, task, err); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	var upid px.UPID
	path := fmt.Sprintf("/nodes/%s/qemu/%d", b.node, v.vm.VMID)
	err = b.c.DeleteWithParams(ctx, path,
		map[string]int{"purge": 1, "destroy-unreferenced-disks": 1}, &upid)
	return wait(ctx, px.NewTask(upid, b.c), err)
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// vmState is the part of a VM's simulated state both paths must agree on.
type vmState struct {
	Status, Tags, CIUser, SSHKeys, Net0Firewall string
	FWOptions                                   map[string]string
	Rules                                       []string
}

// stateOf reads vmState from the simulator.
func stateOf(sim *pvesim.Server, vmid int) (vmState, bool) {
	info, ok := sim.VM(vmid)
	if !ok {
		return vmState{}, false
	}
	st := vmState{Status: info.QMPStatus, Tags: strings.Join(info.Tags, ";"),
		CIUser: info.Config["ciuser"], SSHKeys: info.Config["sshkeys"],
		FWOptions: info.Firewall.Options}
	if strings.Contains(info.Config["net0"], "firewall=1") {
		st.Net0Firewall = "1"
	}
	for _, r := range info.Firewall.Rules {
		st.Rules = append(st.Rules, fmt.Sprintf("%s %s %s %s %s %t", r.Type, r.Action,
			r.Proto, r.Dport, r.Dest, r.Enable))
	}
	return st, true
}
