// Package agentlabtest helps test code that uses agentlab, and agentlab's
// own backends, the way net/http/httptest does for HTTP.
//
// # Fakes
//
// [NewHypervisor] returns a deterministic in-process [agentlab.Hypervisor]:
// VMs are records in memory, operations finish at once (or after injected
// delays), and hooks inject errors at any call. Its [Guest] runs guest
// commands with /bin/sh on the local host in a directory per VM, so that job
// scripts and file transfers behave as they would over SSH; a snapshot
// copies that directory and a rollback restores it. Neither isolates
// anything: guest commands run with the test's privileges.
//
// [NewStore] returns the in-memory Store.
//
// # Conformance suites
//
// [RunStoreTests] and [RunHypervisorTests] check that an implementation
// keeps the contracts of [agentlab.Store] and [agentlab.Hypervisor]. Every
// implementation in this module runs them; so should third-party ones.
package agentlabtest

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// Op names a fake Hypervisor call, for hooks.
type Op string

// Hypervisor calls that hooks can intercept.
const (
	OpProvision      Op = "provision"
	OpStart          Op = "start"
	OpStop           Op = "stop"
	OpSuspend        Op = "suspend"
	OpResume         Op = "resume"
	OpDestroy        Op = "destroy"
	OpStatus         Op = "status"
	OpList           Op = "list"
	OpGuestInfo      Op = "guest_info"
	OpSnapshot       Op = "snapshot"
	OpSnapshots      Op = "snapshots"
	OpRollback       Op = "rollback"
	OpDeleteSnapshot Op = "delete_snapshot"

	// OpExec is a guest command run through the fake's Guest.
	OpExec Op = "exec"
)

// AfterHook runs after a fake call's side effect took place, before the
// call returns. Crash tests stop the calling goroutine there.
type AfterHook func(ctx context.Context, op Op, vmid int)

// Hook runs before (and, for side effects, instead of) a fake call. A
// non-nil error is returned by the call; when after is true the call's side
// effect has already happened (a fault after the fact, like a lost reply).
type Hook func(ctx context.Context, op Op, vmid int) (err error, after bool)

// HypervisorOptions configures [NewHypervisor]. The zero value is usable.
type HypervisorOptions struct {
	// Templates are the VMIDs that exist as templates. Zero means 9000.
	Templates []int

	// Nodes are the node names. Zero means "node1".
	Nodes []string

	// GuestDelay is how long after start the guest reports its address.
	GuestDelay time.Duration

	// Dir holds the guests' directories. Empty means a temporary directory
	// removed by Close.
	Dir string

	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Hypervisor is a deterministic in-memory [agentlab.Hypervisor]. It is safe
// for concurrent use. Close it to remove its guest directories.
type Hypervisor struct {
	mu         sync.Mutex // guards everything below
	vms        map[int]*fakeVM
	templates  map[int]bool
	nodes      []string
	hooks      []Hook
	after      []AfterHook
	ipOverride map[int]string
	calls      map[Op]int
	opts       HypervisorOptions
	dir        string
	ownDir     bool
	guest      *Guest
}

type fakeVM struct {
	vm        agentlab.VM
	template  int
	started   time.Time
	ip        string
	hostKey   string
	dir       string
	snapshots []fakeSnapshot
	spec      agentlab.ProvisionSpec
}

type fakeSnapshot struct {
	info agentlab.SnapshotInfo
	dir  string
	// power is the power state captured with memory.
	power agentlab.PowerState
}

var _ agentlab.Hypervisor = (*Hypervisor)(nil)

// NewHypervisor returns a fake hypervisor and its guest side.
func NewHypervisor(opts HypervisorOptions) (*Hypervisor, error) {
	if len(opts.Templates) == 0 {
		opts.Templates = []int{9000}
	}
	if len(opts.Nodes) == 0 {
		opts.Nodes = []string{"node1"}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Hypervisor{vms: map[int]*fakeVM{}, templates: map[int]bool{},
		nodes: opts.Nodes, calls: map[Op]int{}, opts: opts, dir: opts.Dir}
	for _, t := range opts.Templates {
		h.templates[t] = true
	}
	if h.dir == "" {
		d, err := os.MkdirTemp("", "agentlabtest-")
		if err != nil {
			return nil, fmt.Errorf("new fake hypervisor: %w", err)
		}
		h.dir, h.ownDir = d, true
	}
	h.guest = &Guest{hv: h}
	return h, nil
}

// Guest returns the guest side of the fake: an [agentlab.Guest] that runs
// commands in the VMs' directories.
func (h *Hypervisor) Guest() *Guest { return h.guest }

// Close removes the guest directories the fake created.
func (h *Hypervisor) Close() error {
	if h.ownDir {
		return os.RemoveAll(h.dir)
	}
	return nil
}

// AddHook adds a hook run before every call, in the order added.
func (h *Hypervisor) AddHook(hook Hook) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hooks = append(h.hooks, hook)
}

// AddAfterHook adds a hook run after every call's side effect.
func (h *Hypervisor) AddAfterHook(hook AfterHook) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.after = append(h.after, hook)
}

