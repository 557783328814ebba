package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	px "github.com/luthermonson/go-proxmox"
	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
	"github.com/agentlab-sdk/agentlab/sshx"
)

// simOptions configures the simulator "sim serve" and "demo" run.
type simOptions struct {
	addr       string
	nodes      []string
	taskDelay  time.Duration
	delays     map[string]time.Duration
	agentDelay time.Duration
	seed       int64
	faults     []pvesim.Fault
	noFirewall bool
}

// simTemplates are the templates every simulator starts with.
var simTemplates = []struct {
	vmid int
	name string
}{{9000, "debian-minimal"}, {9001, "agent-dev"}, {9999, "ubuntu-24-04-ai"}}

// simGroups are the security groups the simulator's datacenter defines, so
// that profiles naming them (as in the predecessor's tests) provision.
var simGroups = []string{"agent_nat_default", "agent_nat_off", "agent_nat_allow"}

const simTokenID = "root@pam!agentlab-lite"

// startSim starts a simulator whose state lives in dir: it writes the
// profiles (unless present), the token, the CA and dir/config.yaml, and
// returns the server and the loaded configuration. The caller closes the
// server.
func startSim(ctx context.Context, dir string, o simOptions) (*pvesim.Server, *config, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create sim directory: %w", err)
	}
	signer, err := sshx.LoadOrCreateKey(filepath.Join(dir, "id_ed25519"))
	if err != nil {
		return nil, nil, fmt.Errorf("create ssh key: %w", err)
	}
	simDir := filepath.Join(dir, "sim")
	if err := os.RemoveAll(simDir); err != nil { // guests of an earlier run are gone
		return nil, nil, fmt.Errorf("clear sim directory: %w", err)
	}
	secret := randomHex(16)
	srv, err := pvesim.NewServer(pvesim.Config{Addr: o.addr, Nodes: o.nodes,
		Tokens: map[string]string{simTokenID: secret}, TaskDelays: o.delays,
		DefaultTaskDelay: o.taskDelay, AgentDelay: o.agentDelay, Seed: o.seed, Dir: simDir,
		JumpAuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	if err != nil {
		return nil, nil, fmt.Errorf("start simulator: %w", err)
	}
	cfg, err := setupSim(ctx, srv, dir, secret, o)
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	return srv, cfg, nil
}

func setupSim(ctx context.Context, srv *pvesim.Server, dir, secret string, o simOptions) (
	*config, error) {
	node := srv.Nodes()[0]
	for _, t := range simTemplates {
		if err := srv.AddTemplate(node, t.vmid, t.name, nil); err != nil {
			return nil, fmt.Errorf("add template %d: %w", t.vmid, err)
		}
	}
	if err := setupFirewall(ctx, srv, !o.noFirewall); err != nil {
		return nil, err
	}
	for _, f := range o.faults {
		srv.InjectFault(f)
	}
	if err := writeSimProfiles(filepath.Join(dir, "profiles")); err != nil {
		return nil, err
	}
	if err := writeSimConfig(srv, dir, secret); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "config.yaml")
	return loadConfig(path, "sim serve", os.Getenv)
}

