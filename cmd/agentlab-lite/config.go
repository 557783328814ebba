package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// fileConfig is the YAML configuration file. Every key is optional except
// the Proxmox URL, token ID and one source of the token secret; relative
// paths are relative to the file's directory.
type fileConfig struct {
	Proxmox      proxmoxConfig `yaml:"proxmox,omitempty"`
	VMIDMin      int           `yaml:"vmid_min,omitempty"`
	VMIDMax      int           `yaml:"vmid_max,omitempty"`
	Owner        string        `yaml:"owner,omitempty"`
	SSH          sshConfig     `yaml:"ssh,omitempty"`
	ProfilesDir  string        `yaml:"profiles_dir,omitempty"`
	Database     string        `yaml:"database,omitempty"`
	ArtifactsDir string        `yaml:"artifacts_dir,omitempty"`
	StateDir     string        `yaml:"state_dir,omitempty"`
	Timeouts     timeouts      `yaml:"timeouts,omitempty"`
	Maintenance  maintenance   `yaml:"maintenance,omitempty"`
}

type proxmoxConfig struct {
	URL              string    `yaml:"url,omitempty"`
	TokenID          string    `yaml:"token_id,omitempty"`
	TokenSecret      string    `yaml:"token_secret,omitempty"`
	TokenSecretFile  string    `yaml:"token_secret_file,omitempty"`
	TokenSecretEnv   string    `yaml:"token_secret_env,omitempty"`
	TLS              tlsConfig `yaml:"tls,omitempty"`
	Nodes            []string  `yaml:"nodes,omitempty"`
	GuestCIDR        string    `yaml:"guest_cidr,omitempty"`
	Bridge           string    `yaml:"bridge,omitempty"`
	Storage          string    `yaml:"storage,omitempty"`
	CloneConcurrency int       `yaml:"clone_concurrency,omitempty"`
	PollInterval     duration  `yaml:"poll_interval,omitempty"`
}

type tlsConfig struct {
	CAFile             string `yaml:"ca_file,omitempty"`
	Fingerprint        string `yaml:"fingerprint,omitempty"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify,omitempty"`
}

type sshConfig struct {
	Key             string     `yaml:"key,omitempty"`
	TrustOnFirstUse bool       `yaml:"trust_on_first_use,omitempty"`
	ConnectTimeout  duration   `yaml:"connect_timeout,omitempty"`
	Jump            jumpConfig `yaml:"jump,omitempty"`
}

type jumpConfig struct {
	Addr    string `yaml:"addr,omitempty"`
	User    string `yaml:"user,omitempty"`
	HostKey string `yaml:"host_key,omitempty"`
}

type timeouts struct {
	Ready        duration `yaml:"ready,omitempty"`
	Stop         duration `yaml:"stop,omitempty"`
	JobHeartbeat duration `yaml:"job_heartbeat,omitempty"`
}

// maintenance tunes the maintenance process (reconcile --watch, sim
// serve); zero values keep the SDK's defaults.
type maintenance struct {
	ReconcileInterval duration `yaml:"reconcile_interval,omitempty"`
	ReapInterval      duration `yaml:"reap_interval,omitempty"`
	IdleInterval      duration `yaml:"idle_interval,omitempty"`
}

// duration is a time.Duration written as "90s", "5m" or "1h30m" in YAML.
type duration time.Duration

// MarshalYAML implements yaml.Marshaler, writing what UnmarshalYAML reads.
func (d duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: %q is not a duration such as 30s or 5m", n.Line, n.Value)
	}
	*d = duration(v)
	return nil
}

// config is the loaded configuration with defaults applied and paths made
// absolute.
type config struct {
	fileConfig
	Path        string // the file it came from
	Dir         string // the file's directory
	TokenSecret string // resolved from token_secret, _file or _env
	GuestCIDR   netip.Prefix
}

// configError reports a problem with the configuration file; the CLI prints
// it with a hint.
type configError struct {
	path    string
	line    int
	msg     string
	missing string // the required setting that is absent, if that is the problem
}

// Error implements error.
func (e *configError) Error() string {
	if e.missing != "" {
		return fmt.Sprintf("missing setting %s in %s", e.missing, e.path)
	}
	if e.line > 0 {
		return fmt.Sprintf("config %s:%d: %s", e.path, e.line, e.msg)
	}
	return fmt.Sprintf("config %s: %s", e.path, e.msg)
}

// missingConfigError reports that no configuration file exists at path.
type missingConfigError struct {
	path, source string
}

// Error implements error.
func (e *missingConfigError) Error() string {
	return fmt.Sprintf("no config file at %s (from %s)", e.path, e.source)
}

// configLocation returns the path of the configuration file and what chose
// it: the --config flag, $AGENTLAB_CONFIG, or the user config directory.
func configLocation(flagPath string, getenv func(string) string) (path, source string) {
	if flagPath != "" {
		return flagPath, "--config"
	}
	if p := getenv("AGENTLAB_CONFIG"); p != "" {
		return p, "AGENTLAB_CONFIG"
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = "."
	}
	return filepath.Join(dir, "agentlab", "config.yaml"), "the default location"
}

