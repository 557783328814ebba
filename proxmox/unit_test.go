package proxmox

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
	px "github.com/luthermonson/go-proxmox"
	"github.com/stretchr/testify/require"
)

func TestNormalizeURL(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "https://pve1:8006", want: "https://pve1:8006/api2/json"},
		{in: "https://pve1:8006/", want: "https://pve1:8006/api2/json"},
		{in: "https://pve1:8006/api2/json", want: "https://pve1:8006/api2/json"},
		{in: "https://pve1:8006/api2/json/", want: "https://pve1:8006/api2/json"},
		{in: "pve1.example.net:8006", want: "https://pve1.example.net:8006/api2/json"},
		{in: "https://proxy/pve", want: "https://proxy/pve/api2/json"},
		{in: "http://pve1:8006", bad: true},
		{in: "", bad: true},
		{in: "https://", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := normalizeURL(tt.in)
			if tt.bad {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestConfigNeverShowsSecret(t *testing.T) {
	const secret = "5f0e2d4c-aaaa-bbbb-cccc-123456789abc"
	cfg := Config{URL: "https://pve:8006", TokenID: "a@pve!t", TokenSecret: secret}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%q", "%x"} {
		out := fmt.Sprintf(verb, cfg)
		require.NotContains(t, out, secret, verb)
		require.NotContains(t, out, "5f0e2d4c", verb)
	}
	require.NotContains(t, fmt.Sprintf("%v", &cfg), secret)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("cfg", "config", cfg)
	require.NotContains(t, buf.String(), secret)
	require.Contains(t, buf.String(), "a@pve!t")
}

func TestConfigValidate(t *testing.T) {
	good := Config{URL: "pve:8006", TokenID: "u@pve!t", TokenSecret: "s"}
	tests := []struct {
		name string
		mut  func(*Config)
	}{
		{"no url", func(c *Config) { c.URL = "" }},
		{"plain http", func(c *Config) { c.URL = "http://pve:8006" }},
		{"token id without name", func(c *Config) { c.TokenID = "root@pam" }},
		{"no secret", func(c *Config) { c.TokenSecret = "" }},
		{"bad fingerprint", func(c *Config) { c.Fingerprint = "AB:CD" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mut(&c)
			err := c.validate()
			require.ErrorIs(t, err, agentlab.ErrInvalidArgument)
		})
	}
	c := good
	require.NoError(t, c.validate())
	require.Equal(t, "https://pve:8006/api2/json", c.URL)
}

func TestParseFingerprint(t *testing.T) {
	const fp = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:" +
		"AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89"
	b, err := parseFingerprint(fp)
	require.NoError(t, err)
	require.Equal(t, fp, formatFingerprint(b))
	b2, err := parseFingerprint(strings.ToLower(strings.ReplaceAll(fp, ":", "")))
	require.NoError(t, err)
	require.Equal(t, b, b2)
	_, err = parseFingerprint("zz")
	require.Error(t, err)
}

func TestOwnerTag(t *testing.T) {
	tests := []struct{ owner, want string }{
		{"ci", "agentlab-owner-ci"},
		{"team-a.prod", "agentlab-owner-team-a.prod"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, OwnerTag(tt.owner))
	}
	// Lossy mappings keep distinct owners apart and stay within PVE's syntax.
	a, b := OwnerTag("Team A"), OwnerTag("team a")
	require.NotEqual(t, a, b)
	long := OwnerTag(strings.Repeat("x", 200))
	require.LessOrEqual(t, len(long), maxTagLen)
	for _, tag := range []string{a, b, long, OwnerTag("ü/é")} {
		require.Regexp(t, `^[a-z0-9_][a-z0-9_+.-]*$`, tag)
	}
}

func TestMarkerRoundTrip(t *testing.T) {
	owner, sandbox := parseMarker(markerDescription("orch-1", "sbx-7"))
	require.Equal(t, "orch-1", owner)
	require.Equal(t, "sbx-7", sandbox)
	owner, sandbox = parseMarker("some template notes\n")
	require.Empty(t, owner)
	require.Empty(t, sandbox)
}

func TestNet0(t *testing.T) {
	tests := []struct {
		name   string
		bridge string // Config.Bridge
		policy agentlab.NetworkPolicy
		cur    string
		want   string
	}{
		{"keeps mac and bridge, sets firewall", "", agentlab.NetworkPolicy{},
			"virtio=BC:24:11:00:00:01,bridge=vmbr0", "virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1"},
		{"config bridge overrides the template's", "vmbr9", agentlab.NetworkPolicy{},
			"virtio=BC:24:11:00:00:01,bridge=vmbr0", "virtio=BC:24:11:00:00:01,bridge=vmbr9,firewall=1"},
		{"no bridge anywhere", "", agentlab.NetworkPolicy{}, "", "virtio,bridge=vmbr0,firewall=1"},
		{"policy bridge and model", "vmbr9", agentlab.NetworkPolicy{Bridge: "vmbr1", Model: "e1000"},
			"virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=0,tag=20",
			"e1000=BC:24:11:00:00:01,bridge=vmbr1,firewall=1,tag=20"},
		{"macaddr form", "", agentlab.NetworkPolicy{},
			"model=virtio,macaddr=BC:24:11:00:00:02,bridge=vmbr0",
			"virtio=BC:24:11:00:00:02,bridge=vmbr0,firewall=1"},
		{"config bridge when template has none", "vmbr9", agentlab.NetworkPolicy{}, "",
			"virtio,bridge=vmbr9,firewall=1"},
		{"security group is not a nic option", "", agentlab.NetworkPolicy{SecurityGroup: "web"},
			"virtio=BC:24:11:00:00:03,bridge=vmbr0",
			"virtio=BC:24:11:00:00:03,bridge=vmbr0,firewall=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &Hypervisor{cfg: Config{Bridge: tt.bridge}}
			got := h.net0(tt.policy, tt.cur)
			require.Equal(t, tt.want, got)
			require.NotContains(t, got, "fwgroup")
		})
	}
}