// FailNext makes the next n calls of op (on any VM when vmid is zero) fail
// with err before any side effect.
func (h *Hypervisor) FailNext(op Op, vmid int, n int, err error) {
	var mu sync.Mutex
	h.AddHook(func(_ context.Context, o Op, id int) (error, bool) {
		mu.Lock()
		defer mu.Unlock()
		if o != op || (vmid != 0 && id != vmid) || n <= 0 {
			return nil, false
		}
		n--
		return err, false
	})
}

// Calls returns how many times op was called.
func (h *Hypervisor) Calls(op Op) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[op]
}

// VMs returns the VMs that exist (templates excluded), ordered by VMID.
func (h *Hypervisor) VMs() []agentlab.VM {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := slices.Sorted(maps.Keys(h.vms))
	out := make([]agentlab.VM, 0, len(ids))
	for _, id := range ids {
		out = append(out, h.vms[id].vm)
	}
	return out
}

// SetPower changes a VM's power state behind the SDK's back, as an operator
// or a crash would.
func (h *Hypervisor) SetPower(vmid int, p agentlab.PowerState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v, ok := h.vms[vmid]; ok {
		v.vm.Power = p
		if p == agentlab.PowerRunning {
			v.started = h.opts.Now()
		}
	}
}

// SetGuestIP makes the guest of vmid (which may not exist yet) report ip,
// as a hostile or misconfigured guest could.
func (h *Hypervisor) SetGuestIP(vmid int, ip string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ipOverride == nil {
		h.ipOverride = map[int]string{}
	}
	h.ipOverride[vmid] = ip
	if v, ok := h.vms[vmid]; ok {
		v.ip = ip
	}
}

// AddForeignVM creates a VM that does not carry the SDK's marker, as another
// tool would, to test VMID conflicts.
func (h *Hypervisor) AddForeignVM(vmid int, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.vms[vmid] = &fakeVM{vm: agentlab.VM{VMID: vmid, Name: name, Node: h.nodes[0],
		Power: agentlab.PowerStopped}}
}

// enter counts the call and runs the hooks.
func (h *Hypervisor) enter(ctx context.Context, op Op, vmid int) (error, bool) {
	if err := ctx.Err(); err != nil {
		return err, false
	}
	h.mu.Lock()
	h.calls[op]++
	hooks := slices.Clone(h.hooks)
	h.mu.Unlock()
	for _, hook := range hooks {
		if err, after := hook(ctx, op, vmid); err != nil {
			return err, after
		}
	}
	return nil, false
}

// call runs fn under the lock between the hooks' before and after faults.
func (h *Hypervisor) call(ctx context.Context, op Op, vmid int, fn func() error) error {
	err, after := h.enter(ctx, op, vmid)
	if err != nil && !after {
		return err
	}
	h.mu.Lock()
	ferr := fn()
	h.mu.Unlock()
	if ferr != nil {
		return ferr
	}
	h.runAfter(ctx, op, vmid)
	return err
}

func (h *Hypervisor) get(vmid int) (*fakeVM, error) {
	v, ok := h.vms[vmid]
	if !ok {
		return nil, fmt.Errorf("vm %d: %w", vmid, agentlab.ErrNotFound)
	}
	return v, nil
}

// Provision implements [agentlab.Hypervisor].
func (h *Hypervisor) Provision(ctx context.Context, spec agentlab.ProvisionSpec) (
	agentlab.VM, error) {
	var vm agentlab.VM
	err := h.call(ctx, OpProvision, spec.VMID, func() error {
		if !h.templates[spec.Template] {
			return fmt.Errorf("clone template %d: %w", spec.Template, agentlab.ErrNotFound)
		}
		if _, taken := h.vms[spec.VMID]; taken || h.templates[spec.VMID] {
			return fmt.Errorf("clone to vmid %d: %w", spec.VMID, agentlab.ErrVMIDConflict)
		}
		if err := spec.Network.Validate(); err != nil {
			return err
		}
		v, err := h.newVM(spec)
		if err != nil {
			return err
		}
		h.vms[spec.VMID], vm = v, v.vm
		return nil
	})
	return vm, err
}

