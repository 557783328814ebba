package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// Fuzz targets for every parser of the CLI: the command line (routing,
// flags before and after positional arguments, --json anywhere), --ttl,
// the configuration file, cp's VMID:/path, --label, --env and --secret,
// and the simulator's --fault and --nodes. Each asserts properties of the
// result, not only the absence of a panic. Their seed corpora are in
// testdata/fuzz; run one with
//
//	go test -run '^$' -fuzz FuzzParseTTL -fuzztime 20s ./cmd/agentlab-lite

func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"120", "45m", "2h", "never", "none", "0", "30s", "-5", "",
		"1m30s", "525600", "525601", "8760h", "8760h1ns", "99999999999999999999", "2562048h",
		" 15 ", "+5", "1.5h", "-9999999999999h", "1e3", "5 m", "0x10", "1m-1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseTTL(s)
		if err != nil {
			require.Zero(t, d)
			require.Contains(t, []error{errTTLSyntax, errTTLShort, errTTLTooLong}, err)
			return
		}
		if d == -1 {
			require.Contains(t, []string{"never", "none"}, strings.TrimSpace(s))
			return
		}
		require.GreaterOrEqual(t, d, time.Minute, "accepted leases are at least a minute")
		require.LessOrEqual(t, d, maxTTL)
		back, err := parseTTL(d.String())
		require.NoError(t, err, "%q accepted as %v, which does not parse back", s, d)
		require.Equal(t, d, back)
		if d%time.Minute == 0 {
			back, err = parseTTL(strconv.FormatInt(int64(d/time.Minute), 10))
			require.NoError(t, err)
			require.Equal(t, d, back, "whole minutes round-trip as a bare number")
		}
	})
}

// fuzzSecrets are the token secrets the fuzzed configurations can reach
// through token_secret_file and token_secret_env; no error may show them.
const (
	fuzzFileSecret = "file-secret-5f0c2d8e"
	fuzzEnvSecret  = "env-secret-9a41b7c3"
)

func fuzzConfigEnv() configEnv {
	return configEnv{
		getenv: func(k string) string {
			return map[string]string{"PVE_SECRET": fuzzEnvSecret, "BLANK": " \t"}[k]
		},
		readFile: func(p string, limit int64) ([]byte, error) {
			switch filepath.Base(p) {
			case "pve-token":
				return []byte(fuzzFileSecret + "\n"), nil
			case "empty-token":
				return nil, nil
			}
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		},
	}
}

func FuzzConfig(f *testing.F) {
	const head = "proxmox:\n  url: https://pve1.example.net:8006\n  token_id: agentlab@pve!cli\n"
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMaXEr8HppsE/j0LhgAhRbBFxHz0PFOYjxLt8XI36rD7"
	for _, s := range []string{
		head + "  token_secret_file: pve-token\n",
		head + "  token_secret_env: PVE_SECRET\n  guest_cidr: 10.77.0.9/16\n",
		head + "  token_secret: abc\n  tls:\n    fingerprint: " +
			strings.Repeat("AB:", 31) + "AB\n  nodes: [pve1, pve2]\nvmid_min: 1000\n" +
			"vmid_max: 1999\nssh:\n  jump:\n    addr: pve1\n    host_key: " + key + "\n" +
			"timeouts:\n  ready: 2m\nprofiles_dir: ~/profiles\n",
		head + "  token_secret_env: BLANK\n",
		head + "  token_secret_file: empty-token\n",
		head + "  token_secret: 'a b'\n",
		head + "  token_secret: x\n  poll_interval: -1s\n",
		head + "  token_secret: x\n---\nvmid_min: 5\n",
		"proxmox:\n  url: http://pve\n  token_id: a@pve!b\n  token_secret: x\n",
		"proxmox: &a [*a]\n",
		"a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b]\n",
		"vmid_min: 0x10\n", "", "{}", "- 1\n", "proxmox:\n  colour: red\n",
	} {
		f.Add([]byte(s))
	}
	const path = "/nonexistent/agentlab/config.yaml"
	env := fuzzConfigEnv()
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig(path, data, env)
		if err != nil {
			var ce *configError
			require.ErrorAs(t, err, &ce, "every config error is a configError")
			msg := err.Error()
			require.Contains(t, msg, path, "the error names the file")
			require.NotContains(t, msg, fuzzFileSecret)
			require.NotContains(t, msg, fuzzEnvSecret)
			return
		}
		checkConfig(t, cfg)
		// What was read writes back and reads again to the same settings.
		out, err := yaml.Marshal(cfg.fileConfig)
		require.NoError(t, err)
		again, err := parseConfig(path, out, env)
		require.NoError(t, err, "re-reading\n%s", out)
		require.Equal(t, cfg, again)
	})
}