func TestWithoutMAC(t *testing.T) {
	tests := []struct{ in, want string }{
		{"virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1", "bridge=vmbr0,firewall=1"},
		{"model=virtio,macaddr=BC:24:11:00:00:02,bridge=vmbr0,tag=20",
			"model=virtio,bridge=vmbr0,tag=20"},
		{"e1000=BC:24:11:00:00:03,mtu=1400", "mtu=1400"},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := withoutMAC(tt.in)
			require.Equal(t, tt.want, got)
			h := &Hypervisor{}
			require.NotContains(t, h.net0(agentlab.NetworkPolicy{}, got), "BC:24:11",
				"net0 leaves the MAC to PVE")
		})
	}
}

func TestMemo(t *testing.T) {
	m := newMemo[int, string](time.Hour)
	_, ok := m.get(1)
	require.False(t, ok)
	m.put(1, "a")
	v, ok := m.get(1)
	require.True(t, ok)
	require.Equal(t, "a", v)
	m.drop(1)
	_, ok = m.get(1)
	require.False(t, ok, "dropped")

	off := newMemo[int, string](-1)
	off.put(1, "a")
	_, ok = off.get(1)
	require.False(t, ok, "a negative ttl keeps nothing")
}

func TestBootDiskAndSize(t *testing.T) {
	conf := vmConfig{
		"boot":    "order=ide2;virtio0;net0",
		"ide2":    "local:cloudinit,media=cdrom",
		"scsi0":   "local-lvm:vm-1-disk-1,size=4G",
		"virtio0": "local-lvm:vm-1-disk-0,size=8G",
	}
	require.Equal(t, "virtio0", bootDisk(conf))
	size, ok := diskSize(conf.str("virtio0"))
	require.True(t, ok)
	require.Equal(t, uint64(8)<<30, size)
	require.Equal(t, "scsi0", bootDisk(vmConfig{"scsi0": "x:y,size=512M"}))
	require.Empty(t, bootDisk(vmConfig{"ide2": "x:iso/a.iso,media=cdrom"}))
	_, ok = diskSize("local:vm-1-disk-0")
	require.False(t, ok)
}

