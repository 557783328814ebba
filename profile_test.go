package agentlab_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentlab-sdk/agentlab"
)

const goodProfiles = `name: yolo-ephemeral
template_vmid: 9000
network:
  bridge: vmbr1
  model: virtio
  mode: nat
resources:
  cores: 4
  memory_mb: 6144
storage:
  root_size_gb: 40
behavior:
  mode: dangerous
  keepalive_default: false
  ttl_minutes_default: 180
  idle_stop_minutes: 30
ssh:
  user: agent
job:
  command: agent-run
  artifacts: [out]
---
name: locked-down
template_vmid: 9001
network:
  mode: allowlist
  firewall_group: agent_allow
  allowlist: [192.0.2.10, 198.51.100.0/24]
`

func TestParseProfiles_Good(t *testing.T) {
	ps, err := agentlab.ParseProfiles("p.yaml", []byte(goodProfiles))
	require.NoError(t, err)
	require.Len(t, ps, 2)
	p := ps[0]
	require.Equal(t, "yolo-ephemeral", p.Name)
	require.Equal(t, 6144, p.Resources.MemoryMB)
	require.Equal(t, 30, p.Behavior.IdleStopMinutes)
	require.Equal(t, "p.yaml:1", p.Source)
	require.Equal(t, agentlab.NetworkAllowlist, ps[1].NetworkPolicy().Mode)
	require.Equal(t, "p.yaml:23", ps[1].Source)
}

func TestParseProfiles_Rejects(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "name: a1\ntemplate_vmid: 9000\nnetwork:\n  fwgroup: x\n",
			"p.yaml:4: fwgroup: unknown key"},
		{"unknown top key", "name: a1\ntemplate_vmid: 9000\nimage: x\n",
			"p.yaml:3: image: unknown key"},
		{"wrong type", "name: a1\ntemplate_vmid: nine\n",
			"p.yaml:2: template_vmid: cannot unmarshal"},
		{"wrong type nested", "name: a1\ntemplate_vmid: 9000\nresources:\n  cores: [1]\n",
			"p.yaml:4: resources.cores: cannot unmarshal"},
		{"wrong type bool", "name: a1\ntemplate_vmid: 9000\nbehavior:\n" +
			"  keepalive_default: maybe\n", "p.yaml:4: behavior.keepalive_default: cannot"},
		{"wrong type section", "name: a1\ntemplate_vmid: 9000\nnetwork: [1]\n",
			"p.yaml:3: network: cannot unmarshal"},
		{"bad value", "name: a1\ntemplate_vmid: 9000\nresources:\n  cores: -1\n",
			"p.yaml:4: resources.cores: -1 is out of range"},
		{"bad mode", "name: a1\ntemplate_vmid: 9000\nnetwork:\n  mode: open\n",
			"p.yaml:4: network.mode: network mode \"open\""},
		{"bad group", "name: a1\ntemplate_vmid: 9000\nnetwork:\n  firewall_group: 'a b'\n",
			"p.yaml:4: network.firewall_group: firewall group"},
		{"allowlist empty", "name: a1\ntemplate_vmid: 9000\nnetwork:\n  mode: allowlist\n",
			"p.yaml:3: network.allowlist: allowlist mode needs at least one allowlist entry"},
		{"bad allowlist", "name: a1\ntemplate_vmid: 9000\nnetwork:\n  mode: allowlist\n" +
			"  allowlist: [nope]\n", "p.yaml:5: network.allowlist: allowlist entry \"nope\""},
		{"missing template", "name: a1\n", "p.yaml:1: template_vmid: 0 is out of range"},
		{"bad name", "name: 'a b'\ntemplate_vmid: 9000\n",
			"p.yaml:1: name: \"a b\" is not a valid name"},
		{"empty file", "", "no profile in file"},
		{"only comments", "# nothing\n", "no profile in file"},
		{"not a mapping", "- a\n- b\n", "document is not a mapping"},
		{"syntax", "name: [\n", "p.yaml"},
		{"bad expiry", "name: a1\ntemplate_vmid: 9000\nbehavior:\n  on_expiry: explode\n",
			"p.yaml:4: behavior.on_expiry"},
		{"alias bomb", aliasBomb(), "p.yaml:1: a0: unknown key"},
		{"alias bomb in a known field", "name: a1\ntemplate_vmid: 9000\njob:\n" +
			"  artifacts:\n" + indent(aliasBomb(), "    - "), "p.yaml:5: job.artifacts"},
		{"second document bad", "name: a1\ntemplate_vmid: 9000\n---\nname: b1\n" +
			"template_vmid: x\n", "p.yaml:5: template_vmid: cannot unmarshal"},
		{"node with a path", "name: a1\ntemplate_vmid: 9000\nnode: pve1/../x\n",
			"node: \"pve1/../x\""},
		{"bridge with options", "name: a1\ntemplate_vmid: 9000\nnetwork:\n" +
			"  bridge: vmbr0,firewall=0\n", "p.yaml:4: network.bridge: bridge \"vmbr0,firewall=0\""},
		{"bridge with a vlan tag", "name: a1\ntemplate_vmid: 9000\nnetwork:\n" +
			"  bridge: vmbr0,tag=5\n", "network.bridge: bridge"},
		{"model with options", "name: a1\ntemplate_vmid: 9000\nnetwork:\n" +
			"  model: virtio,firewall=0\n", "network.model: nic model"},
		{"artifact escapes", "name: a1\ntemplate_vmid: 9000\njob:\n  artifacts: [ok, ../../x]\n",
			"job.artifacts: artifact path \"../../x\" must stay inside the work directory"},
		{"artifact absolute", "name: a1\ntemplate_vmid: 9000\njob:\n  artifacts: [/etc]\n",
			"job.artifacts"},
		{"artifact is the log", "name: a1\ntemplate_vmid: 9000\njob:\n  artifacts: [job.log]\n",
			"job.artifacts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			ps, err := agentlab.ParseProfiles("p.yaml", []byte(tt.yaml))
			require.Less(t, time.Since(start), time.Second, "rejected without expanding")
			require.Error(t, err)
			require.Nil(t, ps, "nothing is partly loaded")
			require.ErrorIs(t, err, agentlab.ErrInvalidArgument)
			var pe *agentlab.ProfileError
			require.True(t, errors.As(err, &pe))
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

// indent turns each line of "key: value" into a prefixed sequence entry
// holding the value alone, keeping anchors and aliases.
func indent(doc, prefix string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		_, value, _ := strings.Cut(line, ": ")
		b.WriteString(prefix + value)
	}
	return b.String()
}