// checkConfig asserts what every accepted configuration satisfies.
func checkConfig(t *testing.T, cfg *config) {
	t.Helper()
	p := cfg.Proxmox
	require.NotEmpty(t, p.URL)
	require.Regexp(t, `^[^@!\s]+@[^@!\s]+![A-Za-z]`, p.TokenID)
	require.Contains(t, []string{"abc", fuzzFileSecret, fuzzEnvSecret, strings.TrimSpace(
		p.TokenSecret)}, cfg.TokenSecret)
	require.NotEmpty(t, cfg.TokenSecret)
	require.Equal(t, -1, strings.IndexFunc(cfg.TokenSecret, func(r rune) bool {
		return r <= ' ' || r == 0x7f
	}))
	for _, path := range []string{cfg.ProfilesDir, cfg.Database, cfg.ArtifactsDir,
		cfg.StateDir, cfg.SSH.Key} {
		require.True(t, filepath.IsAbs(path), path)
	}
	require.True(t, p.TLS.CAFile == "" || filepath.IsAbs(p.TLS.CAFile))
	if cfg.VMIDMin != 0 || cfg.VMIDMax != 0 {
		require.True(t, minVMID <= cfg.VMIDMin && cfg.VMIDMin <= cfg.VMIDMax &&
			cfg.VMIDMax <= maxVMID, "%d-%d", cfg.VMIDMin, cfg.VMIDMax)
	}
	for _, d := range []duration{p.PollInterval, cfg.SSH.ConnectTimeout, cfg.Timeouts.Ready,
		cfg.Timeouts.Stop, cfg.Timeouts.JobHeartbeat, cfg.Maintenance.ReconcileInterval,
		cfg.Maintenance.ReapInterval, cfg.Maintenance.IdleInterval} {
		require.GreaterOrEqual(t, d, duration(0))
	}
	require.GreaterOrEqual(t, p.CloneConcurrency, 0)
	require.Equal(t, p.GuestCIDR != "", cfg.GuestCIDR.IsValid())
	if j := cfg.SSH.Jump; j.Addr != "" {
		_, port, err := net.SplitHostPort(j.Addr)
		require.NoError(t, err, j.Addr)
		require.NotEmpty(t, port)
		_, _, _, _, err = ssh.ParseAuthorizedKey([]byte(j.HostKey))
		require.NoError(t, err, "a jump host always has a pinned key")
	}
}

// fuzzDir is an empty directory the command-line fuzz target runs in, to
// check that rejected and dry-run command lines leave no file behind.
func fuzzDir(f *testing.F) string {
	f.Helper()
	dir := f.TempDir()
	f.Chdir(dir)
	return dir
}

