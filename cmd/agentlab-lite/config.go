package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// fileConfig is the YAML configuration file. Every key is optional except
// the Proxmox URL, token ID and one source of the token secret; relative
// paths are relative to the file's directory.
type fileConfig struct {
	Proxmox      proxmoxConfig `yaml:"proxmox"`
	VMIDMin      int           `yaml:"vmid_min"`
	VMIDMax      int           `yaml:"vmid_max"`
	Owner        string        `yaml:"owner"`
	SSH          sshConfig     `yaml:"ssh"`
	ProfilesDir  string        `yaml:"profiles_dir"`
	Database     string        `yaml:"database"`
	ArtifactsDir string        `yaml:"artifacts_dir"`
	StateDir     string        `yaml:"state_dir"`
	Timeouts     timeouts      `yaml:"timeouts"`
	Maintenance  maintenance   `yaml:"maintenance"`
}

type proxmoxConfig struct {
	URL              string    `yaml:"url"`
	TokenID          string    `yaml:"token_id"`
	TokenSecret      string    `yaml:"token_secret"`
	TokenSecretFile  string    `yaml:"token_secret_file"`
	TokenSecretEnv   string    `yaml:"token_secret_env"`
	TLS              tlsConfig `yaml:"tls"`
	Nodes            []string  `yaml:"nodes"`
	GuestCIDR        string    `yaml:"guest_cidr"`
	Bridge           string    `yaml:"bridge"`
	Storage          string    `yaml:"storage"`
	CloneConcurrency int       `yaml:"clone_concurrency"`
	PollInterval     duration  `yaml:"poll_interval"`
}

type tlsConfig struct {
	CAFile             string `yaml:"ca_file"`
	Fingerprint        string `yaml:"fingerprint"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

type sshConfig struct {
	Key             string     `yaml:"key"`
	TrustOnFirstUse bool       `yaml:"trust_on_first_use"`
	ConnectTimeout  duration   `yaml:"connect_timeout"`
	Jump            jumpConfig `yaml:"jump"`
}

type jumpConfig struct {
	Addr    string `yaml:"addr"`
	User    string `yaml:"user"`
	HostKey string `yaml:"host_key"`
}

type timeouts struct {
	Ready        duration `yaml:"ready"`
	Stop         duration `yaml:"stop"`
	JobHeartbeat duration `yaml:"job_heartbeat"`
}

// maintenance tunes the maintenance process (reconcile --watch, sim
// serve); zero values keep the SDK's defaults.
type maintenance struct {
	ReconcileInterval duration `yaml:"reconcile_interval"`
	ReapInterval      duration `yaml:"reap_interval"`
	IdleInterval      duration `yaml:"idle_interval"`
}

// duration is a time.Duration written as "90s", "5m" or "1h30m" in YAML.
type duration time.Duration

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
	cfg := &config{Path: abs, Dir: filepath.Dir(abs)}
	if err := decodeStrict(abs, data, &cfg.fileConfig); err != nil {
		return nil, err
	}
	if err := cfg.complete(getenv); err != nil {
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
	if err == nil || errors.Is(err, io.EOF) {
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
func (c *config) complete(getenv func(string) string) error {
	p := &c.Proxmox
	switch {
	case p.URL == "":
		return c.missing("proxmox.url")
	case p.TokenID == "":
		return c.missing("proxmox.token_id")
	}
	secret, err := c.tokenSecret(getenv)
	if err != nil {
		return err
	}
	c.TokenSecret = secret
	if p.GuestCIDR != "" {
		pfx, err := netip.ParsePrefix(p.GuestCIDR)
		if err != nil {
			return &configError{path: c.Path, msg: fmt.Sprintf(
				"proxmox.guest_cidr %q is not a CIDR such as 10.77.0.0/16", p.GuestCIDR)}
		}
		c.GuestCIDR = pfx
	}
	if (c.VMIDMin == 0) != (c.VMIDMax == 0) || c.VMIDMin > c.VMIDMax {
		return &configError{path: c.Path, msg: fmt.Sprintf(
			"vmid_min %d and vmid_max %d must both be set, min <= max", c.VMIDMin, c.VMIDMax)}
	}
	c.setPaths()
	return nil
}

func (c *config) missing(key string) error {
	return &configError{path: c.Path, missing: key}
}

// tokenSecret resolves exactly one of token_secret, token_secret_file and
// token_secret_env.
func (c *config) tokenSecret(getenv func(string) string) (string, error) {
	p := &c.Proxmox
	n := 0
	for _, s := range []string{p.TokenSecret, p.TokenSecretFile, p.TokenSecretEnv} {
		if s != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return "", c.missing("proxmox.token_secret (or token_secret_file, token_secret_env)")
	case n > 1:
		return "", &configError{path: c.Path, msg: "set only one of proxmox.token_secret, " +
			"token_secret_file and token_secret_env"}
	case p.TokenSecret != "":
		return p.TokenSecret, nil
	case p.TokenSecretEnv != "":
		v := strings.TrimSpace(getenv(p.TokenSecretEnv))
		if v == "" {
			return "", &configError{path: c.Path, msg: fmt.Sprintf(
				"proxmox.token_secret_env: environment variable %s is empty", p.TokenSecretEnv)}
		}
		return v, nil
	}
	data, err := readLimited(c.abs(p.TokenSecretFile), 4096)
	if err != nil {
		return "", &configError{path: c.Path, msg: "proxmox.token_secret_file: " + err.Error()}
	}
	return strings.TrimSpace(string(data)), nil
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
