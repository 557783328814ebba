package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLifecycleStage replays the log's lifecycle stage: every state shown,
// lease renew in RUNNING and its refusal in STOPPED, logs, destroy.
func TestLifecycleStage(t *testing.T) {
	e := newSimEnv(t, simOptions{})
	id := e.newSandbox("--profile", "yolo-ephemeral", "--name", "live-lifecycle", "--ttl", "45m")
	vmid := strconv.Itoa(id)
	show := e.ok("sandbox", "show", vmid)
	require.Equal(t, "RUNNING", field(t, show, "State"))
	require.Equal(t, "live-lifecycle", field(t, show, "Name"))
	require.Equal(t, "nat", field(t, show, "Network Mode"))
	steps := []struct {
		args  []string
		out   string
		state string
	}{
		{[]string{"sandbox", "pause", vmid}, "paused (state=SUSPENDED)", "SUSPENDED"},
		{[]string{"sandbox", "resume", vmid}, "resumed (state=READY)", "READY"},
		{[]string{"sandbox", "snapshot", "save", "--force", vmid, "livecheck1"},
			"Snapshot: livecheck1", "READY"},
		{[]string{"sandbox", "stop", vmid}, "stopped (state=STOPPED)", "STOPPED"},
		{[]string{"sandbox", "start", vmid}, "started (state=RUNNING)", "RUNNING"},
		{[]string{"sandbox", "lease", "renew", "--ttl", "90m", vmid}, "lease renewed until",
			"RUNNING"},
	}
	for _, s := range steps {
		require.Contains(t, e.ok(s.args...), s.out, "%v", s.args)
		require.Equal(t, s.state, field(t, e.ok("sandbox", "show", vmid), "State"), "%v", s.args)
	}
	snaps := e.ok("sandbox", "snapshot", "list", vmid)
	require.Regexp(t, `(?m)^NAME\s+CREATED\n`, snaps)
	require.Contains(t, snaps, "clean")
	require.Contains(t, snaps, "livecheck1")

	e.ok("sandbox", "stop", vmid)
	r := e.cli("sandbox", "lease", "renew", "--ttl", "30m", vmid)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "error: cannot renew lease in STOPPED state; valid states: ")
	require.Contains(t, r.stderr, "\nnext: agentlab-lite sandbox start "+vmid+"\n")
	r = e.cli("exec", vmid, "--", "true")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "\nnext: agentlab-lite sandbox start "+vmid+"\n")
	e.ok("sandbox", "start", vmid)
	e.ok("sandbox", "pause", vmid)
	r = e.cli("exec", vmid, "--", "true")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "\nnext: agentlab-lite sandbox resume "+vmid+"\n")
	e.ok("sandbox", "resume", vmid)

	logs := e.ok("logs", vmid, "--tail", "40")
	require.Regexp(t, `(?m)^\S+Z\tsandbox\.state\tjob=-\tREQUESTED -> PROVISIONING$`, logs)
	require.Contains(t, logs, "\tsandbox.pause.completed\tjob=-\tpause completed in ")
	require.Contains(t, logs, "\tsandbox.lease.renewed\tjob=-\tlease renewed until ")

	require.Equal(t, fmt.Sprintf("sandbox %d destroyed (state=DESTROYED)\n", id),
		e.ok("sandbox", "destroy", "--force", vmid))
	require.Equal(t, "DESTROYED", field(t, e.ok("sandbox", "show", vmid), "State"))
}

// TestSnapshotRestoreMarker writes a marker over ssh, snapshots, changes
// it, restores and reads the original back, with the log's quoting.
func TestSnapshotRestoreMarker(t *testing.T) {
	e := newSimEnv(t, simOptions{})
	vmid := strconv.Itoa(e.newSandbox("--profile", "yolo-ephemeral", "--ttl", "60m"))
	write := func(word string) string {
		return e.ok("ssh", vmid, "--wait", "--exec", "--", "sh", "-c",
			"'echo "+word+" >al_state.txt; cat al_state.txt'")
	}
	require.Equal(t, "ORIGINAL\n", write("ORIGINAL"))
	e.ok("sandbox", "snapshot", "save", "--force", vmid, "live-snap2")
	require.Equal(t, "CHANGED\n", write("CHANGED"))
	out := e.ok("sandbox", "snapshot", "restore", "--force", vmid, "live-snap2")
	require.Contains(t, out, "Snapshot: live-snap2\nState: RUNNING\n")
	got := e.ok("ssh", vmid, "--wait", "--exec", "--", "sh", "-c", "'cat al_state.txt'")
	require.Equal(t, "ORIGINAL\n", got)
	var sb sandboxJSON
	e.okJSON(&sb, "sandbox", "show", vmid)
	require.Equal(t, "RUNNING", sb.State)
	require.NotEmpty(t, sb.IP)
}