func (h *Hypervisor) newVM(spec agentlab.ProvisionSpec) (*fakeVM, error) {
	node := spec.Node
	if node == "" {
		node = h.nodes[spec.VMID%len(h.nodes)]
	}
	dir := filepath.Join(h.dir, fmt.Sprintf("vm-%d", spec.VMID))
	_ = os.RemoveAll(dir) // a leftover from a destroyed VM with this VMID
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ip := fmt.Sprintf("10.77.%d.%d", spec.VMID/250%250, spec.VMID%250+2)
	if o, ok := h.ipOverride[spec.VMID]; ok {
		ip = o
	}
	return &fakeVM{
		vm: agentlab.VM{VMID: spec.VMID, Node: node, Name: spec.Name,
			Power: agentlab.PowerStopped, Owner: spec.Owner, Tags: []string{"agentlab"}},
		template: spec.Template, dir: dir, spec: spec,
		ip:      ip,
		hostKey: fmt.Sprintf("ssh-ed25519 FAKEHOSTKEY%d", spec.VMID),
	}, nil
}

// Start implements [agentlab.Hypervisor].
func (h *Hypervisor) Start(ctx context.Context, vmid int) error {
	return h.call(ctx, OpStart, vmid, func() error {
		v, err := h.get(vmid)
		if err != nil {
			return err
		}
		if v.vm.Power != agentlab.PowerRunning {
			v.vm.Power, v.started = agentlab.PowerRunning, h.opts.Now()
		}
		return nil
	})
}

// Stop implements [agentlab.Hypervisor].
func (h *Hypervisor) Stop(ctx context.Context, vmid int, _ agentlab.StopOptions) error {
	return h.setPower(ctx, OpStop, vmid, agentlab.PowerStopped, nil)
}

// Suspend implements [agentlab.Hypervisor].
func (h *Hypervisor) Suspend(ctx context.Context, vmid int) error {
	return h.setPower(ctx, OpSuspend, vmid, agentlab.PowerPaused,
		[]agentlab.PowerState{agentlab.PowerRunning, agentlab.PowerPaused})
}

// Resume implements [agentlab.Hypervisor].
func (h *Hypervisor) Resume(ctx context.Context, vmid int) error {
	return h.setPower(ctx, OpResume, vmid, agentlab.PowerRunning,
		[]agentlab.PowerState{agentlab.PowerRunning, agentlab.PowerPaused})
}

func (h *Hypervisor) setPower(ctx context.Context, op Op, vmid int, to agentlab.PowerState,
	from []agentlab.PowerState) error {
	return h.call(ctx, op, vmid, func() error {
		v, err := h.get(vmid)
		if err != nil {
			return err
		}
		if from != nil && !slices.Contains(from, v.vm.Power) {
			return fmt.Errorf("%s vm %d: %w: vm is %s", op, vmid, agentlab.ErrInvalidState,
				v.vm.Power)
		}
		v.vm.Power = to
		return nil
	})
}

// Destroy implements [agentlab.Hypervisor].
func (h *Hypervisor) Destroy(ctx context.Context, vmid int) error {
	return h.call(ctx, OpDestroy, vmid, func() error {
		v, ok := h.vms[vmid]
		if !ok {
			return nil
		}
		delete(h.vms, vmid)
		_ = os.RemoveAll(v.dir)
		for _, s := range v.snapshots {
			_ = os.RemoveAll(s.dir)
		}
		return nil
	})
}

// Status implements [agentlab.Hypervisor].
func (h *Hypervisor) Status(ctx context.Context, vmid int) (agentlab.VM, error) {
	var vm agentlab.VM
	err := h.call(ctx, OpStatus, vmid, func() error {
		v, err := h.get(vmid)
		if err == nil {
			vm = v.vm
		}
		return err
	})
	return vm, err
}

// List implements [agentlab.Hypervisor].
func (h *Hypervisor) List(ctx context.Context, owner string) ([]agentlab.VM, error) {
	var out []agentlab.VM
	err := h.call(ctx, OpList, 0, func() error {
		for _, id := range slices.Sorted(maps.Keys(h.vms)) {
			if v := h.vms[id]; v.vm.Owner == owner {
				out = append(out, v.vm)
			}
		}
		return nil
	})
	return out, err
}

// GuestInfo implements [agentlab.Hypervisor].
func (h *Hypervisor) GuestInfo(ctx context.Context, vmid int) (agentlab.GuestInfo, error) {
	var info agentlab.GuestInfo
	err := h.call(ctx, OpGuestInfo, vmid, func() error {
		v, err := h.get(vmid)
		if err != nil {
			return err
		}
		if v.vm.Power != agentlab.PowerRunning ||
			h.opts.Now().Sub(v.started) < h.opts.GuestDelay {
			return fmt.Errorf("guest agent of vm %d: %w", vmid, agentlab.ErrNotReady)
		}
		info = agentlab.GuestInfo{IP: v.ip, HostKey: v.hostKey}
		return nil
	})
	return info, err
}