// argSeeds are command lines of the predecessor's log and of misuse.
var argSeeds = []string{
	"--version", "status", "profile list", "profile validate a.yaml b.yaml",
	"--json sandbox new --profile yolo-ephemeral --name live-lifecycle-132617 --ttl 45m",
	"sandbox new --profile minimal --vmid 1053 --name vmid-conflict-152315 --ttl 15 --json",
	"sandbox show 1065", "sandbox pause 1065", "sandbox snapshot save --force 1065 livecheck1",
	"sandbox snapshot restore --force 1098 livefix2", "sandbox lease renew --ttl 90m 1065",
	"logs 1065 --tail 40", "sandbox destroy --force 1065", "--json sandbox show 1097",
	"ssh 1075 --wait --exec -- sh -c \"'cat /tmp/al_state.txt'\"",
	"ssh 1074 --wait -- bash -lc 'echo ORIGINAL > /tmp/al_state.txt'",
	"--json job run --repo https://github.com/octocat/Hello-World.git --task slow " +
		"--profile yolo-ephemeral --ttl 90m",
	"--json job show job_e3bedcaa758dbb57", "job list --status FAILED --limit 3",
	"sandbox list --state RUNNING --label team=a", "cp ./f 1074:/tmp/", "cp 1074:/etc/x .",
	"exec 1074 --env A=1 -- printf %s x", "sim serve --dir d --fault status=500,prob=0.5",
	"sim serve --dir d --nodes a,b --delay qmclone=2s", "demo --keep d", "completion bash",
	"help config", "help sandbox new", "sandbox --help", "reconcile --apply",
	"sandbox new --profile p --ttl 0", "sandbox new --profile p --frob",
	"--config", "sandbx list", "sandbox", "--json=maybe status", "job show ''",
	"sandbox new --profile p --label 'bad key=1'", "job run --profile p --task t --env 1=2",
	"job run --profile p --task-file - --task t", "job logs j --tail -1",
}

// fuzzRun runs one dry command line and returns the exit code, the cli
// (for its parsed options) and the two outputs.
func fuzzRun(t *testing.T, args []string) (int, *cli, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, dryRun: true,
		getenv: func(string) string { return "" }}
	code := c.main(t.Context(), args)
	return code, c, stdout.String(), stderr.String()
}

func FuzzArgs(f *testing.F) {
	for _, s := range argSeeds {
		f.Add(strings.Join(shellWords(s), "\x00"))
	}
	dir := fuzzDir(f)
	f.Fuzz(func(t *testing.T, line string) {
		var args []string
		if line != "" {
			args = strings.Split(line, "\x00")
		}
		code, c, stdout, stderr := fuzzRun(t, args)
		require.Contains(t, []int{exitOK, exitFailure, exitUsage}, code)
		if code == exitOK {
			require.Empty(t, stderr, "success writes nothing to stderr")
		} else {
			checkErrorOutput(t, code, stderr)
			require.Empty(t, stdout, "a failed command line prints nothing on stdout")
		}
		require.Empty(t, entries(t, dir), "the command line left a file behind")

		// --json before everything changes nothing but the output form.
		code2, _, _, _ := fuzzRun(t, append([]string{"--json"}, args...))
		require.Equal(t, code, code2, "--json in front of %q", args)
		// --json at the end of an accepted command line switches JSON on
		// (unless a -- hands the rest to a guest command).
		if code == exitOK && stdout == "" && !slices.Contains(args, "--") {
			code3, c3, _, stderr3 := fuzzRun(t, append(slices.Clone(args), "--json"))
			require.Equal(t, exitOK, code3, "--json after %q: %s", args, stderr3)
			require.True(t, c3.json)
			require.Equal(t, c.configPath, c3.configPath)
		}
	})
}

// checkErrorOutput asserts the error format: one "error:" line first,
// then "next:" and "hint:" lines (usage errors always point at help).
func checkErrorOutput(t *testing.T, code int, stderr string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "error: ") })
	require.GreaterOrEqual(t, i, 0, "no error line in %q", stderr)
	require.Greater(t, len(strings.TrimPrefix(lines[i], "error: ")), 0)
	rest := lines[i+1:]
	for _, l := range rest {
		require.True(t, strings.HasPrefix(l, "next: ") || strings.HasPrefix(l, "hint: "),
			"after the error line: %q", l)
	}
	if code == exitUsage {
		require.NotEmpty(t, rest, "a usage error says where to look next")
		require.True(t, strings.HasPrefix(rest[0], "next: agentlab-lite "), rest[0])
	}
}

