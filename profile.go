package agentlab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Profile describes a kind of sandbox: which template to clone, its
// resources, network mode, lease defaults, and how jobs run in it. Profiles
// are read from YAML by [LoadProfiles]; the YAML keys are the field tags.
type Profile struct {
	Name         string         `yaml:"name"`
	TemplateVMID int            `yaml:"template_vmid"`
	Node         string         `yaml:"node,omitempty"`       // empty: the backend places it
	FullClone    bool           `yaml:"full_clone,omitempty"` // default: linked clone
	Network      ProfileNetwork `yaml:"network,omitempty"`
	Resources    Resources      `yaml:"resources,omitempty"`
	Storage      Storage        `yaml:"storage,omitempty"`
	Behavior     Behavior       `yaml:"behavior,omitempty"`
	SSH          SSHSettings    `yaml:"ssh,omitempty"`
	Job          JobSettings    `yaml:"job,omitempty"`

	// Source is "file:line" of the document the profile came from.
	Source string `yaml:"-"`
}

// ProfileNetwork is a profile's network section.
type ProfileNetwork struct {
	Bridge        string   `yaml:"bridge,omitempty"`
	Model         string   `yaml:"model,omitempty"`
	Mode          string   `yaml:"mode,omitempty"` // off, nat (default) or allowlist
	FirewallGroup string   `yaml:"firewall_group,omitempty"`
	Allowlist     []string `yaml:"allowlist,omitempty"`
}

// Resources is a profile's resources section. Zero keeps the template's
// value.
type Resources struct {
	Cores    int `yaml:"cores,omitempty"`
	MemoryMB int `yaml:"memory_mb,omitempty"`
}

// Storage is a profile's storage section.
type Storage struct {
	RootSizeGB int `yaml:"root_size_gb,omitempty"` // grow the root disk to this size
}

// Behavior is a profile's behavior section.
type Behavior struct {
	// Mode is the job mode handed to the agent ("dangerous" by default).
	Mode string `yaml:"mode,omitempty"`

	KeepaliveDefault bool `yaml:"keepalive_default,omitempty"`

	// TTLMinutesDefault is the lease when a request sets none; zero means
	// sandboxes of this profile never expire.
	TTLMinutesDefault int `yaml:"ttl_minutes_default,omitempty"`

	// IdleStopMinutes stops a READY or RUNNING sandbox after this many
	// minutes with no activity the SDK saw; zero disables idle stop.
	IdleStopMinutes int `yaml:"idle_stop_minutes,omitempty"`

	// OnExpiry is what the reaper does when the lease ends: "destroy"
	// (default) or "stop".
	OnExpiry string `yaml:"on_expiry,omitempty"`

	// CleanSnapshot controls the disk-only "clean" snapshot taken when a
	// sandbox first becomes ready; nil means on.
	CleanSnapshot *bool `yaml:"clean_snapshot,omitempty"`
}

// SSHSettings says how to log in to the guest.
type SSHSettings struct {
	User string `yaml:"user,omitempty"` // default "agent"
	Port int    `yaml:"port,omitempty"` // default 22
}

// JobSettings says how jobs run in sandboxes of this profile.
type JobSettings struct {
	// Command runs the job in the guest's shell, with the task in the file
	// named by $AGENTLAB_TASK_FILE and the repository in the work directory.
	Command   string   `yaml:"command,omitempty"`
	Workdir   string   `yaml:"workdir,omitempty"`   // default "work" (relative to home)
	Artifacts []string `yaml:"artifacts,omitempty"` // guest paths collected after the job
}

// TTL returns the profile's default lease; zero means none.
func (p *Profile) TTL() time.Duration {
	return time.Duration(p.Behavior.TTLMinutesDefault) * time.Minute
}

// NetworkPolicy returns the policy the profile's network section describes.
func (p *Profile) NetworkPolicy() NetworkPolicy {
	mode := NetworkMode(p.Network.Mode)
	if mode == "" {
		mode = NetworkNAT
	}
	return NetworkPolicy{
		Mode: mode, Bridge: p.Network.Bridge, Model: p.Network.Model,
		SecurityGroup: p.Network.FirewallGroup, Allowlist: p.Network.Allowlist,
	}
}

// WantsCleanSnapshot reports whether the "clean" snapshot is taken.
func (p *Profile) WantsCleanSnapshot() bool {
	return p.Behavior.CleanSnapshot == nil || *p.Behavior.CleanSnapshot
}

