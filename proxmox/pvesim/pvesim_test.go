package pvesim_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	proxmox "github.com/luthermonson/go-proxmox"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
)

const tmplID = 9000

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newSim starts a simulator with template 9000 on its first node and a
// go-proxmox client using its token.
func newSim(t *testing.T, cfg pvesim.Config) (*pvesim.Server, *proxmox.Client) {
	t.Helper()
	srv := pvesim.Start(t, cfg)
	require.NoError(t, srv.AddTemplate(srv.Nodes()[0], tmplID, "debian-13", nil))
	return srv, newClient(t, srv, proxmox.WithAPIToken(srv.TokenID(), srv.TokenSecret()))
}

func newClient(t *testing.T, srv *pvesim.Server, opts ...proxmox.Option) *proxmox.Client {
	t.Helper()
	hc := srv.Client()
	t.Cleanup(hc.CloseIdleConnections)
	opts = append([]proxmox.Option{proxmox.WithHTTPClient(hc)}, opts...)
	return proxmox.NewClient(srv.URL(), opts...)
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wait(t *testing.T, ctx context.Context, task *proxmox.Task) {
	t.Helper()
	require.NotNil(t, task)
	require.NoError(t, task.Wait(ctx, 5*time.Millisecond, 15*time.Second))
}

// waitErr waits for a task and returns its failure.
func waitErr(t *testing.T, ctx context.Context, task *proxmox.Task) error {
	t.Helper()
	require.NotNil(t, task)
	return task.Wait(ctx, 5*time.Millisecond, 15*time.Second)
}

// cloneVM clones the template to newid on node and returns a fresh handle.
func cloneVM(
	t *testing.T, ctx context.Context, c *proxmox.Client, node string, newid int,
) *proxmox.VirtualMachine {
	t.Helper()
	tmpl, err := c.NodeRef(node).VirtualMachine(ctx, tmplID)
	require.NoError(t, err)
	id, task, err := tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{NewID: newid, Name: "sbx-1"})
	require.NoError(t, err)
	require.Equal(t, newid, id)
	wait(t, ctx, task)
	vm, err := c.NodeRef(node).VirtualMachine(ctx, newid)
	require.NoError(t, err)
	return vm
}

func startVM(t *testing.T, ctx context.Context, vm *proxmox.VirtualMachine) {
	t.Helper()
	task, err := vm.Start(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)
}

func newKey(t *testing.T) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return signer, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
}

func TestClusterReads(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{Nodes: []string{"pve1", "pve2"}})
	ctx := ctxT(t)

	v, err := c.Version(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, v.Version)

	nodes, err := c.Nodes(ctx)
	require.NoError(t, err)
	require.Len(t, nodes, 2)
	require.Equal(t, "online", nodes[0].Status)

	node, err := c.Node(ctx, "pve2")
	require.NoError(t, err)
	require.Positive(t, node.CPUInfo.CPUs)

	cl, err := c.Cluster(ctx)
	require.NoError(t, err)
	require.Len(t, cl.Nodes, 2)
	require.Equal(t, 1, cl.Quorate)

	next, err := cl.NextID(ctx)
	require.NoError(t, err)
	require.Equal(t, 100, next)
	free, err := cl.CheckID(ctx, tmplID)
	require.NoError(t, err)
	require.False(t, free)

	res, err := cl.Resources(ctx, "vm")
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, uint64(1), res[0].Template)

	found, err := c.FindVirtualMachine(ctx, tmplID)
	require.NoError(t, err)
	require.Equal(t, "pve1", found.Node)

	_, err = c.FindVirtualMachine(ctx, 4242)
	require.ErrorIs(t, err, proxmox.ErrNotFound)
	require.Equal(t, []string{"pve1", "pve2"}, srv.Nodes())
}