func TestClassify(t *testing.T) {
	api := func(code int, msg string) error {
		return &px.APIError{StatusCode: code, Status: fmt.Sprintf("%d %s", code, msg), Message: msg}
	}
	task := func(exit string) error { return &px.TaskFailedError{Type: "qmclone", ExitStatus: exit} }
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"missing config", api(500,
			"Configuration file 'nodes/pve1/qemu-server/117.conf' does not exist"),
			agentlab.ErrNotFound},
		{"missing snapshot task", task("snapshot 'x' does not exist"), agentlab.ErrNotFound},
		{"clone to taken id", api(500, "unable to create VM 101: config file already exists"),
			agentlab.ErrVMIDConflict},
		{"taken on other node", task("clone failed: unable to create VM 101 - " +
			"VM 101 already exists on node 'pve2'"), agentlab.ErrVMIDConflict},
		{"config lock", api(500, "VM is locked (clone)"), agentlab.ErrBusy},
		{"flock timeout", task("can't lock file '/var/lock/qemu-server/lock-104.conf' - got timeout"),
			agentlab.ErrBusy},
		{"agent", api(500, "QEMU guest agent is not running"), agentlab.ErrNotReady},
		{"node down", api(595, "Connection refused"), agentlab.ErrBusy},
		{"unavailable", api(503, "Service Unavailable"), agentlab.ErrBusy},
		{"duplicate snapshot", task("snapshot name 'a' already used"), agentlab.ErrAlreadyExists},
		{"config not loadable", api(500, "unable to find configuration file for VM 101 on "+
			"node 'pve1'"), agentlab.ErrNotFound},
		{"no such snapshot", api(500, "no such snapshot 'x'"), agentlab.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := translate(tt.err, "do", 101)
			require.ErrorIs(t, err, tt.want)
			require.ErrorIs(t, err, tt.err, "the original error stays matchable")
			require.True(t, strings.HasPrefix(err.Error(), "do vm 101: "), err.Error())
		})
	}
	plain := translate(api(500, "VM 101 not running"), "suspend", 101)
	for _, s := range []error{agentlab.ErrNotFound, agentlab.ErrBusy, agentlab.ErrVMIDConflict} {
		require.NotErrorIs(t, plain, s)
	}
	require.Nil(t, translate(nil, "x", 1))
}

// TestClassify_OnlyTheVMIsGone: PVE says "does not exist" and "no such" of
// storages, nodes, tasks and security groups too; none of them may read as
// a VM that is gone, or Destroy would report a VM it failed to delete as
// destroyed.
func TestClassify_OnlyTheVMIsGone(t *testing.T) {
	param := func(key, msg string) error {
		return &px.APIError{StatusCode: http.StatusBadRequest,
			Status: "400 Parameter verification failed.", Errors: map[string]string{key: msg}}
	}
	for _, err := range []error{
		&px.APIError{StatusCode: 500, Status: "500 storage 'local-lvm' does not exist",
			Message: "storage 'local-lvm' does not exist"},
		&px.TaskFailedError{Type: "qmdestroy", ExitStatus: "storage 'gone' does not exist"},
		&px.APIError{StatusCode: 500, Status: "500 no such cluster node 'pve9'",
			Message: "no such cluster node 'pve9'"},
		param("upid", "no such task"),
		param("storage", "No such storage."),
		param("action", "no such security group 'web'"),
		&px.APIError{StatusCode: 500, Status: "500 Security group 'web' does not exist",
			Message: "Security group 'web' does not exist"},
		&px.APIError{StatusCode: 500, Status: "500 unable to activate storage 'nfs' - " +
			"directory '/mnt/pve/nfs' does not exist"},
	} {
		require.NotEqual(t, classNotFound, classify(err), "%v", err)
		require.NotErrorIs(t, translate(err, "destroy", 101), agentlab.ErrNotFound, "%v", err)
	}
}