// SSHUser returns the guest login user.
func (p *Profile) SSHUser() string {
	if p.SSH.User == "" {
		return "agent"
	}
	return p.SSH.User
}

var profileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Validate checks every value, returning the first problem as a
// *ProfileError naming the field.
func (p *Profile) Validate() error {
	for _, c := range p.checks() {
		if c.bad {
			return &ProfileError{Source: p.Source, Field: c.field, Msg: c.msg}
		}
	}
	if err := p.NetworkPolicy().Validate(); err != nil {
		return &ProfileError{Source: p.Source, Field: networkField(p.NetworkPolicy()),
			Msg: strings.TrimPrefix(err.Error(), ErrInvalidArgument.Error()+": ")}
	}
	for _, a := range p.Job.Artifacts {
		if err := checkArtifactPath(a); err != nil {
			return &ProfileError{Source: p.Source, Field: "job.artifacts",
				Msg: strings.TrimPrefix(err.Error(), ErrInvalidArgument.Error()+": ")}
		}
	}
	return nil
}

// networkField names the key of an invalid network policy that is wrong,
// checking its parts in the order Validate does.
func networkField(np NetworkPolicy) string {
	switch np.Mode {
	case NetworkOff, NetworkNAT, NetworkAllowlist:
	default:
		return "network.mode"
	}
	for _, part := range []struct {
		field string
		alone NetworkPolicy
	}{
		{"network.bridge", NetworkPolicy{Mode: NetworkNAT, Bridge: np.Bridge}},
		{"network.model", NetworkPolicy{Mode: NetworkNAT, Model: np.Model}},
		{"network.firewall_group", NetworkPolicy{Mode: NetworkNAT,
			SecurityGroup: np.SecurityGroup}},
	} {
		if part.alone.Validate() != nil {
			return part.field
		}
	}
	return "network.allowlist"
}

type check struct {
	bad        bool
	field, msg string
}

func (p *Profile) checks() []check {
	b := p.Behavior
	return []check{
		{!profileName.MatchString(p.Name), "name",
			fmt.Sprintf("%q is not a valid name (letters, digits, . _ -, up to 63)", p.Name)},
		{p.TemplateVMID < 100 || p.TemplateVMID > 999999999, "template_vmid",
			fmt.Sprintf("%d is out of range 100-999999999", p.TemplateVMID)},
		{p.Resources.Cores < 0 || p.Resources.Cores > 512, "resources.cores",
			fmt.Sprintf("%d is out of range 0-512", p.Resources.Cores)},
		{p.Resources.MemoryMB != 0 && (p.Resources.MemoryMB < 16 ||
			p.Resources.MemoryMB > 4<<20), "resources.memory_mb",
			fmt.Sprintf("%d is out of range 16-4194304", p.Resources.MemoryMB)},
		{p.Storage.RootSizeGB < 0 || p.Storage.RootSizeGB > 65536, "storage.root_size_gb",
			fmt.Sprintf("%d is out of range 0-65536", p.Storage.RootSizeGB)},
		{b.TTLMinutesDefault < 0 || b.TTLMinutesDefault > 525600,
			"behavior.ttl_minutes_default",
			fmt.Sprintf("%d is out of range 0-525600", b.TTLMinutesDefault)},
		{b.IdleStopMinutes < 0 || b.IdleStopMinutes > 525600, "behavior.idle_stop_minutes",
			fmt.Sprintf("%d is out of range 0-525600", b.IdleStopMinutes)},
		{b.OnExpiry != "" && b.OnExpiry != "destroy" && b.OnExpiry != "stop",
			"behavior.on_expiry", fmt.Sprintf("%q is not destroy or stop", b.OnExpiry)},
		{p.Node != "" && ValidateNodeName(p.Node) != nil, "node",
			fmt.Sprintf("%q is not a node name (letters, digits and -, up to 63)", p.Node)},
		{p.SSH.Port < 0 || p.SSH.Port > 65535, "ssh.port",
			fmt.Sprintf("%d is out of range 0-65535", p.SSH.Port)},
		{p.SSH.User != "" && !userName.MatchString(p.SSH.User), "ssh.user",
			fmt.Sprintf("%q is not a valid user name", p.SSH.User)},
	}
}