// aliasBomb is the "billion laughs" document: each level refers to the one
// before nine times.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		b.WriteString("a")
		b.WriteString(string(rune('0' + i)))
		b.WriteString(": &a")
		b.WriteString(string(rune('0' + i)))
		b.WriteString(" [")
		for j := 0; j < 9; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a")
			b.WriteString(string(rune('0' + i - 1)))
		}
		b.WriteString("]\n")
	}
	return b.String()
}

func TestLoadProfiles_DirectoryAndReload(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600))
	}
	write("a.yaml", goodProfiles)
	write("b.yml", "name: extra\ntemplate_vmid: 9999\n")
	write("ignored.txt", "not yaml")
	set, err := agentlab.LoadProfiles(dir)
	require.NoError(t, err)
	require.Equal(t, []string{"extra", "locked-down", "yolo-ephemeral"}, set.Names())

	write("c.yaml", "name: broken\ntemplate_vmid: 9000\nsurprise: 1\n")
	bad, err := agentlab.LoadProfiles(dir)
	require.ErrorContains(t, err, "c.yaml:3: surprise: unknown key")
	require.Nil(t, bad, "one bad file loads nothing")

	env := newEnv(t)
	env.Manager.SetProfiles(set)
	write("c.yaml", "name: broken\ntemplate_vmid: 9000\nsurprise: 1\n")
	err = env.Manager.ReloadProfiles(dir)
	require.ErrorContains(t, err, "c.yaml:3: surprise: unknown key")
	require.Equal(t, set.Names(), env.Manager.Profiles().Names(),
		"a bad file leaves the previous set in force")

	write("c.yaml", "name: extra\ntemplate_vmid: 9000\n")
	err = env.Manager.ReloadProfiles(dir)
	require.ErrorContains(t, err, "already defined")

	require.NoError(t, os.Remove(filepath.Join(dir, "c.yaml")))
	write("d.yaml", "name: newer\ntemplate_vmid: 9000\n")
	require.NoError(t, env.Manager.ReloadProfiles(dir))
	require.Contains(t, env.Manager.Profiles().Names(), "newer")

	big := strings.Repeat("# padding\n", 120000)
	write("e.yaml", big)
	require.ErrorContains(t, env.Manager.ReloadProfiles(dir), "larger than 1 MiB")
	_, err = agentlab.LoadProfiles(filepath.Join(dir, "missing.yaml"))
	require.ErrorIs(t, err, agentlab.ErrInvalidArgument)
}

func FuzzParseProfiles(f *testing.F) {
	f.Add([]byte(goodProfiles))
	f.Add([]byte("name: a1\ntemplate_vmid: 9000\n"))
	f.Add([]byte(aliasBomb()))
	f.Add([]byte("name: a1\ntemplate_vmid: 9000\nnetwork:\n  fwgroup: x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := agentlab.ParseProfiles("f.yaml", data)
		if err != nil {
			require.ErrorIs(t, err, agentlab.ErrInvalidArgument)
			return
		}
		for _, p := range ps {
			require.NoError(t, p.Validate(), "parsed profiles are valid")
		}
	})
}