func TestExplicitVMIDConflict(t *testing.T) {
	e := newSimEnv(t, simOptions{})
	e.newSandbox("--profile", "minimal", "--vmid", "1053", "--name", "first")
	r := e.cli("sandbox", "new", "--profile", "minimal", "--vmid", "1053", "--name",
		"vmid-conflict", "--ttl", "15", "--json")
	require.Equal(t, 1, r.code)
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "error: ")
	require.Contains(t, r.stderr, "vmid already in use")
	require.Contains(t, r.stderr, "hint: omit --vmid")
	var list struct{ Sandboxes []sandboxJSON }
	e.okJSON(&list, "sandbox", "list")
	require.Len(t, list.Sandboxes, 1, "the conflict must not create a record")
	require.Equal(t, "first", list.Sandboxes[0].Name)
}

// TestParallelCreates runs five creates at once with explicit VMIDs: each
// gets exactly its VMID, none is silently replaced.
func TestParallelCreates(t *testing.T) {
	e := newSimEnv(t, simOptions{})
	var wg sync.WaitGroup
	results := make([]result, 5)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vmid := strconv.Itoa(1084 + i)
			results[i] = runCLI(t, "--config", e.cfg, "--json", "sandbox", "new", "--profile",
				"yolo-ephemeral", "--vmid", vmid, "--name", "soak-"+vmid, "--ttl", "45m")
		}()
	}
	wg.Wait()
	for i, r := range results {
		require.Equal(t, 0, r.code, r.stderr)
		var sb sandboxJSON
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &sb))
		require.Equal(t, 1084+i, sb.VMID)
		require.Equal(t, "RUNNING", sb.State)
		out := e.ok("ssh", strconv.Itoa(sb.VMID), "--wait", "--exec", "--", "sh", "-c",
			fmt.Sprintf("'echo SOAK_OK_%d'", sb.VMID))
		require.Equal(t, fmt.Sprintf("SOAK_OK_%d\n", sb.VMID), out)
	}
	var list struct{ Sandboxes []sandboxJSON }
	e.okJSON(&list, "sandbox", "list", "--live")
	require.Len(t, list.Sandboxes, 5)
}

// TestNetworkModeProfiles provisions profiles of every mode, with a
// security group, and checks the firewall the simulator holds.
func TestNetworkModeProfiles(t *testing.T) {
	e := newSimEnv(t, simOptions{})
	prof := filepath.Join(e.dir, "profiles")
	for _, m := range []struct{ name, body string }{
		{"live-net-off", "network:\n  mode: off\n  firewall_group: agent_nat_off\n"},
		{"live-net-allow", "network:\n  mode: allowlist\n  firewall_group: agent_nat_allow\n" +
			"  allowlist: [140.82.112.0/20]\n"},
		{"fwgroup-live", "network:\n  mode: nat\n  firewall_group: agent_nat_default\n"},
	} {
		writeFile(t, prof, m.name+".yaml", "name: "+m.name+"\ntemplate_vmid: 9001\n"+m.body)
	}
	require.Contains(t, e.ok("profile", "list"), "live-net-off")
	for _, p := range []struct{ name, mode, group string }{
		{"live-net-off", "off", "agent_nat_off"},
		{"live-net-allow", "allowlist", "agent_nat_allow"},
		{"fwgroup-live", "nat", "agent_nat_default"},
	} {
		vmid := e.newSandbox("--profile", p.name, "--ttl", "20")
		var sb sandboxJSON
		e.okJSON(&sb, "sandbox", "show", strconv.Itoa(vmid))
		require.Equal(t, p.mode, sb.Network.Mode)
		require.True(t, sb.Network.Firewall)
		require.Equal(t, p.group, sb.Network.FirewallGroup)
		vm, ok := e.srv.VM(vmid)
		require.True(t, ok)
		require.Contains(t, vm.Config["net0"], "firewall=1")
		var groups []string
		for _, r := range vm.Firewall.Rules {
			if r.Type == "group" {
				groups = append(groups, r.Action)
			}
		}
		require.Equal(t, []string{p.group}, groups, "vm %d rules %+v", vmid, vm.Firewall.Rules)
	}
}

