package proxmox_test

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
	px "github.com/luthermonson/go-proxmox"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

const (
	templateID = 9000
	owner      = "orch-test"
	guestCIDR  = "10.77.0.0/16"
	testPubKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJmHnsNObKnKbf0sIhPS3Jq92aPSrbaYn3qzqWl2xO1h t"
)

// startSim starts a simulator with a template on its first node.
func startSim(t *testing.T, cfg pvesim.Config) *pvesim.Server {
	t.Helper()
	srv := pvesim.Start(t, cfg)
	require.NoError(t, srv.AddTemplate(srv.Nodes()[0], templateID, "tmpl", nil))
	return srv
}

// fastConfig is a Config trusting srv by fingerprint, with short waits.
func fastConfig(srv *pvesim.Server) proxmox.Config {
	return proxmox.Config{
		URL: srv.URL(), TokenID: srv.TokenID(), TokenSecret: srv.TokenSecret(),
		Fingerprint: srv.Fingerprint(), GuestCIDR: netip.MustParsePrefix(guestCIDR),
		PollInterval: 5 * time.Millisecond, RetryMin: 5 * time.Millisecond,
		RetryMax: 40 * time.Millisecond, RetryTimeout: 10 * time.Second,
	}
}

// newHV connects a Hypervisor to srv; mut may adjust the Config.
func newHV(t *testing.T, srv *pvesim.Server, mut func(*proxmox.Config)) *proxmox.Hypervisor {
	t.Helper()
	cfg := fastConfig(srv)
	if mut != nil {
		mut(&cfg)
	}
	hv, err := proxmox.New(testCtx(t), cfg)
	require.NoError(t, err)
	return hv
}

// rawClient is a go-proxmox client for test setup and inspection.
func rawClient(srv *pvesim.Server) *px.Client {
	return px.NewClient(srv.URL(), px.WithHTTPClient(srv.Client()),
		px.WithAPIToken(srv.TokenID(), srv.TokenSecret()))
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func spec(vmid int, mode agentlab.NetworkMode) agentlab.ProvisionSpec {
	return agentlab.ProvisionSpec{
		VMID: vmid, Name: "sbx-" + itoa(vmid), Template: templateID,
		Cores: 1, MemoryMB: 1024, DiskGB: 16, User: "agent", SSHKeys: []string{testPubKey},
		Owner: owner, Sandbox: "sbx-" + itoa(vmid),
		Network: agentlab.NetworkPolicy{Mode: mode},
	}
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}

// enableDatacenterFirewall turns the simulated datacenter firewall on.
func enableDatacenterFirewall(t *testing.T, srv *pvesim.Server) {
	t.Helper()
	body := map[string]any{"enable": 1}
	err := rawClient(srv).Put(testCtx(t), "/cluster/firewall/options", body, nil)
	require.NoError(t, err)
}

// ownedVMs checks that every non-template VM carries the marker of owner and
// returns their VMIDs.
func ownedVMs(t *testing.T, srv *pvesim.Server) []int {
	t.Helper()
	var ids []int
	for _, v := range srv.VMs() {
		if v.Template {
			continue
		}
		require.Contains(t, v.Description, "agentlab-owner: "+owner, "vm %d is unowned", v.VMID)
		ids = append(ids, v.VMID)
	}
	return ids
}

func TestProvisionEndToEnd(t *testing.T) {
	srv := startSim(t, pvesim.Config{})
	enableDatacenterFirewall(t, srv)
	_, err := rawClient(srv).Cluster(testCtx(t))
	require.NoError(t, err)
	require.NoError(t, (&px.Cluster{}).New(rawClient(srv)).NewFWGroup(testCtx(t),
		&px.FirewallSecurityGroup{Group: "websrv"}))
	hv := newHV(t, srv, nil)
	ctx := testCtx(t)

	sp := spec(120, agentlab.NetworkAllowlist)
	sp.Network.Allowlist = []string{"203.0.113.7", "198.51.100.0/24"}
	sp.Network.SecurityGroup = "websrv"
	vm, err := hv.Provision(ctx, sp)
	require.NoError(t, err)
	require.Empty(t, vm.Warnings, "datacenter firewall is on")
	require.Equal(t, agentlab.PowerStopped, vm.Power)
	require.Equal(t, owner, vm.Owner)
	require.Contains(t, vm.Tags, proxmox.TagAgentlab)
	require.Contains(t, vm.Tags, proxmox.OwnerTag(owner))

	info, ok := srv.VM(120)
	require.True(t, ok)
	checkConfig(t, info)
	checkAllowlistFirewall(t, info)

	require.NoError(t, hv.Start(ctx, 120))
	gi := awaitGuest(t, hv, 120)
	require.Equal(t, info.GuestIP.String(), gi.IP)
	require.Equal(t, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(info.HostKey))), gi.HostKey)

	checkSnapshots(t, hv, 120)
	require.NoError(t, hv.Destroy(ctx, 120))
	_, ok = srv.VM(120)
	require.False(t, ok)
	_, err = hv.Status(ctx, 120)
	require.ErrorIs(t, err, agentlab.ErrNotFound)
}

