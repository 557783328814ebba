package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMisuse checks that each mistake gives one clear error and the right
// exit code.
func TestMisuse(t *testing.T) {
	e := newSimEnv(t, simOptions{})
	vmid := e.newSandbox("--profile", "minimal", "--vmid", "1071")
	require.Equal(t, 1071, vmid)
	badCfg := writeFile(t, t.TempDir(), "bad.yaml", "proxmox:\n  url: https://x\n  colour: red\n")
	noURL := writeFile(t, t.TempDir(), "nourl.yaml", "proxmox:\n  token_id: a@pve!b\n")
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr []string
	}{
		{"unknown flag", []string{"sandbox", "new", "--profile", "minimal", "--frob"}, 2,
			[]string{"error: unknown flag --frob", "next: agentlab-lite sandbox new --help"}},
		{"bad ttl", []string{"sandbox", "new", "--profile", "minimal", "--ttl", "abc"}, 2,
			[]string{`invalid value "abc" for flag --ttl: want minutes (120)`}},
		{"ttl too short", []string{"sandbox", "new", "--profile", "minimal", "--ttl", "30s"}, 2,
			[]string{"at least one minute"}},
		{"renew without ttl", []string{"sandbox", "lease", "renew", "1071"}, 2,
			[]string{"lease renew needs --ttl"}},
		{"unknown vmid", []string{"sandbox", "show", "1072"}, 1,
			[]string{"error: sandbox 1072 not found", "next: agentlab-lite sandbox list",
				"hint: closest VMIDs: 1071"}},
		{"unknown profile", []string{"sandbox", "new", "--profile", "live-net-of"}, 1,
			[]string{`error: unknown profile "live-net-of". Available profiles: interactive-dev, ` +
				"minimal, yolo-ephemeral, yolo-workspace", "next: agentlab-lite profile list"}},
		{"missing profile", []string{"sandbox", "new"}, 2, []string{"missing --profile"}},
		{"unknown command", []string{"sandbx", "list"}, 2,
			[]string{`error: unknown command "sandbx"`, `hint: did you mean "sandbox"?`}},
		{"unknown subcommand", []string{"sandbox", "frob"}, 2,
			[]string{`unknown command "sandbox frob"`, "next: agentlab-lite help sandbox"}},
		{"typo in subcommand", []string{"sandbox", "shwo", "1071"}, 2,
			[]string{`hint: did you mean "sandbox show"?`}},
		{"missing argument", []string{"sandbox", "show"}, 2, []string{"missing argument"}},
		{"extra argument", []string{"sandbox", "show", "1071", "1072"}, 2,
			[]string{`unexpected argument "1072"`}},
		{"unknown job", []string{"job", "show", "job_nope"}, 1, []string{"job job_nope not found"}},
		{"bad state filter", []string{"sandbox", "list", "--state", "NAPPING"}, 2,
			[]string{`unknown state "NAPPING"`}},
		{"bad snapshot name", []string{"sandbox", "snapshot", "save", "1071", "1x"}, 2,
			[]string{"snapshot name"}},
		{"missing config", []string{"--config", "/nonexistent/agentlab.yaml", "status"}, 1,
			[]string{"error: no config file at /nonexistent/agentlab.yaml (from --config)",
				"hint: to try the simulator: agentlab-lite sim serve --dir DIR"}},
		{"config without url", []string{"--config", noURL, "sandbox", "list"}, 1,
			[]string{"error: missing setting proxmox.url in " + noURL,
				"next: agentlab-lite help config"}},
		{"config unknown key", []string{"--config", badCfg, "status"}, 1,
			[]string{"bad.yaml:3: unknown key \"colour\""}},
		{"ttl overflow", []string{"sandbox", "new", "--profile", "minimal", "--ttl", "2562047h"},
			2, []string{"at most one year"}},
		{"huge bare ttl", []string{"sandbox", "new", "--profile", "minimal", "--ttl",
			"99999999999999"}, 2, []string{"at most one year"}},
		{"bad label", []string{"sandbox", "new", "--profile", "minimal", "--label", "a b=1"}, 2,
			[]string{`invalid value "a b=1" for flag --label: label key "a b"`}},
		{"bad name", []string{"sandbox", "new", "--profile", "minimal", "--name", "a_b"}, 2,
			[]string{`sandbox name "a_b"`}},
		{"vmid out of range", []string{"sandbox", "new", "--profile", "minimal", "--vmid", "5"},
			2, []string{"VMID 5 is outside 100-999999999"}},
		{"unknown job status", []string{"job", "list", "--status", "bogus"}, 2,
			[]string{`unknown job status "bogus"`}},
		{"empty job id", []string{"job", "show", ""}, 2, []string{"empty job ID"}},
		{"bad boolean", []string{"--json=maybe", "status"}, 2,
			[]string{`invalid value "maybe" for flag --json: want true or false`}},
		{"bad boolean after command", []string{"sandbox", "new", "--profile", "minimal",
			"--keepalive=maybe"}, 2,
			[]string{`invalid value "maybe" for flag --keepalive: want true or false`}},
		{"unknown global flag", []string{"--frob", "status"}, 2,
			[]string{"error: unknown flag --frob\n", "next: agentlab-lite help\n"}},
		{"unknown flag after group", []string{"sandbox", "--frob=1", "list"}, 2,
			[]string{"error: unknown flag --frob\n", "next: agentlab-lite help sandbox\n"}},
		{"unknown short flag", []string{"cp", "-r", "a", "1071:"}, 2,
			[]string{"error: unknown flag -r\n", "hint: cp copies directory trees as they are"}},
		{"flag without value", []string{"sandbox", "lease", "renew", "1071", "--ttl"}, 2,
			[]string{"error: flag --ttl needs a value\n"}},
		{"vmid not a number", []string{"sandbox", "new", "--profile", "minimal", "--vmid",
			"abc"}, 2, []string{`invalid value "abc" for flag --vmid: want a whole number`}},
		{"tail not a number", []string{"logs", "1071", "--tail", "x"}, 2,
			[]string{`invalid value "x" for flag --tail: want a whole number`}},
		{"bad duration", []string{"ssh", "1071", "--wait-timeout", "soon"}, 2,
			[]string{`invalid value "soon" for flag --wait-timeout: want a duration`}},
		{"version with command", []string{"--version", "status"}, 2,
			[]string{"--version takes no command"}},
		{"cp without guest", []string{"cp", "a", "b"}, 2,
			[]string{"exactly one of SRC and DST must be VMID:/path"}},
		{"cp guest root", []string{"cp", "1071:/", "b"}, 2, []string{"names no file"}},
		{"bad env", []string{"exec", "1071", "--env", "A B=1", "--", "true"}, 2,
			[]string{`"A B" is not an environment variable name`}},
		{"bad secret", []string{"job", "run", "--profile", "minimal", "--task", "t", "--secret",
			"A-B"}, 2, []string{`--secret A-B: "A-B" is not an environment variable name`}},
		{"bad artifact", []string{"job", "run", "--profile", "minimal", "--task", "t",
			"--artifact", "../x"}, 2, []string{"must stay inside the work directory"}},
		{"bad fault", []string{"sim", "serve", "--dir", t.TempDir(), "--fault", "status=200"}, 2,
			[]string{`--fault "status=200": status="200": want an error status, 400-599`}},
		{"bad nodes", []string{"sim", "serve", "--dir", t.TempDir(), "--nodes", "a,,b"}, 2,
			[]string{`--nodes: "" is not a node name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.cli(tt.args...)
			require.Equal(t, tt.code, r.code, "stderr: %s", r.stderr)
			require.Equal(t, 1, strings.Count(r.stderr, "error: "), r.stderr)
			for _, s := range tt.stderr {
				require.Contains(t, r.stderr, s)
			}
		})
	}
}

// TestBadInputHasNoSideEffect checks that a refused command line creates
// nothing: no database, no SSH key, no supervisor log.
func TestBadInputHasNoSideEffect(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "config.yaml", "proxmox:\n  url: https://127.0.0.1:1\n"+
		"  token_id: a@pve!b\n  token_secret: x\n")
	for _, args := range [][]string{
		{"sandbox", "new", "--profile", "minimal", "--ttl", "0"},
		{"sandbox", "new", "--profile", "minimal", "--label", "-x=1"},
		{"sandbox", "new", "--profile", "minimal", "--name", "-x"},
		{"sandbox", "lease", "renew", "1000"},
		{"sandbox", "snapshot", "save", "1000", "1bad"},
		{"logs", "1000", "--tail", "-2"},
		{"job", "run", "--profile", "minimal", "--task", "t", "--env", "1=2"},
		{"job", "run", "--profile", "minimal", "--task", "t", "--timeout", "-1s"},
		{"job", "list", "--status", "DONE"},
		{"cp", "1000:", "x"},
	} {
		r := runCLI(t, append([]string{"--config", cfg}, args...)...)
		require.Equal(t, exitUsage, r.code, "%v: %s", args, r.stderr)
		require.Equal(t, []string{"config.yaml"}, entries(t, dir), "%v", args)
	}
}

func TestJSONAnywhere(t *testing.T) {
	e := newSimEnv(t, simOptions{})
	vmid := e.newSandbox("--profile", "minimal")
	for _, args := range [][]string{
		{"--json", "sandbox", "show", "1000"},
		{"sandbox", "--json", "show", "1000"},
		{"sandbox", "show", "1000", "--json"},
		{"sandbox", "show", "--json=true", "1000"},
	} {
		var sb sandboxJSON
		out := e.ok(args...)
		require.NoError(t, json.Unmarshal([]byte(out), &sb), "%v: %s", args, out)
		require.Equal(t, vmid, sb.VMID)
	}
	// Flags before or after the positional argument.
	require.Contains(t, e.ok("sandbox", "lease", "renew", "1000", "--ttl", "2h"), "renewed")
	require.Contains(t, e.ok("sandbox", "lease", "renew", "--ttl=120", "1000"), "renewed")

	var st statusJSON
	e.okJSON(&st, "status")
	require.Equal(t, 1, st.Sandboxes["RUNNING"])
	require.Equal(t, 1, st.NetworkModes["nat"])
	require.Contains(t, st.Jobs, "QUEUED")
	require.NotEmpty(t, st.Artifacts.Root)
	var profiles struct{ Profiles []profileJSON }
	e.okJSON(&profiles, "profile", "list")
	require.Len(t, profiles.Profiles, 4)
	require.Equal(t, 9001, profiles.Profiles[0].TemplateVMID)
	var snaps struct{ Snapshots []snapshotJSON }
	e.okJSON(&snaps, "sandbox", "snapshot", "list", "1000")
	require.Equal(t, "clean", snaps.Snapshots[0].Name)
	var rec struct{ Findings []findingJSON }
	e.okJSON(&rec, "reconcile")
	require.Empty(t, rec.Findings)

	text := e.ok("status")
	for _, s := range []string{"Sandboxes:\nSTATE ", "RUNNING       1\n", "Network Modes:\n",
		"Jobs:\n", "Artifacts:\nRoot: ", "Recent Failures:\n"} {
		require.Contains(t, text, s)
	}
}

func TestHelpVersionCompletion(t *testing.T) {
	for _, tt := range []struct {
		args []string
		out  string
	}{
		{[]string{"--version"}, "version="},
		{[]string{"help"}, "sandbox lease renew"},
		{[]string{"--help"}, "Global flags"},
		{[]string{"help", "config"}, "token_secret_file"},
		{[]string{"sandbox", "new", "--help"}, "\n  --ttl TTL\n"},
		{[]string{"logs", "--help"}, "\n  --tail N\n"},
		{[]string{"ssh", "--help"}, "\n  -n\n"},
		{[]string{"sandbox", "--help"}, "sandbox snapshot restore"},
		{[]string{"completion", "bash"}, "complete -o default -F _agentlab_lite agentlab-lite"},
		{[]string{"completion", "zsh"}, "#compdef agentlab-lite"},
	} {
		r := runCLI(t, tt.args...)
		require.Equal(t, 0, r.code, "%v: %s", tt.args, r.stderr)
		require.Contains(t, r.stdout, tt.out, "%v", tt.args)
	}
	r := runCLI(t)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "no command given")
}

func TestConfigLoading(t *testing.T) {
	env := func(k string) string { return map[string]string{"PVE_SECRET": "s3cret"}[k] }
	const head = "proxmox:\n  url: https://pve:8006\n  token_id: a@pve!b\n"
	const ok = head + "  token_secret_env: PVE_SECRET\n"
	tests := []struct {
		name, body, err string
	}{
		{"complete", ok, ""},
		{"bare host url", "proxmox:\n  url: pve1:8006\n  token_id: a@pve!b\n" +
			"  token_secret_env: PVE_SECRET\n", ""},
		{"missing url", "proxmox:\n  token_id: a@pve!b\n", "missing setting proxmox.url"},
		{"missing secret", "proxmox:\n  url: https://pve\n  token_id: a@pve!b\n",
			"missing setting proxmox.token_secret"},
		{"two secrets", head + "  token_secret: x\n  token_secret_env: PVE_SECRET\n",
			"set only one of"},
		{"empty env", head + "  token_secret_env: NOPE\n",
			"environment variable NOPE is empty"},
		{"bad duration", head + "  token_secret: x\n  poll_interval: soon\n",
			"config.yaml:5: \"soon\" is not a duration"},
		{"bad cidr", ok + "  guest_cidr: 10.0.0.1\n", "not a CIDR"},
		{"wrong type", "vmid_min: lots\n", "config.yaml:1: cannot unmarshal"},
		{"http url", "proxmox:\n  url: http://pve:8006\n  token_id: a@pve!b\n" +
			"  token_secret: x\n", "proxmox.url \"http://pve:8006\" is not an https URL"},
		{"bad token id", "proxmox:\n  url: https://pve\n  token_id: root\n  token_secret: x\n",
			"proxmox.token_id \"root\" is not a token ID"},
		{"bad fingerprint", ok + "  tls:\n    fingerprint: AB:CD\n",
			"proxmox.tls.fingerprint \"AB:CD\" is not a SHA-256 fingerprint"},
		{"vmid range", ok + "vmid_min: 50\nvmid_max: 60\n", "must lie in 100-999999999"},
		{"vmid half range", ok + "vmid_min: 1000\n", "must both be set"},
		{"jump without key", ok + "ssh:\n  jump:\n    addr: pve1:22\n",
			"missing setting ssh.jump.host_key"},
		{"jump bad port", ok + "ssh:\n  jump:\n    addr: pve1:99999\n    host_key: x\n",
			"ssh.jump.addr \"pve1:99999\" is not host or host:port"},
		{"two documents", ok + "---\nvmid_min: 1\n", "more than one YAML document"},
		{"negative clones", ok + "  clone_concurrency: -1\n", "clone_concurrency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := writeFile(t, dir, "config.yaml", tt.body)
			cfg, err := loadConfig(p, "test", env)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				require.ErrorContains(t, err, p, "the error names the file")
				return
			}
			require.NoError(t, err)
			require.Equal(t, "s3cret", cfg.TokenSecret)
			require.Equal(t, filepath.Join(dir, "profiles"), cfg.ProfilesDir)
			require.Equal(t, filepath.Join(dir, "agentlab.db"), cfg.Database)
			require.Empty(t, entries(t, dir)[1:], "loading creates nothing")
		})
	}
}

// entries lists a directory's names.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	names := make([]string, len(des))
	for i, de := range des {
		names[i] = de.Name()
	}
	return names
}

func TestConfigLocation(t *testing.T) {
	get := func(v string) func(string) string {
		return func(string) string { return v }
	}
	p, src := configLocation("/a.yaml", get("/b.yaml"))
	require.Equal(t, "/a.yaml", p)
	require.Equal(t, "--config", src)
	p, src = configLocation("", get("/b.yaml"))
	require.Equal(t, "/b.yaml", p)
	require.Equal(t, "AGENTLAB_CONFIG", src)
	p, _ = configLocation("", get(""))
	require.True(t, strings.HasSuffix(p, filepath.Join("agentlab", "config.yaml")), p)
}

func TestConfigFromEnvironment(t *testing.T) {
	e := newSimEnv(t, simOptions{})
	t.Setenv("AGENTLAB_CONFIG", e.cfg)
	r := runCLI(t, "profile", "list")
	require.Equal(t, 0, r.code, r.stderr)
	require.Regexp(t, `(?m)^yolo-ephemeral +9001 +nat +\S+Z$`, r.stdout)
}

func TestParseTTL(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"120", 2 * time.Hour, false}, {"45m", 45 * time.Minute, false},
		{"2h", 2 * time.Hour, false}, {"never", -1, false}, {"1", time.Minute, false},
		{"0", 0, true}, {"30s", 0, true}, {"abc", 0, true}, {"-5", 0, true}, {"", 0, true},
	} {
		got, err := parseTTL(tt.in)
		if tt.err {
			require.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		require.Equal(t, tt.want, got, tt.in)
	}
}

func TestClosestAndSuggest(t *testing.T) {
	require.Equal(t, []int{1071, 1068, 1067}, closest(1072, []int{1043, 1067, 1068, 1071, 1071}, 3))
	require.Empty(t, closest(5, nil, 3))
	for _, tt := range []struct{ word, want string }{
		{"sandbx", "sandbox"}, {"stauts", "status"}, {"shwo", "show"}, {"snap", "snapshot"},
		{"frob", ""}, {"zzzzzzzz", ""},
	} {
		got := suggest(tt.word, []string{"status", "sandbox", "ssh", "show", "snapshot", "job"})
		require.Equal(t, tt.want, got, tt.word)
	}
}

func TestProfileValidate(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", "name: good\ntemplate_vmid: 9000\n")
	bad := writeFile(t, dir, "bad.yaml", "name: bad\ntemplate_vmid: 9000\nnetwork:\n  mood: nat\n")
	r := runCLI(t, "profile", "validate", good)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "ok: 1 profile (good)\n", r.stdout)
	r = runCLI(t, "profile", "validate", bad)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "bad.yaml:4: mood: unknown key")
	_ = os.Remove(bad)
}

// TestProgressOnlyOnTerminal checks that live progress appears on a
// terminal and never in JSON mode or on a pipe.
func TestProgressOnlyOnTerminal(t *testing.T) {
	e := newSimEnv(t, simOptions{})
	for _, tt := range []struct {
		name     string
		tty      bool
		args     []string
		progress bool
	}{
		{"terminal", true, []string{"sandbox", "new", "--profile", "minimal"}, true},
		{"terminal json", true, []string{"sandbox", "new", "--profile", "minimal", "--json"}, false},
		{"pipe", false, []string{"sandbox", "new", "--profile", "minimal"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			tty := tt.tty
			c := &cli{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
				getenv: os.Getenv, forceTTY: &tty}
			code := c.main(testCtx(t), append([]string{"--config", e.cfg}, tt.args...))
			require.Equal(t, 0, code, stderr.String())
			has := strings.Contains(stderr.String(), "sandbox.state: REQUESTED -> PROVISIONING")
			require.Equal(t, tt.progress, has, stderr.String())
		})
	}
}

// TestShellWithoutTerminal feeds a script to "ssh VMID" on a pipe, which
// runs the login shell without a terminal, as OpenSSH does.
func TestShellWithoutTerminal(t *testing.T) {
	e := newSimEnv(t, simOptions{})
	e.newSandbox("--profile", "minimal")
	var stdout, stderr bytes.Buffer
	code := run(testCtx(t), []string{"--config", e.cfg, "ssh", "1000"},
		strings.NewReader("echo piped-$((1+1))\nexit 4\n"), &stdout, &stderr)
	require.Equal(t, 4, code, stderr.String())
	require.Equal(t, "piped-2\n", stdout.String())
	code = run(testCtx(t), []string{"--config", e.cfg, "ssh", "1000", "--", "cat"},
		strings.NewReader("through stdin\n"), &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	require.Equal(t, "piped-2\nthrough stdin\n", stdout.String())
}
