package pvesim

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// runState is a VM's power state.
type runState int

const (
	stStopped runState = iota
	stRunning
	stPaused
	stHibernated
)

// cluster is the whole simulated state; every field is guarded by Server.mu.
type cluster struct {
	nodes     []string
	offline   map[string]bool
	vms       map[int]*vm
	tasks     []*task
	byUPID    map[string]*task
	fwOptions map[string]string
	groups    map[string]*secGroup
	rng       *rand.Rand
	pid       uint32
	lastNew   int       // most recently created VMID
	ticketMin time.Time // tickets issued before this are rejected
	booted    time.Time
	ips       map[string]int // guest IP -> VMID
	noQuorum  bool
	resCache  []map[string]any // VM rows of /cluster/resources
	resTime   time.Time        // when resCache was taken
}

func newCluster(nodes []string, seed int64) *cluster {
	return &cluster{
		nodes:     slices.Clone(nodes),
		offline:   map[string]bool{},
		vms:       map[int]*vm{},
		byUPID:    map[string]*task{},
		fwOptions: map[string]string{},
		groups:    map[string]*secGroup{},
		rng:       rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)),
		pid:       uint32(1000 + seed%5000),
		booted:    time.Now(),
		ips:       map[string]int{},
	}
}

func (c *cluster) hasNode(n string) bool { return slices.Contains(c.nodes, n) }

// newMAC returns a MAC in Proxmox's BC:24:11 OUI.
func (c *cluster) newMAC() string {
	return fmt.Sprintf("BC:24:11:%02X:%02X:%02X", c.rng.IntN(256), c.rng.IntN(256), c.rng.IntN(256))
}

func (c *cluster) newUUID() string {
	b := make([]byte, 16)
	for i := range b {
		b[i] = byte(c.rng.IntN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

type vm struct {
	id      int
	node    string
	conf    map[string]string
	run     runState
	started time.Time
	snaps   map[string]*snapshot
	parent  string
	fw      *vmFirewall
	flock   chan struct{}
	guest   *guest
}

func newVM(id int, node string, conf map[string]string) *vm {
	return &vm{
		id: id, node: node, conf: conf, snaps: map[string]*snapshot{},
		fw: newVMFirewall(), flock: make(chan struct{}, 1),
	}
}

func (v *vm) isTemplate() bool { return v.conf["template"] == "1" }

func (v *vm) status() string {
	if v.run == stRunning || v.run == stPaused {
		return "running"
	}
	return "stopped"
}

func (v *vm) qmpStatus() string {
	switch v.run {
	case stRunning:
		return "running"
	case stPaused:
		return "paused"
	}
	return "stopped"
}

// digest is the SHA1 of the canonical config, as PVE reports it.
func (v *vm) digest() string { return confDigest(v.conf) }

func confDigest(conf map[string]string) string {
	h := sha1.New()
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		fmt.Fprintf(h, "%s: %s\n", k, conf[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (v *vm) snapList() []*snapshot {
	out := slices.Collect(maps.Values(v.snaps))
	slices.SortFunc(out, func(a, b *snapshot) int {
		if c := a.time.Compare(b.time); c != 0 {
			return c
		}
		return a.seq - b.seq
	})
	return out
}

// maxMem returns the configured memory in bytes.
func (v *vm) maxMem() uint64 {
	m := strings.TrimPrefix(v.conf["memory"], "current=")
	var n uint64
	if _, err := fmt.Sscan(m, &n); err != nil || n == 0 {
		n = 512
	}
	return n << 20
}

func (v *vm) cpus() int {
	cores, sockets := atoiDefault(v.conf["cores"], 1), atoiDefault(v.conf["sockets"], 1)
	if vc := atoiDefault(v.conf["vcpus"], 0); vc > 0 {
		return vc
	}
	return cores * sockets
}

// bootDisk returns the size of the first disk in boot order (or any disk).
func (v *vm) maxDisk() uint64 {
	for _, k := range []string{"scsi0", "virtio0", "sata0", "ide0"} {
		if d, ok := v.conf[k]; ok {
			return diskSizeBytes(d)
		}
	}
	return 0
}

type snapshot struct {
	name        string
	parent      string
	description string
	vmstate     bool
	time        time.Time
	seq         int
	conf        map[string]string
	homeCopy    string // copy of the guest home, "" when none
}

type secGroup struct {
	comment string
	rules   []*fwRule
}

type vmFirewall struct {
	options map[string]string
	rules   []*fwRule
	ipsets  map[string]*ipset
}

func newVMFirewall() *vmFirewall {
	return &vmFirewall{options: map[string]string{}, ipsets: map[string]*ipset{}}
}

func (f *vmFirewall) clone() *vmFirewall {
	out := &vmFirewall{options: maps.Clone(f.options), ipsets: map[string]*ipset{}}
	for _, r := range f.rules {
		cp := *r
		out.rules = append(out.rules, &cp)
	}
	for name, set := range f.ipsets {
		cp := &ipset{comment: set.comment}
		for _, e := range set.entries {
			ec := *e
			cp.entries = append(cp.entries, &ec)
		}
		out.ipsets[name] = cp
	}
	return out
}

type ipset struct {
	comment string
	entries []*ipsetEntry
}

type ipsetEntry struct {
	cidr    string
	comment string
	nomatch bool
}

// fwRule is one firewall rule as PVE stores it.
type fwRule struct {
	Type     string
	Action   string
	Enable   int
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

// task is one PVE worker task.
type task struct {
	upid    string
	node    string
	typ     string
	id      string
	user    string // "root@pam"
	tokenID string // "tok" for token tasks
	pid     uint32
	pstart  uint32
	start   time.Time
	end     time.Time
	running bool
	exit    string
	log     []string
	stop    chan struct{} // closed by DELETE on the task
}

// isStopped reports whether the task was asked to stop.
func (t *task) isStopped() bool {
	select {
	case <-t.stop:
		return true
	default:
		return false
	}
}

func (t *task) logf(format string, args ...any) {
	t.log = append(t.log, fmt.Sprintf(format, args...))
}

func atoiDefault(s string, def int) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		return def
	}
	return n
}