func TestGuestCommands(t *testing.T) {
	e := newSimEnv(t, simOptions{})
	vmid := strconv.Itoa(e.newSandbox("--profile", "minimal"))
	// exec keeps every argument intact; ssh joins them like OpenSSH.
	require.Equal(t, "a b\n", e.ok("exec", vmid, "--", "sh", "-c", "echo \"$0 $1\"", "a", "b"))
	require.Equal(t, "x y\n", e.ok("ssh", vmid, "--", "echo", "x", "y"))
	r := e.cli("ssh", vmid, "--", "exit", "7")
	require.Equal(t, 7, r.code)
	require.Empty(t, r.stderr)

	local := writeFile(t, t.TempDir(), "in.txt", "payload\n")
	require.Contains(t, e.ok("cp", local, vmid+":in.txt"), "(1 file, 8 bytes)")
	require.Equal(t, "payload\n", e.ok("exec", vmid, "--", "cat", "in.txt"))
	back := filepath.Join(t.TempDir(), "back.txt")
	e.ok("cp", vmid+":in.txt", back)
	data, err := os.ReadFile(back)
	require.NoError(t, err)
	require.Equal(t, "payload\n", string(data))
	// A destination ending in / (or the login directory, or a local
	// directory) receives the source under its own name, as with cp.
	e.ok("exec", vmid, "--", "mkdir", "-p", "d")
	e.ok("cp", local, vmid+":d/")
	e.ok("cp", local, vmid+":")
	require.Equal(t, "payload\npayload\n", e.ok("exec", vmid, "--", "cat", "d/in.txt", "in.txt"))
	into := t.TempDir()
	require.Contains(t, e.ok("cp", vmid+":d/in.txt", into), "-> "+into)
	data, err = os.ReadFile(filepath.Join(into, "in.txt"))
	require.NoError(t, err)
	require.Equal(t, "payload\n", string(data))

	printed := e.ok("ssh", vmid, "--print", "--", "echo", "via-openssh")
	require.Contains(t, printed, "StrictHostKeyChecking=yes")
	require.Contains(t, printed, "-W %h:%p root@127.0.0.1'")
	if _, err := exec.LookPath("ssh"); err == nil {
		out, err := exec.Command("sh", "-c", printed).CombinedOutput()
		require.NoError(t, err, "%s: %s", printed, out)
		require.Equal(t, "via-openssh\n", string(out))
	}
	kh := filepath.Join(e.dir, "state", "known_hosts", vmid)
	khData, err := os.ReadFile(kh)
	require.NoError(t, err)
	require.Contains(t, string(khData), "ssh-ed25519 ")
	require.Len(t, strings.Split(strings.TrimSpace(string(khData)), "\n"), 2)
}

func TestNoWaitCreate(t *testing.T) {
	t.Setenv(asCLI, "1")
	e := newSimEnv(t, simOptions{})
	var sb sandboxJSON
	e.okJSON(&sb, "sandbox", "new", "--profile", "minimal", "--no-wait")
	require.Contains(t, []string{"BOOTING", "READY", "RUNNING"}, sb.State)
	out := e.ok("ssh", strconv.Itoa(sb.VMID), "--wait", "--", "echo", "up")
	require.Equal(t, "up\n", out)
	require.Equal(t, "RUNNING", field(t, e.ok("sandbox", "show", strconv.Itoa(sb.VMID)), "State"))
}