// Snapshot implements [agentlab.Hypervisor].
func (h *Hypervisor) Snapshot(ctx context.Context, vmid int, spec agentlab.SnapshotSpec) error {
	return h.call(ctx, OpSnapshot, vmid, func() error {
		v, err := h.get(vmid)
		if err != nil {
			return err
		}
		if err := agentlab.ValidateSnapshotName(spec.Name); err != nil {
			return err
		}
		if v.snapshot(spec.Name) != nil {
			return fmt.Errorf("snapshot %q of vm %d: %w", spec.Name, vmid,
				agentlab.ErrAlreadyExists)
		}
		return v.takeSnapshot(spec, h.opts.Now())
	})
}

func (v *fakeVM) snapshot(name string) *fakeSnapshot {
	for i := range v.snapshots {
		if v.snapshots[i].info.Name == name {
			return &v.snapshots[i]
		}
	}
	return nil
}

func (v *fakeVM) takeSnapshot(spec agentlab.SnapshotSpec, now time.Time) error {
	dir := fmt.Sprintf("%s.snap-%s", v.dir, spec.Name)
	if err := copyTree(v.dir, dir); err != nil {
		return fmt.Errorf("snapshot %q: %w", spec.Name, err)
	}
	power := agentlab.PowerStopped
	if spec.Memory {
		power = v.vm.Power
	}
	parent := ""
	if n := len(v.snapshots); n > 0 {
		parent = v.snapshots[n-1].info.Name
	}
	v.snapshots = append(v.snapshots, fakeSnapshot{dir: dir, power: power,
		info: agentlab.SnapshotInfo{Name: spec.Name, Memory: spec.Memory,
			CreatedAt: now, Parent: parent}})
	return nil
}

// Snapshots implements [agentlab.Hypervisor].
func (h *Hypervisor) Snapshots(ctx context.Context, vmid int) ([]agentlab.SnapshotInfo, error) {
	var out []agentlab.SnapshotInfo
	err := h.call(ctx, OpSnapshots, vmid, func() error {
		v, err := h.get(vmid)
		if err != nil {
			return err
		}
		for _, s := range v.snapshots {
			out = append(out, s.info)
		}
		return nil
	})
	return out, err
}

// Rollback implements [agentlab.Hypervisor]: the guest directory is
// restored, and the VM runs afterwards only if the snapshot holds memory.
func (h *Hypervisor) Rollback(ctx context.Context, vmid int, name string) error {
	return h.call(ctx, OpRollback, vmid, func() error {
		v, err := h.get(vmid)
		if err != nil {
			return err
		}
		s := v.snapshot(name)
		if s == nil {
			return fmt.Errorf("snapshot %q of vm %d: %w", name, vmid, agentlab.ErrNotFound)
		}
		if err := os.RemoveAll(v.dir); err != nil {
			return err
		}
		if err := copyTree(s.dir, v.dir); err != nil {
			return err
		}
		v.vm.Power = s.power
		if s.power == agentlab.PowerRunning {
			v.started = h.opts.Now()
		}
		return nil
	})
}

// DeleteSnapshot implements [agentlab.Hypervisor].
func (h *Hypervisor) DeleteSnapshot(ctx context.Context, vmid int, name string) error {
	return h.call(ctx, OpDeleteSnapshot, vmid, func() error {
		v, err := h.get(vmid)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(v.snapshots, func(s fakeSnapshot) bool {
			return s.info.Name == name
		})
		if i < 0 {
			return fmt.Errorf("snapshot %q of vm %d: %w", name, vmid, agentlab.ErrNotFound)
		}
		_ = os.RemoveAll(v.snapshots[i].dir)
		v.snapshots = slices.Delete(v.snapshots, i, i+1)
		return nil
	})
}

// Spec returns the ProvisionSpec a VM was created with.
func (h *Hypervisor) Spec(vmid int) (agentlab.ProvisionSpec, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.vms[vmid]
	if !ok {
		return agentlab.ProvisionSpec{}, false
	}
	return v.spec, true
}

// byIP finds the running VM with that guest address.
func (h *Hypervisor) byIP(ip string) (dir string, vmid int, running bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := slices.Sorted(maps.Keys(h.vms))
	for _, id := range ids {
		if v := h.vms[id]; v.ip == ip {
			return v.dir, id, v.vm.Power == agentlab.PowerRunning
		}
	}
	return "", 0, false
}

// copyTree copies a directory tree, keeping modes and symlinks, for
// snapshots.
func copyTree(src, dst string) error {
	return copyWalk(context.Background(), src, dst, true, nil)
}

func (h *Hypervisor) runAfter(ctx context.Context, op Op, vmid int) {
	h.mu.Lock()
	after := slices.Clone(h.after)
	h.mu.Unlock()
	for _, hook := range after {
		hook(ctx, op, vmid)
	}
}