func TestLifecycleThroughGoProxmox(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{})
	ctx := ctxT(t)
	vm := cloneVM(t, ctx, c, "pve1", 101)
	require.False(t, bool(vm.Template))
	require.Equal(t, "sbx-1", vm.Name)

	tmpl, ok := srv.VM(tmplID)
	require.True(t, ok)
	require.NotEqual(t, tmpl.Config["net0"], vm.VirtualMachineConfig.Nets["net0"],
		"clone regenerates MACs")

	_, pub := newKey(t)
	task, err := vm.Config(ctx,
		proxmox.VirtualMachineOption{Name: "cores", Value: 4},
		proxmox.VirtualMachineOption{Name: "memory", Value: 4096},
		proxmox.VirtualMachineOption{Name: "net0", Value: "virtio,bridge=vmbr0,firewall=1"},
		proxmox.VirtualMachineOption{Name: "ciuser", Value: "agent"},
		proxmox.VirtualMachineOption{Name: "sshkeys", Value: proxmox.EncodeSSHKeys(pub)},
		proxmox.VirtualMachineOption{Name: "ipconfig0", Value: "ip=dhcp"},
		proxmox.VirtualMachineOption{Name: "agent", Value: "enabled=1"},
	)
	require.NoError(t, err)
	wait(t, ctx, task)
	require.NoError(t, vm.Ping(ctx))
	require.Equal(t, 4, *vm.VirtualMachineConfig.Cores)
	require.Equal(t, "agent", vm.VirtualMachineConfig.CIUser)
	require.Regexp(t, `^virtio=BC:24:11:`, vm.VirtualMachineConfig.Nets["net0"])

	task, err = vm.ResizeDisk(ctx, "scsi0", "+2G")
	require.NoError(t, err)
	wait(t, ctx, task)
	info, _ := srv.VM(101)
	require.Contains(t, info.Config["scsi0"], "size=10G")

	task, err = vm.Start(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)
	require.NoError(t, vm.Ping(ctx))
	require.True(t, vm.IsRunning())
	require.True(t, bool(vm.Agent))

	ifaces, err := vm.AgentGetNetworkIFaces(ctx)
	require.NoError(t, err)
	require.Len(t, ifaces, 1, "go-proxmox drops lo")
	info, _ = srv.VM(101)
	require.Equal(t, info.GuestIP.String(), ifaces[0].IPAddresses[0].IPAddress)
	require.True(t, strings.HasPrefix(ifaces[0].IPAddresses[0].IPAddress, "10.77."))

	fr, err := vm.AgentFileRead(ctx, "/etc/ssh/ssh_host_ed25519_key.pub")
	require.NoError(t, err)
	hk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(fr.Content))
	require.NoError(t, err)
	require.Equal(t, info.HostKey.Marshal(), hk.Marshal())

	task, err = vm.NewSnapshot(ctx, "base")
	require.NoError(t, err)
	wait(t, ctx, task)
	snaps, err := vm.Snapshots(ctx)
	require.NoError(t, err)
	require.Len(t, snaps, 2)
	require.Equal(t, "base", snaps[0].Name)
	require.Equal(t, "current", snaps[1].Name)
	require.Equal(t, "base", snaps[1].Parent)

	task, err = vm.Snapshot("base").Rollback(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)
	require.NoError(t, vm.Ping(ctx))
	require.True(t, vm.IsStopped(), "rollback without RAM leaves the VM stopped")

	task, err = vm.Start(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)

	exerciseFirewall(t, ctx, srv, c, vm)

	task, err = vm.Shutdown(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)
	task, err = vm.Stop(ctx)
	require.NoError(t, err)
	wait(t, ctx, task) // stopping a stopped VM is OK

	task, err = vm.Snapshot("base").Delete(ctx)
	require.NoError(t, err)
	wait(t, ctx, task)

	task, err = vm.Delete(ctx,
		&proxmox.VirtualMachineDeleteOptions{Purge: true, DestroyUnreferencedDisks: true})
	require.NoError(t, err)
	wait(t, ctx, task)
	_, ok = srv.VM(101)
	require.False(t, ok)
	_, err = c.NodeRef("pve1").VirtualMachine(ctx, 101)
	require.ErrorIs(t, err, proxmox.ErrNotFound)
	require.Contains(t, err.Error(),
		"Configuration file 'nodes/pve1/qemu-server/101.conf' does not exist")
}