// setupFirewall creates the security groups and turns the datacenter
// firewall on (unless told not to), as an administrator would.
func setupFirewall(ctx context.Context, srv *pvesim.Server, enable bool) error {
	client := px.NewClient(srv.URL(), px.WithHTTPClient(srv.Client()),
		px.WithAPIToken(srv.TokenID(), srv.TokenSecret()))
	for _, g := range simGroups {
		if err := client.Post(ctx, "/cluster/firewall/groups",
			map[string]any{"group": g}, nil); err != nil {
			return fmt.Errorf("create security group %s: %w", g, err)
		}
	}
	if !enable {
		return nil
	}
	err := client.Put(ctx, "/cluster/firewall/options", map[string]any{"enable": 1}, nil)
	if err != nil {
		return fmt.Errorf("enable datacenter firewall: %w", err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

func writeSimConfig(srv *pvesim.Server, dir, secret string) error {
	if err := os.WriteFile(filepath.Join(dir, "pve-token"), []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	ca := filepath.Join(dir, "pve-root-ca.pem")
	if err := os.WriteFile(ca, srv.CACertPEM(), 0o600); err != nil {
		return fmt.Errorf("write CA: %w", err)
	}
	jumpAddr, jumpKey, jumpUser := srv.JumpHost()
	body := fmt.Sprintf(simConfigTemplate, time.Now().UTC().Format(time.RFC3339), srv.URL(),
		simTokenID, srv.Fingerprint(), strings.Join(srv.Nodes(), ", "), jumpAddr, jumpUser,
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(jumpKey))))
	path := filepath.Join(dir, "config.yaml")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return os.Rename(tmp, path)
}

const simConfigTemplate = `# Written by "agentlab-lite sim serve" at %s; rewritten on every start.
# Use it with: export AGENTLAB_CONFIG=<this file>
proxmox:
  url: %s
  token_id: %s
  token_secret_file: pve-token
  tls:
    ca_file: pve-root-ca.pem
    fingerprint: %s
  nodes: [%s]
  guest_cidr: 10.77.0.0/16
  poll_interval: 50ms
vmid_min: 1000
vmid_max: 1999
ssh:
  key: id_ed25519
  jump:
    addr: %s
    user: %s
    host_key: %s
profiles_dir: profiles
database: agentlab.db
artifacts_dir: artifacts
state_dir: state
timeouts:
  ready: 2m
  stop: 10s
  job_heartbeat: 1m
`

// simJobCommand is the plain-shell job command of the simulator's profiles:
// it prints the task and the checkout, sleeps a minute when the task asks
// for slowness (to exercise cancel and destroy mid-run), and writes a
// result artifact.
const simJobCommand = `echo "task: $(cat "$AGENTLAB_TASK_FILE")"
echo "job: $AGENTLAB_JOB_ID mode: $AGENTLAB_JOB_MODE"
ls -A
case "$(cat "$AGENTLAB_TASK_FILE")" in *slow*) sleep 60 ;; *) sleep 1 ;; esac
echo "ok: $(ls -A | wc -l) entries" > result.txt
echo done`

var simProfiles = map[string]string{
	"minimal": `name: minimal
template_vmid: 9000
network:
  mode: nat
resources:
  cores: 1
  memory_mb: 1024
behavior:
  ttl_minutes_default: 60
`,
	"yolo-ephemeral": `name: yolo-ephemeral
template_vmid: 9001
network:
  bridge: vmbr1
  model: virtio
  mode: nat
resources:
  cores: 2
  memory_mb: 4096
storage:
  root_size_gb: 20
behavior:
  mode: dangerous
  keepalive_default: false
  ttl_minutes_default: 120
job:
  artifacts: [result.txt]
  command: |
`,
	"yolo-workspace": `name: yolo-workspace
template_vmid: 9001
network:
  mode: nat
resources:
  cores: 2
  memory_mb: 4096
behavior:
  mode: dangerous
  keepalive_default: true
  ttl_minutes_default: 480
job:
  artifacts: [result.txt]
  command: |
`,
	"interactive-dev": `name: interactive-dev
template_vmid: 9001
network:
  mode: nat
resources:
  cores: 4
  memory_mb: 8192
behavior:
  keepalive_default: true
  ttl_minutes_default: 720
  idle_stop_minutes: 120
job:
  command: |
`,
}

// writeSimProfiles writes the simulator's profiles, leaving files that
// already exist (the user may have edited them) alone.
func writeSimProfiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create profiles directory: %w", err)
	}
	for name, body := range simProfiles {
		path := filepath.Join(dir, name+".yaml")
		if _, err := os.Stat(path); err == nil {
			continue
		}
		if strings.HasSuffix(body, "command: |\n") {
			body += indent(simJobCommand, "    ") + "\n"
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			return fmt.Errorf("write profile %s: %w", name, err)
		}
	}
	return nil
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

func cmdSimServe(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	dir := fs.String("dir", "", "state `directory`: config.yaml, profiles, database (required)")
	var o simOptions
	fs.StringVar(&o.addr, "addr", "127.0.0.1:0", "API listen `address`")
	nodes := fs.String("nodes", "pve1", "comma-separated node `names`")
	fs.DurationVar(&o.taskDelay, "task-delay", 0, "how long every task runs")
	delays := pairsFlag{}
	fs.Var(delays, "delay", "task `TYPE=DURATION`, e.g. qmclone=2s (repeatable)")
	fs.DurationVar(&o.agentDelay, "agent-delay", 0, "how long after start the guest agent answers")
	fs.Int64Var(&o.seed, "seed", 1, "seed of probabilistic faults")
	var faults listFlag
	fs.Var(&faults, "fault", "inject a fault: comma-separated `SPEC`, e.g. "+
		"fail-task=qmclone,count=1 or status=500,path=/status/current$,prob=0.2 (repeatable)")
	fs.BoolVar(&o.noFirewall, "no-firewall", false, "leave the datacenter firewall off "+
		"(provisioning then warns that isolation is not enforced)")
	noMaintain := fs.Bool("no-maintain", false, "do not run the maintenance loop "+
		"(reconcile, lease reaper, job takeover) on the simulator's database")
	_, _, err := c.args(fs, args, 0, 0)
	if err != nil {
		return err
	}
	if *dir == "" {
		return usagef(c.helpRef(), "missing --dir")
	}
	if o.nodes, o.delays, o.faults, err = simFlags(*nodes, delays, faults); err != nil {
		return usagef(c.helpRef(), "%v", err)
	}
	if o.taskDelay < 0 || o.agentDelay < 0 {
		return usagef(c.helpRef(), "--task-delay and --agent-delay must not be negative")
	}
	if err := c.act(); err != nil {
		return err
	}
	absDir, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	srv, cfg, err := startSim(ctx, absDir, o)
	if err != nil {
		return err
	}
	defer srv.Close()
	c.simBanner(srv, cfg)
	if *noMaintain {
		<-ctx.Done()
		return nil
	}
	return c.maintainConfig(ctx, cfg, nil)
}

// simFlags checks and converts the simulator flags that need parsing:
// the node list, the per-task delays and the fault specs.
func simFlags(nodes string, delays pairsFlag, faults listFlag) ([]string,
	map[string]time.Duration, []pvesim.Fault, error) {
	ns, err := parseNodes(nodes)
	if err != nil {
		return nil, nil, nil, err
	}
	ds := map[string]time.Duration{}
	for k, v := range delays {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return nil, nil, nil, fmt.Errorf("--delay %s=%s: want a duration such as 2s", k, v)
		}
		ds[k] = d
	}
	var fs []pvesim.Fault
	for _, spec := range faults {
		f, err := parseFault(spec)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--fault %q: %w", spec, err)
		}
		fs = append(fs, f)
	}
	return ns, ds, fs, nil
}

var nodeRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// parseNodes reads the comma-separated --nodes list: distinct host names.
func parseNodes(s string) ([]string, error) {
	var ns []string
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		switch {
		case !nodeRE.MatchString(n):
			return nil, fmt.Errorf("--nodes: %q is not a node name (letters, digits and -)", n)
		case slices.Contains(ns, n):
			return nil, fmt.Errorf("--nodes: %q is listed twice", n)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// parseFault reads a fault spec: comma-separated key=value settings and
// flags (drop-conn, drop-response, lock-timeout, nextid-taken,
// apply-anyway). Every setting is checked; a fault that does nothing is
// refused.
func parseFault(spec string) (pvesim.Fault, error) {
	var f pvesim.Fault
	seen := map[string]bool{}
	for _, part := range strings.Split(spec, ",") {
		k, v, hasVal := strings.Cut(strings.TrimSpace(part), "=")
		switch {
		case k == "":
			return pvesim.Fault{}, errors.New("empty setting (a stray comma?)")
		case seen[k]:
			return pvesim.Fault{}, fmt.Errorf("setting %q given twice", k)
		}
		seen[k] = true
		if err := setFault(&f, k, v, hasVal); err != nil {
			return pvesim.Fault{}, err
		}
	}
	if f.Status == 0 && f.Latency == 0 && !f.DropConn && !f.DropResponse &&
		f.FailTask == "" && !f.LockTimeout && !f.NextIDTaken {
		return pvesim.Fault{}, errors.New("the fault does nothing: give status, latency, " +
			"drop-conn, drop-response, fail-task, lock-timeout or nextid-taken")
	}
	return f, nil
}

// faultFlags are the fault settings that take no value (or a boolean).
var faultFlags = map[string]func(*pvesim.Fault) *bool{
	"drop-conn":     func(f *pvesim.Fault) *bool { return &f.DropConn },
	"drop-response": func(f *pvesim.Fault) *bool { return &f.DropResponse },
	"lock-timeout":  func(f *pvesim.Fault) *bool { return &f.LockTimeout },
	"nextid-taken":  func(f *pvesim.Fault) *bool { return &f.NextIDTaken },
	"apply-anyway":  func(f *pvesim.Fault) *bool { return &f.ApplyAnyway },
}

var (
	methodRE   = regexp.MustCompile(`^[A-Za-z]{1,16}$`)
	taskTypeRE = regexp.MustCompile(`^(\*|[a-z][a-z0-9]{0,31})$`)
)

// setFault applies one setting k=v of a fault spec.
func setFault(f *pvesim.Fault, k, v string, hasVal bool) error {
	if ptr, ok := faultFlags[k]; ok {
		b, err := true, error(nil)
		if hasVal {
			if b, err = strconv.ParseBool(v); err != nil {
				return fmt.Errorf("%s=%q: want true or false (or no value)", k, v)
			}
		}
		*ptr(f) = b
		return nil
	}
	if !hasVal {
		return fmt.Errorf("setting %q needs a value (%s=...) or is unknown", k, k)
	}
	var err error
	switch k {
	case "method":
		f.Method = strings.ToUpper(v)
		err = matchErr(methodRE, v, "an HTTP method such as POST")
	case "path":
		f.Path, err = regexp.Compile(v)
	case "vmid":
		f.VMID, err = strconv.Atoi(v)
		if err == nil && f.VMID != 0 {
			err = checkVMID(f.VMID)
		}
	case "status":
		f.Status, err = strconv.Atoi(v)
		if err == nil && (f.Status < 400 || f.Status > 599) {
			err = errors.New("want an error status, 400-599")
		}
	case "message":
		f.Message = v
	case "latency":
		f.Latency, err = time.ParseDuration(v)
		if err == nil && f.Latency < 0 {
			err = errors.New("the latency is negative")
		}
	case "fail-task":
		f.FailTask = v
		err = matchErr(taskTypeRE, v, "a task type such as qmclone, or *")
	case "count":
		f.Count, err = strconv.Atoi(v)
		if err == nil && f.Count < 0 {
			err = errors.New("the count is negative")
		}
	case "prob":
		f.Probability, err = strconv.ParseFloat(v, 64)
		if err == nil && !(f.Probability > 0 && f.Probability <= 1) {
			err = errors.New("want a probability in (0, 1]")
		}
	default:
		return fmt.Errorf("unknown setting %q", k)
	}
	if err != nil {
		return fmt.Errorf("%s=%q: %w", k, v, err)
	}
	return nil
}

func matchErr(re *regexp.Regexp, v, want string) error {
	if !re.MatchString(v) {
		return errors.New("want " + want)
	}
	return nil
}

func (c *cli) simBanner(srv *pvesim.Server, cfg *config) {
	ids := make([]string, len(simTemplates))
	for i, t := range simTemplates {
		ids[i] = strconv.Itoa(t.vmid)
	}
	jump, _, _ := srv.JumpHost()
	fmt.Fprintf(c.stdout, `pvesim: Proxmox VE API on %s (nodes %s, templates %s)
jump host for guests: %s
config: %s

Try it in another shell:
  export AGENTLAB_CONFIG=%s
  agentlab-lite profile list
  agentlab-lite sandbox new --profile yolo-ephemeral --name try-1 --ttl 45m

Ctrl-C stops the simulator (its VMs go with it).
`, srv.URL(), strings.Join(srv.Nodes(), ","), strings.Join(ids, " "), jump, cfg.Path, cfg.Path)
}