func checkConfig(t *testing.T, info pvesim.VMInfo) {
	t.Helper()
	c := info.Config
	require.Contains(t, c["net0"], "firewall=1")
	require.Contains(t, c["net0"], "bridge=vmbr0")
	require.NotContains(t, c["net0"], "fwgroup")
	require.Equal(t, "1", c["cores"])
	require.Equal(t, "1024", c["memory"])
	require.Equal(t, "agent", c["ciuser"])
	require.Equal(t, "ip=dhcp", c["ipconfig0"])
	require.Equal(t, px.EncodeSSHKeys(testPubKey), c["sshkeys"])
	require.Contains(t, c["scsi0"], "size=16G")
	require.Contains(t, info.Tags, "agentlab")
	require.Equal(t, "sbx-120", func() string {
		_, sb, _ := strings.Cut(info.Description, "agentlab-sandbox: ")
		return strings.TrimSpace(sb)
	}())
}

func checkAllowlistFirewall(t *testing.T, info pvesim.VMInfo) {
	t.Helper()
	fw := info.Firewall
	require.Equal(t, "1", fw.Options["enable"])
	require.Equal(t, "DROP", fw.Options["policy_in"])
	require.Equal(t, "DROP", fw.Options["policy_out"])
	require.Len(t, fw.Rules, 3)
	require.Equal(t, "in", fw.Rules[0].Type)
	require.Equal(t, "22", fw.Rules[0].Dport)
	require.Equal(t, "out", fw.Rules[1].Type)
	require.Equal(t, "+"+proxmox.AllowIPSet, fw.Rules[1].Dest)
	require.Equal(t, "group", fw.Rules[2].Type)
	require.Equal(t, "websrv", fw.Rules[2].Action)
	for _, r := range fw.Rules {
		require.True(t, r.Enable)
	}
	var cidrs []string
	for _, e := range fw.IPSets[proxmox.AllowIPSet] {
		cidrs = append(cidrs, e.CIDR)
	}
	require.ElementsMatch(t, []string{"203.0.113.7", "198.51.100.0/24"}, cidrs)
}

func awaitGuest(t *testing.T, hv agentlab.Hypervisor, vmid int) agentlab.GuestInfo {
	t.Helper()
	ctx := testCtx(t)
	for {
		gi, err := hv.GuestInfo(ctx, vmid)
		if err == nil {
			return gi
		}
		require.ErrorIs(t, err, agentlab.ErrNotReady)
		select {
		case <-ctx.Done():
			t.Fatalf("guest %d not ready: %v", vmid, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func checkSnapshots(t *testing.T, hv agentlab.Hypervisor, vmid int) {
	t.Helper()
	ctx := testCtx(t)
	require.NoError(t, hv.Snapshot(ctx, vmid, agentlab.SnapshotSpec{Name: "s1", Description: "first"}))
	require.NoError(t, hv.Snapshot(ctx, vmid, agentlab.SnapshotSpec{Name: "s2", Memory: true}))
	snaps, err := hv.Snapshots(ctx, vmid)
	require.NoError(t, err)
	require.Len(t, snaps, 2)
	require.Equal(t, "s1", snaps[0].Name)
	require.Equal(t, "s2", snaps[1].Name)
	require.Equal(t, "s1", snaps[1].Parent)
	require.True(t, snaps[1].Memory)
	require.False(t, snaps[0].Memory)

	require.NoError(t, hv.Rollback(ctx, vmid, "s1"))
	st, err := hv.Status(ctx, vmid)
	require.NoError(t, err)
	require.Equal(t, agentlab.PowerStopped, st.Power)
	require.NoError(t, hv.Rollback(ctx, vmid, "s2"))
	st, err = hv.Status(ctx, vmid)
	require.NoError(t, err)
	require.Equal(t, agentlab.PowerRunning, st.Power)

	require.ErrorIs(t, hv.Rollback(ctx, vmid, "nope"), agentlab.ErrNotFound)
	require.NoError(t, hv.DeleteSnapshot(ctx, vmid, "s2"))
	require.ErrorIs(t, hv.DeleteSnapshot(ctx, vmid, "s2"), agentlab.ErrNotFound)
}

var _ = slog.LevelDebug

// TestSnapshotNamesNeverReachThePath: a snapshot name is put into the API
// path, so one that would change the path or the query ("..", "/", "?",
// "%") is refused before any request.
func TestSnapshotNamesNeverReachThePath(t *testing.T) {
	srv := startSim(t, pvesim.Config{})
	hv := newHV(t, srv, nil)
	ctx := testCtx(t)
	_, err := hv.Provision(ctx, spec(130, agentlab.NetworkNAT))
	require.NoError(t, err)
	before := len(srv.Tasks())
	for _, name := range []string{"..", "../..", "s1/../..", "x?y=1", "%2e%2e", "a#b", ""} {
		require.ErrorIs(t, hv.Rollback(ctx, 130, name), agentlab.ErrInvalidArgument, name)
		require.ErrorIs(t, hv.DeleteSnapshot(ctx, 130, name), agentlab.ErrInvalidArgument,
			name)
		require.ErrorIs(t, hv.Snapshot(ctx, 130, agentlab.SnapshotSpec{Name: name}),
			agentlab.ErrInvalidArgument, name)
	}
	require.Len(t, srv.Tasks(), before, "no task was started")
	_, ok := srv.VM(130)
	require.True(t, ok)
}