// maxConfigFile bounds the configuration file.
const maxConfigFile = 1 << 20

// loadConfig reads, strictly decodes and completes the configuration file.
func loadConfig(path, source string, getenv func(string) string) (*config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve config path: %w", err)
	}
	data, err := readLimited(abs, maxConfigFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &missingConfigError{path: abs, source: source}
	}
	if err != nil {
		return nil, &configError{path: abs, msg: err.Error()}
	}
	return parseConfig(abs, data, configEnv{getenv: getenv, readFile: readLimited})
}

// configEnv is what a configuration file may refer to outside itself: the
// environment (token_secret_env) and files (token_secret_file).
type configEnv struct {
	getenv   func(string) string
	readFile func(path string, limit int64) ([]byte, error)
}

// parseConfig decodes the configuration file's content; path (absolute)
// is where it came from, the base of relative paths. Every error is a
// *configError naming the file and the key or line at fault.
func parseConfig(path string, data []byte, env configEnv) (*config, error) {
	cfg := &config{Path: path, Dir: filepath.Dir(path)}
	if err := decodeStrict(path, data, &cfg.fileConfig); err != nil {
		return nil, err
	}
	if err := cfg.complete(env); err != nil {
		return nil, err
	}
	return cfg, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("file is larger than %d bytes", limit)
	}
	return data, nil
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// decodeStrict decodes one YAML document into v, refusing unknown keys and
// naming the line of the first problem.
func decodeStrict(path string, data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(v)
	if err == nil {
		var extra yaml.Node
		if dec.Decode(&extra) != io.EOF {
			return &configError{path: path, msg: "more than one YAML document " +
				"(a line with --- ?); the file holds one"}
		}
		return nil
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if f, ok := strings.CutPrefix(msg, "field "); ok {
		name, _, _ := strings.Cut(f, " ")
		msg = fmt.Sprintf("unknown key %q", name)
	}
	return &configError{path: path, line: line, msg: msg}
}

// complete checks required settings, resolves the token secret, and fills
// defaults and absolute paths.
func (c *config) complete(env configEnv) error {
	p := &c.Proxmox
	switch {
	case p.URL == "":
		return c.missing("proxmox.url")
	case p.TokenID == "":
		return c.missing("proxmox.token_id")
	}
	secret, err := c.tokenSecret(env)
	if err != nil {
		return err
	}
	c.TokenSecret = secret
	if err := c.check(); err != nil {
		return err
	}
	c.setPaths()
	return nil
}

// check validates the settings that have a format or a range, so that a
// mistake is reported when the file is read, before anything is opened.
func (c *config) check() error {
	p := &c.Proxmox
	for _, fn := range []func() string{c.checkProxmox, c.checkRange, c.checkSSH} {
		if msg := fn(); msg != "" {
			return &configError{path: c.Path, msg: msg}
		}
	}
	if p.GuestCIDR != "" {
		pfx, err := netip.ParsePrefix(p.GuestCIDR)
		if err != nil {
			return &configError{path: c.Path, msg: fmt.Sprintf(
				"proxmox.guest_cidr %q is not a CIDR such as 10.77.0.0/16", p.GuestCIDR)}
		}
		c.GuestCIDR = pfx.Masked()
	}
	return nil
}

var tokenIDRE = regexp.MustCompile(`^[^\s@!]+@[^\s@!]+![A-Za-z][A-Za-z0-9._-]*$`)

// checkProxmox checks the API settings; it returns what is wrong, or "".
func (c *config) checkProxmox() string {
	p := &c.Proxmox
	u, err := url.Parse(p.URL)
	if !strings.Contains(p.URL, "://") {
		u, err = url.Parse("https://" + p.URL)
	}
	switch {
	case err != nil || u.Host == "" || u.Scheme != "https":
		return fmt.Sprintf("proxmox.url %q is not an https URL such as "+
			"https://pve1.example.net:8006", p.URL)
	case !tokenIDRE.MatchString(p.TokenID):
		return fmt.Sprintf("proxmox.token_id %q is not a token ID such as agentlab@pve!cli",
			p.TokenID)
	case p.TLS.Fingerprint != "" && !isFingerprint(p.TLS.Fingerprint):
		return fmt.Sprintf("proxmox.tls.fingerprint %q is not a SHA-256 fingerprint "+
			"(32 hex bytes, colons allowed)", p.TLS.Fingerprint)
	case p.CloneConcurrency < 0:
		return "proxmox.clone_concurrency must not be negative"
	}
	for _, n := range p.Nodes {
		if !nodeRE.MatchString(n) {
			return fmt.Sprintf("proxmox.nodes: %q is not a node name", n)
		}
	}
	return ""
}

// isFingerprint reports whether s is a SHA-256 digest in hex, with or
// without colons, as the PVE GUI shows it.
func isFingerprint(s string) bool {
	b, err := hex.DecodeString(strings.NewReplacer(":", "", " ", "").Replace(s))
	return err == nil && len(b) == sha256.Size
}

// checkRange checks the VMID range; it returns what is wrong, or "".
func (c *config) checkRange() string {
	switch {
	case c.VMIDMin == 0 && c.VMIDMax == 0:
		return ""
	case c.VMIDMin == 0 || c.VMIDMax == 0 || c.VMIDMin > c.VMIDMax:
		return fmt.Sprintf("vmid_min %d and vmid_max %d must both be set, min <= max",
			c.VMIDMin, c.VMIDMax)
	case checkVMID(c.VMIDMin) != nil || checkVMID(c.VMIDMax) != nil:
		return fmt.Sprintf("vmid_min %d and vmid_max %d must lie in %d-%d", c.VMIDMin,
			c.VMIDMax, minVMID, maxVMID)
	}
	return ""
}

// checkSSH checks the jump host: a jump host is never trusted on first
// use, so its key is required; it returns what is wrong, or "".
func (c *config) checkSSH() string {
	j := c.SSH.Jump
	switch {
	case j.Addr == "" && (j.User != "" || j.HostKey != ""):
		return "ssh.jump.addr is missing (ssh.jump has a user or host_key)"
	case j.Addr == "":
		return ""
	case j.HostKey == "":
		return "missing setting ssh.jump.host_key (the jump host's public key, as in " +
			"known_hosts: ssh-ed25519 AAAA...)"
	}
	addr, err := hostPort(j.Addr, "22")
	if err != nil {
		return fmt.Sprintf("ssh.jump.addr %q is not host or host:port", j.Addr)
	}
	c.SSH.Jump.Addr = addr
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(j.HostKey)); err != nil {
		return fmt.Sprintf("ssh.jump.host_key is not a public key line: %v", err)
	}
	return ""
}