func exerciseFirewall(
	t *testing.T, ctx context.Context, srv *pvesim.Server, c *proxmox.Client,
	vm *proxmox.VirtualMachine,
) {
	t.Helper()
	cl, err := c.Cluster(ctx)
	require.NoError(t, err)
	require.NoError(t, cl.FirewallOptionsUpdate(ctx,
		&proxmox.FirewallClusterOptionUpdateOption{Enable: 1}))
	opts, err := cl.FirewallOptions(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, opts.Enable)
	require.NoError(t, cl.NewFWGroup(ctx,
		&proxmox.FirewallSecurityGroup{Group: "sandbox", Comment: "egress"}))
	grp, err := cl.FWGroup(ctx, "sandbox")
	require.NoError(t, err)
	require.NoError(t, grp.RuleCreate(ctx,
		&proxmox.FirewallRule{Type: "out", Action: "DROP", Enable: 1}))

	require.NoError(t, vm.FirewallOptionSet(ctx, &proxmox.FirewallVirtualMachineOption{
		Enable: true, PolicyIn: "DROP", PolicyOut: "ACCEPT"}))
	var fwOpts proxmox.FirewallVirtualMachineOption
	require.NoError(t, c.Get(ctx, "/nodes/pve1/qemu/101/firewall/options", &fwOpts))
	require.True(t, bool(fwOpts.Enable))
	require.Equal(t, "DROP", fwOpts.PolicyIn)

	require.NoError(t, vm.NewFirewallRule(ctx, &proxmox.FirewallRule{
		Type: "in", Action: "ACCEPT", Proto: "tcp", Dport: "22", Enable: 1}))
	require.NoError(t, vm.NewFirewallRule(ctx, &proxmox.FirewallRule{
		Type: "group", Action: "sandbox", Iface: "net0", Enable: 1}))
	rules, err := vm.FirewallRules(ctx)
	require.NoError(t, err)
	require.Len(t, rules, 2)
	require.Equal(t, "group", rules[0].Type, "new rules go to position 0")
	require.NoError(t, vm.FirewallRule(1).Delete(ctx))

	require.NoError(t, vm.NewFirewallIPSet(ctx, proxmox.FirewallIPSetCreationOption{Name: "allowed"}))
	require.NoError(t, vm.NewFirewallIPSetEntry(ctx, "allowed",
		proxmox.FirewallIPSetEntryCreationOption{CIDR: "10.0.0.0/8"}))
	entries, err := vm.GetFirewallIPSetEntries(ctx, "allowed")
	require.NoError(t, err)
	require.Len(t, entries, 1)

	info, _ := srv.VM(101)
	require.Equal(t, "1", info.Firewall.Options["enable"])
	require.Len(t, info.Firewall.Rules, 1)
	require.Equal(t, "sandbox", info.Firewall.Rules[0].Action)
	require.Equal(t, "10.0.0.0/8", info.Firewall.IPSets["allowed"][0].CIDR)
	require.Len(t, srv.ClusterFirewall().Groups["sandbox"], 1)
}

func TestConfigSchemaErrors(t *testing.T) {
	_, c := newSim(t, pvesim.Config{})
	ctx := ctxT(t)
	vm := cloneVM(t, ctx, c, "pve1", 101)
	const notInSchema = "property is not defined in schema and the schema does not allow " +
		"additional properties"
	tests := []struct {
		name, key, value string
		want             map[string]string
	}{
		{"fwgroup in net0", "net0", "virtio,bridge=vmbr0,firewall=1,fwgroup=sandbox",
			map[string]string{"net0": "invalid format - format error", "net0.fwgroup": notInSchema}},
		{"unknown key", "fwgroup", "sandbox", map[string]string{"fwgroup": notInSchema}},
		{"integer type", "cores", "many",
			map[string]string{"cores": "type check ('integer') failed - got 'many'"}},
		{"boolean sub-key", "net1", "virtio,firewall=maybe", map[string]string{
			"net1":          "invalid format - format error",
			"net1.firewall": "type check ('boolean') failed - got 'maybe'"}},
		{"bad ipconfig", "ipconfig0", "ip=dhcp,dns=1.1.1.1",
			map[string]string{"ipconfig0": "invalid format - format error", "ipconfig0.dns": notInSchema}},
		{"bad sshkeys", "sshkeys", "not-a-key",
			map[string]string{"sshkeys": "SSH public key validation error"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := vm.ConfigSync(ctx, proxmox.VirtualMachineOption{Name: tc.key, Value: tc.value})
			require.ErrorIs(t, err, proxmox.ErrBadRequest)
			apiErr, ok := proxmox.AsAPIError(err)
			require.True(t, ok)
			require.Equal(t, "400 Parameter verification failed.", apiErr.Status)
			require.Equal(t, tc.want, apiErr.Errors)
		})
	}
}