var userName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// ProfileError reports a profile that could not be loaded. It matches
// [ErrInvalidArgument].
type ProfileError struct {
	Source string // "file:line" of the offending document or value
	Field  string // dotted path of the field, if known
	Msg    string
}

// Error formats the error as "file:line: field: message".
func (e *ProfileError) Error() string {
	var b strings.Builder
	b.WriteString("profile")
	if e.Source != "" {
		b.WriteString(" " + e.Source)
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// Is makes the error match ErrInvalidArgument.
func (e *ProfileError) Is(target error) bool { return target == ErrInvalidArgument }

// ProfileSet is an immutable set of profiles keyed by name. The zero value
// is an empty set. It is safe for concurrent use.
type ProfileSet struct {
	byName map[string]*Profile
}

// NewProfileSet validates profiles and builds a set; names must be unique.
func NewProfileSet(profiles ...Profile) (*ProfileSet, error) {
	s := &ProfileSet{byName: make(map[string]*Profile, len(profiles))}
	for i := range profiles {
		p := profiles[i]
		if err := p.Validate(); err != nil {
			return nil, err
		}
		if prev, ok := s.byName[p.Name]; ok {
			return nil, &ProfileError{Source: p.Source, Field: "name",
				Msg: fmt.Sprintf("%q is already defined at %s", p.Name, prev.Source)}
		}
		s.byName[p.Name] = &p
	}
	return s, nil
}

// Get returns the named profile, or an error matching ErrNotFound that lists
// the available ones.
func (s *ProfileSet) Get(name string) (Profile, error) {
	if p, ok := s.byName[name]; ok {
		return *p, nil
	}
	return Profile{}, fmt.Errorf("profile %q: %w (available: %s)", name, ErrNotFound,
		strings.Join(s.Names(), ", "))
}

// Names returns the profile names, sorted.
func (s *ProfileSet) Names() []string {
	names := make([]string, 0, len(s.byName))
	for n := range s.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// All returns the profiles sorted by name.
func (s *ProfileSet) All() []Profile {
	out := make([]Profile, 0, len(s.byName))
	for _, n := range s.Names() {
		out = append(out, *s.byName[n])
	}
	return out
}

// maxProfileFile bounds one profile file; larger files are refused.
const maxProfileFile = 1 << 20

// LoadProfiles reads profiles from YAML files and directories (every *.yaml
// and *.yml file directly inside, in name order). A file may hold several
// documents. Decoding is strict: an unknown key, a wrong type, a bad value,
// a duplicate name or an empty file fails the whole load with a
// *ProfileError naming the file, line and field; nothing is partly loaded.
func LoadProfiles(paths ...string) (*ProfileSet, error) {
	files, err := profileFiles(paths)
	if err != nil {
		return nil, err
	}
	var all []Profile
	for _, f := range files {
		ps, err := loadProfileFile(f)
		if err != nil {
			return nil, err
		}
		all = append(all, ps...)
	}
	return NewProfileSet(all...)
}

func profileFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, &ProfileError{Source: p, Msg: err.Error()}
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		for _, pat := range []string{"*.yaml", "*.yml"} {
			m, _ := filepath.Glob(filepath.Join(p, pat)) // only ErrBadPattern
			files = append(files, m...)
		}
	}
	sort.Strings(files)
	return files, nil
}

func loadProfileFile(name string) ([]Profile, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, &ProfileError{Source: name, Msg: err.Error()}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxProfileFile+1))
	if err != nil {
		return nil, &ProfileError{Source: name, Msg: err.Error()}
	}
	if len(data) > maxProfileFile {
		return nil, &ProfileError{Source: name, Msg: "file is larger than 1 MiB"}
	}
	return ParseProfiles(name, data)
}

// ParseProfiles decodes the YAML documents in data strictly, as
// [LoadProfiles] does; name is used in error messages.
func ParseProfiles(name string, data []byte) ([]Profile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var out []Profile
	for {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, yamlError(name, err)
		}
		p, err := decodeProfile(name, &node)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, &ProfileError{Source: name, Msg: "no profile in file"}
	}
	return out, nil
}