func FuzzParseCopy(f *testing.F) {
	for _, p := range [][2]string{{"f.txt", "1074:/tmp/"}, {"1074:/etc/hosts", "."},
		{"1074:", "x"}, {"a", "1074:"}, {"/", "1074:"}, {"1074:a", "1075:b"}, {"a", "b"},
		{"1074:..", "d/"}, {"", "1074:x"}, {"web-1:~/x", "out/"}, {"./1074:x", "1074:y"},
		{"C:/x", "y"}, {"1074:dir/", "local"}} {
		f.Add(p[0], p[1])
	}
	fuzzDir(f)
	f.Fuzz(func(t *testing.T, src, dst string) {
		srcT, srcP, srcRemote := splitRemote(src)
		dstT, dstP, dstRemote := splitRemote(dst)
		for _, r := range []struct {
			s, target, path string
			ok              bool
		}{{src, srcT, srcP, srcRemote}, {dst, dstT, dstP, dstRemote}} {
			if r.ok {
				require.Equal(t, r.s, r.target+":"+r.path)
				require.Regexp(t, `^([0-9]+|[A-Za-z0-9][A-Za-z0-9-]*)$`, r.target)
			}
		}
		plan, err := parseCopy(src, dst)
		if err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		require.NotEqual(t, srcRemote, dstRemote, "exactly one side is the guest")
		require.NotEmpty(t, src)
		require.NotEmpty(t, dst)
		if plan.download {
			require.Equal(t, srcT, plan.target)
			require.Equal(t, srcP, plan.remote)
			require.Equal(t, dst, plan.local)
			base := guestBase(srcP)
			require.NotEmpty(t, base)
			require.NotContains(t, base, "/")
			require.Contains(t, []string{dst, filepath.Join(dst, base)}, plan.localTarget)
			return
		}
		require.Equal(t, dstT, plan.target)
		require.Equal(t, src, plan.local)
		require.True(t, strings.HasPrefix(plan.remote, dstP), plan.remote)
		require.NotEmpty(t, plan.remote, "an upload always names its destination")
		if dstP == "" || strings.HasSuffix(dstP, "/") {
			base := strings.TrimPrefix(plan.remote, dstP)
			require.Equal(t, filepath.Base(filepath.Clean(src)), base)
			require.NotContains(t, []string{"", "/", ".", ".."}, base)
		} else {
			require.Equal(t, dstP, plan.remote)
		}
	})
}

func FuzzLabelFlag(f *testing.F) {
	for _, s := range []string{"team=a", "a=", "=a", "a", "a.b/c-d_e=x=y", "-a=1", "a-=1",
		"bad key=1", strings.Repeat("k", 64) + "=v", strings.Repeat("k", 65) + "=v",
		"k=" + strings.Repeat("v", 257), "k\n=v", "é=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l := labelsFlag{}
		if err := l.Set(s); err != nil {
			require.Empty(t, l, "a rejected label is not kept")
			k, _, ok := strings.Cut(s, "=")
			if ok && k != "" {
				require.Contains(t, err.Error(), strconv.Quote(k), "the error names the key")
			} else {
				require.ErrorContains(t, err, "is not key=value")
			}
			return
		}
		require.Len(t, l, 1)
		for k, v := range l {
			require.Regexp(t, labelKeyRE, k)
			require.LessOrEqual(t, len(k), 64)
			require.LessOrEqual(t, len(v), maxLabelValue)
			require.Equal(t, s, k+"="+v, "the first = splits key and value")
		}
		again := labelsFlag{}
		require.NoError(t, again.Set(l.String()))
		require.Equal(t, l, again, "a label round-trips through its printed form")
	})
}

func FuzzEnvFlag(f *testing.F) {
	for _, s := range []string{"A=1", "_x=", "1A=2", "A", "A B=1", "PATH=/bin:/usr/bin",
		"TOKEN=GH_TOKEN", "=x", "A=B=C", "ä=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := envFlag{}
		if err := e.Set(s); err != nil {
			require.Empty(t, e)
			require.NotEmpty(t, err.Error())
		} else {
			require.Len(t, e, 1)
			for k, v := range e {
				require.Regexp(t, envNameRE, k)
				require.Equal(t, s, k+"="+v)
			}
		}
		name, from, err := parseSecret(s)
		if err != nil {
			require.Contains(t, err.Error(), "is not an environment variable name")
			return
		}
		require.Regexp(t, envNameRE, name)
		require.Regexp(t, envNameRE, from)
		if !strings.Contains(s, "=") {
			require.Equal(t, s, name)
			require.Equal(t, s, from)
		} else {
			require.Equal(t, s, name+"="+from)
		}
	})
}