// hostPort normalizes "host" or "host:port" (IPv6 in brackets) to
// "host:port", adding the default port.
func hostPort(addr, port string) (string, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		host, p = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"), port
	}
	n, perr := strconv.Atoi(p)
	switch {
	case host == "" || strings.ContainsAny(host, " \t/@[]"):
		return "", errors.New("bad host")
	case perr != nil || n < 1 || n > 65535:
		return "", errors.New("bad port")
	case strings.Contains(host, ":") && !isIPv6(host):
		return "", errors.New("bad host")
	}
	return net.JoinHostPort(host, p), nil
}

func isIPv6(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6()
}

func (c *config) missing(key string) error {
	return &configError{path: c.Path, missing: key}
}

// tokenSecret resolves exactly one of token_secret, token_secret_file and
// token_secret_env, and checks that the secret can go into an HTTP header.
// No error quotes the secret.
func (c *config) tokenSecret(env configEnv) (string, error) {
	secret, source, err := c.rawTokenSecret(env)
	if err != nil {
		return "", err
	}
	if strings.IndexFunc(secret, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return "", &configError{path: c.Path, msg: source + ": the secret contains spaces " +
			"or control characters"}
	}
	return secret, nil
}

// rawTokenSecret returns the trimmed secret and the key it came from.
func (c *config) rawTokenSecret(env configEnv) (secret, source string, err error) {
	p := &c.Proxmox
	n := 0
	for _, s := range []string{p.TokenSecret, p.TokenSecretFile, p.TokenSecretEnv} {
		if s != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return "", "", c.missing("proxmox.token_secret (or token_secret_file, " +
			"token_secret_env)")
	case n > 1:
		return "", "", &configError{path: c.Path, msg: "set only one of proxmox.token_secret, " +
			"token_secret_file and token_secret_env"}
	case p.TokenSecret != "":
		source = "proxmox.token_secret"
		secret = strings.TrimSpace(p.TokenSecret)
	case p.TokenSecretEnv != "":
		source = "proxmox.token_secret_env"
		secret = strings.TrimSpace(env.getenv(p.TokenSecretEnv))
		if secret == "" {
			return "", "", &configError{path: c.Path, msg: fmt.Sprintf(
				"%s: environment variable %s is empty", source, p.TokenSecretEnv)}
		}
	default:
		source = "proxmox.token_secret_file"
		data, err := env.readFile(c.abs(p.TokenSecretFile), 4096)
		if err != nil {
			return "", "", &configError{path: c.Path, msg: source + ": " + err.Error()}
		}
		secret = strings.TrimSpace(string(data))
	}
	if secret == "" {
		return "", "", &configError{path: c.Path, msg: source + ": the secret is empty"}
	}
	return secret, source, nil
}

// setPaths fills path defaults (next to the config file) and makes every
// path absolute.
func (c *config) setPaths() {
	def := func(p *string, name string) {
		if *p == "" {
			*p = name
		}
		*p = c.abs(*p)
	}
	def(&c.ProfilesDir, "profiles")
	def(&c.Database, "agentlab.db")
	def(&c.ArtifactsDir, "artifacts")
	def(&c.StateDir, "state")
	def(&c.SSH.Key, "id_ed25519")
	if c.Proxmox.TLS.CAFile != "" {
		c.Proxmox.TLS.CAFile = c.abs(c.Proxmox.TLS.CAFile)
	}
}

// abs expands a leading ~ and resolves p against the config directory.
func (c *config) abs(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, rest)
		}
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(c.Dir, p)
}