func TestPlanFirewall(t *testing.T) {
	tests := []struct {
		name         string
		policy       agentlab.NetworkPolicy
		in, out      string
		rules        int
		allow, group bool
	}{
		{"off", agentlab.NetworkPolicy{Mode: agentlab.NetworkOff}, "DROP", "DROP", 1, false, false},
		{"nat", agentlab.NetworkPolicy{Mode: agentlab.NetworkNAT}, "DROP", "ACCEPT",
			1 + len(privateNets), false, false},
		{"allowlist with group", agentlab.NetworkPolicy{Mode: agentlab.NetworkAllowlist,
			Allowlist: []string{"1.1.1.1"}, SecurityGroup: "web"}, "DROP", "DROP", 3, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planFirewall(tt.policy)
			require.Equal(t, tt.in, p.policyIn)
			require.Equal(t, tt.out, p.policyOut)
			require.Len(t, p.rules, tt.rules)
			require.Equal(t, "in", p.rules[0].Type, "ssh comes first")
			require.Equal(t, "22", p.rules[0].Dport)
			require.Equal(t, tt.allow, len(p.allow) > 0)
			last := p.rules[len(p.rules)-1]
			require.Equal(t, tt.group, last.Type == "group", "the group rule comes last")
			for _, r := range p.rules {
				require.Equal(t, 1, r.Enable)
			}
		})
	}
}

func TestBackoffBounds(t *testing.T) {
	h := &Hypervisor{cfg: Config{RetryMin: 10 * time.Millisecond, RetryMax: 80 * time.Millisecond}}
	for n := range 40 {
		d := h.backoff(n)
		require.GreaterOrEqual(t, d, 5*time.Millisecond)
		require.LessOrEqual(t, d, 80*time.Millisecond)
	}
}

func TestTransientTransportErrors(t *testing.T) {
	require.Equal(t, classTransient, classify(fmt.Errorf("post: %w", errors.New("unexpected EOF"))))
	require.Equal(t, classOther, classify(&pinError{got: "A", want: "B"}))
	require.Equal(t, classOther, classify(&px.APIError{StatusCode: http.StatusBadRequest,
		Status: "400 Parameter verification failed."}))
}

// TestPickAddress_HostileAgent feeds pickAddress what a hostile or broken
// guest agent may report: null entries, garbage, addresses outside the
// guest CIDR, and addresses SSH must never be sent to.
func TestPickAddress_HostileAgent(t *testing.T) {
	cidr := netip.MustParsePrefix("10.77.0.0/16")
	addr := func(ips ...string) *px.AgentNetworkIface {
		iface := &px.AgentNetworkIface{Name: "eth0"}
		for _, ip := range ips {
			iface.IPAddresses = append(iface.IPAddresses,
				&px.AgentNetworkIPAddress{IPAddressType: "ipv4", IPAddress: ip})
		}
		return iface
	}
	hostile := []string{"192.0.2.1", "0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255",
		"169.254.1.1", "not-an-ip", "", "10.77.0.1:22", "::ffff:10.77.0.5"}
	tests := []struct {
		name   string
		ifaces []*px.AgentNetworkIface
		cidr   netip.Prefix
		want   string // "" when none may be picked
	}{
		{"null entries", []*px.AgentNetworkIface{nil, {Name: "eth0",
			IPAddresses: []*px.AgentNetworkIPAddress{nil}}}, cidr, ""},
		{"only hostile, with cidr", []*px.AgentNetworkIface{addr(hostile...)}, cidr, ""},
		{"only hostile, no cidr", []*px.AgentNetworkIface{addr(hostile[1:]...)},
			netip.Prefix{}, ""},
		{"hostile first", []*px.AgentNetworkIface{addr(hostile...), addr("10.77.3.4")},
			cidr, "10.77.3.4"},
		{"loopback named eth0 skipped", []*px.AgentNetworkIface{addr("127.0.0.2"),
			addr("10.77.0.9")}, netip.Prefix{}, "10.77.0.9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip, ok := pickAddress(tt.ifaces, tt.cidr)
			require.Equal(t, tt.want != "", ok, "picked %v", ip)
			if ok {
				require.Equal(t, tt.want, ip.String())
			}
		})
	}
}
