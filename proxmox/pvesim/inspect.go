package pvesim

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// VMInfo is a snapshot of one VM's simulated state, for assertions in tests.
// It is a copy: changing it changes nothing in the server.
type VMInfo struct {
	VMID int
	// Node is the node that owns the VM's config.
	Node string
	Name string
	// Status is "running" or "stopped" (a paused VM is "running").
	Status string
	// QMPStatus is "running", "paused" or "stopped".
	QMPStatus string
	// Hibernated is true for a VM suspended to disk (stopped, lock
	// "suspended").
	Hibernated bool
	// Lock is the config lock ("clone", "snapshot", ...) or "".
	Lock     string
	Template bool
	// Config holds the stored config values as strings, as in the PVE
	// config file (sshkeys stays URL-encoded).
	Config      map[string]string
	Tags        []string
	Description string
	Firewall    FirewallInfo
	// Snapshots are ordered by creation time.
	Snapshots []SnapshotInfo
	// Parent is the snapshot the current state derives from, or "".
	Parent string
	// GuestIP is the address the guest agent reports; invalid for templates.
	GuestIP netip.Addr
	// GuestDir is the guest's home directory on the local host; "" for
	// templates.
	GuestDir string
	// HostKey is the guest's SSH host key; nil for templates.
	HostKey ssh.PublicKey
}

// FirewallInfo is the firewall state of a VM.
type FirewallInfo struct {
	// Options holds the options that were set ("enable", "policy_in", ...).
	Options map[string]string
	// Rules are in position order.
	Rules []FirewallRule
	// IPSets maps set names to their entries.
	IPSets map[string][]IPSetEntry
}

// FirewallRule is one firewall rule of a VM or a security group.
type FirewallRule struct {
	Pos      int
	Type     string // "in", "out" or "group"
	Action   string // ACCEPT, DROP, REJECT or a security group name
	Enable   bool
	Iface    string
	Source   string
	Dest     string
	Proto    string
	Dport    string
	Sport    string
	Macro    string
	Comment  string
	Log      string
	ICMPType string
}

// IPSetEntry is one entry of a firewall IP set.
type IPSetEntry struct {
	CIDR    string
	Comment string
	NoMatch bool
}

// SnapshotInfo describes one snapshot of a VM.
type SnapshotInfo struct {
	Name        string
	Parent      string
	Description string
	// VMState is true when the snapshot includes RAM (the VM was running).
	VMState bool
	Time    time.Time
}

// ClusterFirewallInfo is the datacenter firewall state.
type ClusterFirewallInfo struct {
	// Options holds the options that were set ("enable", ...).
	Options map[string]string
	// Groups maps security group names to their rules.
	Groups map[string][]FirewallRule
}

// TaskInfo describes one task, running or finished.
type TaskInfo struct {
	UPID string
	Node string
	Type string
	// ID is the task's object id, usually the VMID (for clones the source).
	ID   string
	User string
	// Running is true until the task finishes.
	Running bool
	// ExitStatus is "OK" or the error text once the task finished.
	ExitStatus string
	Start      time.Time
	End        time.Time
	Log        []string
}

// VM returns the state of VM vmid and whether it exists.
func (s *Server) VM(vmid int) (VMInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.c.vms[vmid]
	if !ok {
		return VMInfo{}, false
	}
	return v.info(), true
}

// VMs returns the state of all VMs ordered by VMID.
func (s *Server) VMs() []VMInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := slices.Sorted(maps.Keys(s.c.vms))
	out := make([]VMInfo, 0, len(ids))
	for _, id := range ids {
		out = append(out, s.c.vms[id].info())
	}
	return out
}

// Tasks returns all tasks in creation order, finished ones included.
func (s *Server) Tasks() []TaskInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]TaskInfo, 0, len(s.c.tasks))
	for _, t := range s.c.tasks {
		out = append(out, t.info())
	}
	return out
}

// ClusterFirewall returns the datacenter firewall options and security
// groups.
func (s *Server) ClusterFirewall() ClusterFirewallInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := ClusterFirewallInfo{
		Options: maps.Clone(s.c.fwOptions),
		Groups:  make(map[string][]FirewallRule, len(s.c.groups)),
	}
	for name, g := range s.c.groups {
		out.Groups[name] = rulesInfo(g.rules)
	}
	return out
}

func (v *vm) info() VMInfo {
	in := VMInfo{
		VMID: v.id, Node: v.node, Name: v.conf["name"],
		Status: v.status(), QMPStatus: v.qmpStatus(), Hibernated: v.run == stHibernated,
		Lock: v.conf["lock"], Template: v.isTemplate(), Config: maps.Clone(v.conf),
		Description: v.conf["description"], Parent: v.parent,
		Firewall: v.fw.info(),
	}
	if t := v.conf["tags"]; t != "" {
		in.Tags = strings.FieldsFunc(t, func(r rune) bool { return r == ';' || r == ',' || r == ' ' })
	}
	for _, sn := range v.snapList() {
		in.Snapshots = append(in.Snapshots, SnapshotInfo{
			Name: sn.name, Parent: sn.parent, Description: sn.description,
			VMState: sn.vmstate, Time: sn.time,
		})
	}
	if g := v.guest; g != nil {
		in.GuestIP, in.GuestDir, in.HostKey = g.ip, g.home, g.signer.PublicKey()
	}
	return in
}

func (f *vmFirewall) info() FirewallInfo {
	out := FirewallInfo{
		Options: maps.Clone(f.options), Rules: rulesInfo(f.rules),
		IPSets: make(map[string][]IPSetEntry, len(f.ipsets)),
	}
	for name, set := range f.ipsets {
		entries := make([]IPSetEntry, 0, len(set.entries))
		for _, e := range set.entries {
			entries = append(entries, IPSetEntry{CIDR: e.cidr, Comment: e.comment, NoMatch: e.nomatch})
		}
		out.IPSets[name] = entries
	}
	return out
}

func rulesInfo(rules []*fwRule) []FirewallRule {
	out := make([]FirewallRule, 0, len(rules))
	for i, r := range rules {
		out = append(out, FirewallRule{
			Pos: i, Type: r.Type, Action: r.Action, Enable: r.Enable == 1, Iface: r.Iface,
			Source: r.Source, Dest: r.Dest, Proto: r.Proto, Dport: r.Dport, Sport: r.Sport,
			Macro: r.Macro, Comment: r.Comment, Log: r.Log, ICMPType: r.ICMPType,
		})
	}
	return out
}

func (t *task) info() TaskInfo {
	return TaskInfo{
		UPID: t.upid, Node: t.node, Type: t.typ, ID: t.id, User: t.user,
		Running: t.running, ExitStatus: t.exit, Start: t.start, End: t.end,
		Log: slices.Clone(t.log),
	}
}