func TestWrongNodeAndUnknownPath(t *testing.T) {
	_, c := newSim(t, pvesim.Config{Nodes: []string{"pve1", "pve2"}})
	ctx := ctxT(t)
	_, err := c.NodeRef("pve2").VirtualMachine(ctx, tmplID)
	require.ErrorIs(t, err, proxmox.ErrNotFound)
	require.Contains(t, err.Error(), "nodes/pve2/qemu-server/9000.conf' does not exist")

	_, err = c.NodeRef("pve9").VirtualMachine(ctx, tmplID)
	require.ErrorContains(t, err, "hostname lookup 'pve9' failed")

	err = c.Get(ctx, "/nodes/pve1/nothing", nil)
	require.EqualError(t, err, "501 Method 'GET /nodes/pve1/nothing' not implemented")
}

func TestCloneAcrossNodes(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{Nodes: []string{"pve1", "pve2"}})
	ctx := ctxT(t)
	tmpl, err := c.NodeRef("pve1").VirtualMachine(ctx, tmplID)
	require.NoError(t, err)

	_, _, err = tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{NewID: 130, Target: "pve2"})
	require.ErrorContains(t, err, "can't clone VM to node 'pve2' (VM uses local storage)")

	_, task, err := tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{
		NewID: 130, Target: "pve2", Full: true, Storage: "shared"})
	require.NoError(t, err)
	wait(t, ctx, task)
	require.Contains(t, task.UPID, ":qmclone:9000:",
		"the task runs on the source node with the source id")
	info, ok := srv.VM(130)
	require.True(t, ok)
	require.Equal(t, "pve2", info.Node)
	require.Equal(t, "shared:vm-130-disk-0,iothread=1,size=8G", info.Config["scsi0"])

	_, _, err = tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{NewID: 130})
	require.NoError(t, err, "the id exists on another node: the task fails, not the request")
	res, err := (&proxmox.Cluster{}).New(c).Resources(ctx, "vm")
	require.NoError(t, err)
	require.Len(t, res, 2)
}

func TestTemplateAndCloneErrors(t *testing.T) {
	srv, c := newSim(t, pvesim.Config{})
	ctx := ctxT(t)
	require.Error(t, srv.AddTemplate("pve1", tmplID, "dup", nil))
	require.Error(t, srv.AddTemplate("nope", 9001, "x", nil))
	require.Error(t, srv.AddTemplate("pve1", 9001, "x", map[string]string{"net0": "virtio,fwgroup=x"}))
	require.NoError(t, srv.AddTemplate("pve1", 9001, "small", map[string]string{"cores": "1"}))

	tmpl, err := c.NodeRef("pve1").VirtualMachine(ctx, 9001)
	require.NoError(t, err)
	require.True(t, bool(tmpl.Template))
	tests := []struct {
		name string
		opts proxmox.VirtualMachineCloneOptions
		want string
	}{
		{"storage on linked clone", proxmox.VirtualMachineCloneOptions{NewID: 140, Storage: "shared"},
			"parameter 'storage' not allowed for linked clones"},
		{"unknown target", proxmox.VirtualMachineCloneOptions{NewID: 140, Target: "pve7"},
			"no such cluster node 'pve7'"},
		{"existing id", proxmox.VirtualMachineCloneOptions{NewID: tmplID},
			"unable to create VM 9000: config file already exists"},
		{"bad name", proxmox.VirtualMachineCloneOptions{NewID: 140, Name: "not a name"},
			"valid DNS name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := tmpl.Clone(ctx, &tc.opts)
			require.ErrorContains(t, err, tc.want)
		})
	}
	task, err := tmpl.Start(ctx)
	require.NoError(t, err)
	require.ErrorContains(t, waitErr(t, ctx, task), "you can't start a vm if it's a template")
}

func TestResourcesLag(t *testing.T) {
	_, c := newSim(t, pvesim.Config{ResourcesLag: time.Hour})
	ctx := ctxT(t)
	cl, err := c.Cluster(ctx)
	require.NoError(t, err)
	before, err := cl.Resources(ctx, "vm")
	require.NoError(t, err)
	cloneVM(t, ctx, c, "pve1", 101)
	after, err := cl.Resources(ctx, "vm")
	require.NoError(t, err)
	require.Len(t, after, len(before), "the cached view does not show the new VM yet")
	_, err = c.FindVirtualMachine(ctx, 101)
	require.ErrorIs(t, err, proxmox.ErrNotFound)
	_, err = c.NodeRef("pve1").VirtualMachine(ctx, 101)
	require.NoError(t, err, "per-VM calls see it at once")
}