// decodeProfile decodes one document strictly and validates it, naming the
// line of the offending field.
func decodeProfile(name string, doc *yaml.Node) (Profile, error) {
	body := doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		body = doc.Content[0]
	}
	src := fmt.Sprintf("%s:%d", name, body.Line)
	if body.Kind != yaml.MappingNode {
		return Profile{}, &ProfileError{Source: src, Msg: "document is not a mapping"}
	}
	// Decoding the node keeps the file's line numbers in type errors; the
	// strict pass over a re-encoded copy finds unknown keys, which
	// yaml.Node.Decode does not report.
	var p Profile
	if err := body.Decode(&p); err != nil {
		return Profile{}, strictError(name, body, err)
	}
	raw, err := yaml.Marshal(body)
	if err != nil {
		return Profile{}, yamlError(name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&Profile{}); err != nil {
		return Profile{}, strictError(name, body, err)
	}
	p.Source = src
	if err := p.Validate(); err != nil {
		var pe *ProfileError
		if errors.As(err, &pe) {
			pe.Source = fmt.Sprintf("%s:%d", name, lineOf(body, pe.Field))
		}
		return Profile{}, err
	}
	return p, nil
}

// strictError maps a decode error of the re-encoded document back to the
// field and line in the original file.
func strictError(name string, body *yaml.Node, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		return yamlError(name, err)
	}
	msg := te.Errors[0]
	// Messages look like "line 3: field foo not found in type agentlab.Profile"
	// or "line 4: cannot unmarshal !!str `x` into int".
	lineStr, rest, ok := strings.Cut(msg, ": ")
	if ok {
		msg = rest
	}
	field, line := "", body.Line
	if n, err := strconv.Atoi(strings.TrimPrefix(lineStr, "line ")); err == nil {
		line = n
	}
	if f, ok := strings.CutPrefix(msg, "field "); ok {
		field, _, _ = strings.Cut(f, " ")
		line = findKeyLine(body, field)
		msg = "unknown key"
	} else {
		field = fieldAt(body, line)
	}
	return &ProfileError{Source: fmt.Sprintf("%s:%d", name, line), Field: field, Msg: msg}
}

// fieldAt returns the dotted path of the innermost mapping key on line, or
// whose value spans it, in n; "" when there is none.
func fieldAt(n *yaml.Node, line int) string {
	if n.Kind != yaml.MappingNode {
		for _, c := range n.Content {
			if f := fieldAt(c, line); f != "" {
				return f
			}
		}
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if sub := fieldAt(v, line); sub != "" {
			return k.Value + "." + sub
		}
		if k.Line == line || onLine(v, line) {
			return k.Value
		}
	}
	return ""
}

// onLine reports whether n or a node inside it starts on line.
func onLine(n *yaml.Node, line int) bool {
	if n.Line == line {
		return true
	}
	for _, c := range n.Content {
		if onLine(c, line) {
			return true
		}
	}
	return false
}

func yamlError(name string, err error) error {
	return &ProfileError{Source: name, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
}

// findKeyLine returns the line of the first mapping key named key anywhere
// in n, or n's own line.
func findKeyLine(n *yaml.Node, key string) int {
	if line, ok := searchKey(n, key); ok {
		return line
	}
	return n.Line
}

func searchKey(n *yaml.Node, key string) (int, bool) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i].Line, true
			}
		}
	}
	for _, c := range n.Content {
		if line, ok := searchKey(c, key); ok {
			return line, true
		}
	}
	return 0, false
}

// lineOf returns the line of a dotted field path in a mapping node.
func lineOf(n *yaml.Node, path string) int {
	line := n.Line
	for _, part := range strings.Split(path, ".") {
		if n.Kind != yaml.MappingNode {
			break
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				line, n, found = n.Content[i].Line, n.Content[i+1], true
				break
			}
		}
		if !found {
			break
		}
	}
	return line
}

// SetProfiles replaces the Manager's profiles. Sandboxes already created
// keep the settings they were created with.
func (m *Manager) SetProfiles(s *ProfileSet) {
	m.profMu.Lock()
	defer m.profMu.Unlock()
	m.profiles = s
}

// Profiles returns the Manager's current profile set.
func (m *Manager) Profiles() *ProfileSet {
	m.profMu.RLock()
	defer m.profMu.RUnlock()
	return m.profiles
}

// ReloadProfiles loads profiles from paths and swaps them in. When loading
// fails the previous set stays in force and the error says why.
func (m *Manager) ReloadProfiles(paths ...string) error {
	s, err := LoadProfiles(paths...)
	if err != nil {
		return fmt.Errorf("reload profiles: %w", err)
	}
	m.SetProfiles(s)
	return nil
}