func FuzzFaultSpec(f *testing.F) {
	for _, s := range []string{"fail-task=qmclone,count=1", "status=500,path=/status/current$," +
		"prob=0.2,method=get", "latency=300ms", "drop-conn", "drop-response=false,status=503",
		"lock-timeout,fail-task=*", "nextid-taken", "count=1", "status=200", "prob=1.5,status=500",
		"status=500,,", "status=500,status=502", "path=(,status=500", "vmid=5,status=500",
		"latency=-1s", "message=boom,status=595,apply-anyway", "prob=NaN,status=500"} {
		f.Add(s, "pve1,pve2")
	}
	f.Add("status=500", "pve1,,pve2")
	f.Add("status=500", "pve1, pve1")
	f.Fuzz(func(t *testing.T, spec, nodes string) {
		flt, err := parseFault(spec)
		if err != nil {
			require.NotEmpty(t, err.Error())
			_, _, _, err2 := simFlags("pve1", pairsFlag{}, listFlag{spec})
			require.ErrorContains(t, err2, fmt.Sprintf("--fault %q: ", spec),
				"the error names the spec")
		} else {
			require.True(t, flt.Status != 0 || flt.Latency != 0 || flt.DropConn ||
				flt.DropResponse || flt.FailTask != "" || flt.LockTimeout || flt.NextIDTaken,
				"an accepted fault does something")
			require.True(t, flt.Status == 0 || (flt.Status >= 400 && flt.Status <= 599))
			require.True(t, flt.Probability == 0 ||
				(flt.Probability > 0 && flt.Probability <= 1))
			require.GreaterOrEqual(t, flt.Count, 0)
			require.GreaterOrEqual(t, flt.Latency, time.Duration(0))
			require.NoError(t, checkVMID(flt.VMID))
			require.Equal(t, strings.ToUpper(flt.Method), flt.Method)
		}
		ns, err := parseNodes(nodes)
		if err != nil {
			require.ErrorContains(t, err, "--nodes: ")
			return
		}
		require.NotEmpty(t, ns)
		for i, n := range ns {
			require.Regexp(t, nodeRE, n)
			require.NotContains(t, ns[:i], n, "node names are distinct")
		}
		again, err := parseNodes(strings.Join(ns, ","))
		require.NoError(t, err)
		require.Equal(t, ns, again)
	})
}

// shellWords splits a seed command line like a POSIX shell would, for the
// simple quoting the seeds use ('...' and "...").
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	in, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

func TestShellWords(t *testing.T) {
	require.Equal(t, []string{"ssh", "1", "--", "sh", "-c", "'cat x'"},
		shellWords(`ssh 1 -- sh -c "'cat x'"`))
	require.Equal(t, []string{"job", "show", ""}, shellWords("job show ''"))
}

// TestSeedCommandLines runs the argument seeds once as a table: each is
// accepted or refused with the documented exit code, and no seed leaves a
// file behind.
func TestSeedCommandLines(t *testing.T) {
	t.Chdir(t.TempDir())
	want := map[string]int{"sandbox new --profile p --ttl 0": 2, "--config": 2,
		"sandbx list": 2, "sandbox": 2, "--json=maybe status": 2, "job show ''": 2,
		"sandbox new --profile p --frob": 2, "sandbox new --profile p --label 'bad key=1'": 2,
		"job run --profile p --task t --env 1=2": 2, "job logs j --tail -1": 2,
		"job run --profile p --task-file - --task t": 2}
	for _, s := range argSeeds {
		code, _, _, stderr := fuzzRun(t, shellWords(s))
		require.Equal(t, want[s], code, "%s: %s", s, stderr)
	}
	require.Empty(t, entries(t, "."))
}