func TestRevertDeleteLabels(t *testing.T) {
	e := newSimEnv(t, simOptions{})
	vmid := strconv.Itoa(e.newSandbox("--profile", "minimal", "--label", "team=a",
		"--label", "run=7"))
	require.Equal(t, "run=7,team=a", field(t, e.ok("sandbox", "show", vmid), "Labels"))
	e.ok("exec", vmid, "--", "sh", "-c", "echo dirty > f")
	r := e.cli("sandbox", "revert", vmid)
	require.Equal(t, 1, r.code, "a running sandbox is not reverted without --force")
	require.Contains(t, r.stderr, "pass --force")
	require.Equal(t, "sandbox "+vmid+" reverted to snapshot clean (state=RUNNING)\n",
		e.ok("sandbox", "revert", "--force", vmid))
	r = e.cli("exec", vmid, "--", "cat", "f")
	require.NotEqual(t, 0, r.code, "the file written after the clean snapshot is gone")

	e.ok("sandbox", "snapshot", "save", vmid, "extra")
	r = e.cli("sandbox", "snapshot", "save", vmid, "extra")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, `already has a snapshot "extra"`)
	require.Contains(t, e.ok("sandbox", "snapshot", "delete", vmid, "extra"), "deleted")
	r = e.cli("sandbox", "snapshot", "delete", vmid, "clean")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "pass --force")
	var snaps struct{ Snapshots []snapshotJSON }
	e.okJSON(&snaps, "sandbox", "snapshot", "list", vmid)
	require.Len(t, snaps.Snapshots, 1)
	// An unknown snapshot is named with the ones there are, before any
	// question of --force.
	for _, args := range [][]string{{"restore", vmid, "extr"}, {"restore", "--force", vmid, "extr"},
		{"delete", vmid, "extr"}} {
		r = e.cli(append([]string{"sandbox", "snapshot"}, args...)...)
		require.Equal(t, 1, r.code, "%v", args)
		require.Equal(t, "error: sandbox "+vmid+` has no snapshot "extr"`+"\n"+
			"next: agentlab-lite sandbox snapshot list "+vmid+"\n"+
			"hint: its snapshots: clean\n", r.stderr, "%v", args)
	}

	// A new sandbox on the same VMID shows only its own events.
	e.ok("sandbox", "destroy", vmid)
	e.newSandbox("--profile", "minimal", "--vmid", vmid)
	logs := e.ok("logs", vmid)
	require.Equal(t, 1, strings.Count(logs, "REQUESTED -> PROVISIONING"), logs)
	all := e.ok("logs", vmid, "--all")
	require.Equal(t, 2, strings.Count(all, "REQUESTED -> PROVISIONING"), all)
}

// TestBrokenProfileFile replays the log's network stage with its
// allowlist profile, which is invalid (no allowlist entries, a security
// group name longer than PVE's 18 characters): the other profiles keep
// working and the broken file is named.
func TestBrokenProfileFile(t *testing.T) {
	e := newSimEnv(t, simOptions{})
	prof := filepath.Join(e.dir, "profiles")
	writeFile(t, prof, "live-net-off.yaml", "name: live-net-off\ntemplate_vmid: 9001\n"+
		"network:\n  bridge: vmbr1\n  model: virtio\n  mode: off\n  firewall_group: agent_nat_off\n"+
		"resources:\n  cores: 2\n  memory_mb: 4096\nstorage:\n  root_size_gb: 20\nbehavior:\n"+
		"  mode: dangerous\n  keepalive_default: false\n  ttl_minutes_default: 120\n")
	writeFile(t, prof, "live-net-allowlist.yaml", "name: live-net-allowlist\n"+
		"template_vmid: 9001\nnetwork:\n  mode: allowlist\n  firewall_group: agent_nat_allowlist\n")
	r := e.cli("profile", "list")
	require.Equal(t, 0, r.code)
	require.Contains(t, r.stdout, "live-net-off")
	require.Contains(t, r.stderr, "warning: skipped profile "+filepath.Join(prof,
		"live-net-allowlist.yaml"))
	vmid := e.newSandbox("--profile", "live-net-off", "--name", "net-off", "--vmid", "1072",
		"--ttl", "40m")
	require.Equal(t, "off", field(t, e.ok("sandbox", "show", strconv.Itoa(vmid)), "Network Mode"))
	r = e.cli("sandbox", "new", "--profile", "live-net-allowlist", "--vmid", "1073")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, `error: unknown profile "live-net-allowlist"`)
	require.Contains(t, r.stderr, "hint: not loaded: profile "+filepath.Join(prof,
		"live-net-allowlist.yaml"))
	r = e.cli("profile", "validate")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "live-net-allowlist.yaml")
}
