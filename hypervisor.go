package agentlab

import (
	"context"
	"fmt"
	"time"
)

// PowerState is a VM's power state as the hypervisor reports it.
type PowerState string

// Power states. A paused VM keeps its memory; Proxmox reports it as running
// with a qmpstatus of paused, and backends map that to PowerPaused.
const (
	PowerRunning PowerState = "running"
	PowerStopped PowerState = "stopped"
	PowerPaused  PowerState = "paused"
)

// VM is what a hypervisor reports about one virtual machine.
type VM struct {
	VMID   int
	Node   string
	Name   string
	Power  PowerState
	Owner  string // the ownership marker's owner ID; empty when unmarked
	Tags   []string
	Locked string // the name of a held config lock ("clone", "snapshot"), if any

	// Warnings carries non-fatal findings from Provision, such as a
	// datacenter firewall that is disabled (the firewall then fails open).
	Warnings []string
}

// ProvisionSpec describes the VM to clone and configure.
type ProvisionSpec struct {
	VMID     int    // the VMID to create; already reserved in the Store
	Name     string // the VM name (a DNS label)
	Template int    // the template VMID to clone
	Full     bool   // full clone instead of a linked one
	Node     string // the node to place it on; empty lets the backend choose

	Cores    int // zero keeps the template's value
	MemoryMB int // zero keeps the template's value
	DiskGB   int // root disk size to grow to; zero keeps the template's size

	Network NetworkPolicy

	// User and SSHKeys configure the guest through cloud-init: the login
	// user and its authorized public keys (authorized_keys format).
	User    string
	SSHKeys []string

	// Owner is the ownership marker stamped on the VM (description and tag)
	// so that reconcile can find it; Sandbox names the sandbox in it.
	Owner   string
	Sandbox string
}

// GuestInfo is what the hypervisor learns from inside a running guest,
// usually through the QEMU guest agent.
type GuestInfo struct {
	IP      string // the guest's address inside the configured guest CIDR
	HostKey string // the SSH host public key (authorized_keys format), if readable
}

// StopOptions tunes [Hypervisor.Stop].
type StopOptions struct {
	// Timeout bounds the graceful shutdown; the VM is then powered off.
	// Zero powers it off at once.
	Timeout time.Duration
}

// SnapshotSpec describes a snapshot to take.
type SnapshotSpec struct {
	Name        string
	Memory      bool // include RAM, so that a rollback resumes the running VM
	Description string
}

// SnapshotInfo describes a stored snapshot.
type SnapshotInfo struct {
	Name      string
	Memory    bool
	CreatedAt time.Time
	Parent    string
}

// Hypervisor is the control plane for VMs. The proxmox package implements it
// over the Proxmox VE API; agentlabtest has a deterministic fake.
//
// Implementations must be safe for concurrent use. Every method waits for
// the backend's asynchronous work to finish and reports its outcome. Errors
// are translated at the seam: a VM that does not exist matches [ErrNotFound]
// (concluded only from a per-VMID answer, never from absence in a list), a
// taken VMID matches [ErrVMIDConflict], a lock or overload [ErrBusy], a
// guest agent not answering yet [ErrNotReady].
type Hypervisor interface {
	// Provision clones the template into spec.VMID and configures it. The VM
	// is left stopped. A transport error must not lead to a second clone:
	// implementations look for the VM by its marker before retrying.
	Provision(ctx context.Context, spec ProvisionSpec) (VM, error)

	// Start powers the VM on. Starting a running VM is not an error.
	Start(ctx context.Context, vmid int) error

	// Stop shuts the VM down, gracefully within opts.Timeout, then by force.
	// Stopping a stopped VM is not an error.
	Stop(ctx context.Context, vmid int, opts StopOptions) error

	// Suspend pauses the VM, keeping its memory.
	Suspend(ctx context.Context, vmid int) error

	// Resume continues a paused VM.
	Resume(ctx context.Context, vmid int) error

	// Destroy powers off and deletes the VM with its disks. Destroying a VM
	// that does not exist returns nil.
	Destroy(ctx context.Context, vmid int) error

	// Status reports the VM, or an error matching ErrNotFound.
	Status(ctx context.Context, vmid int) (VM, error)

	// List returns the VMs that carry owner's marker.
	List(ctx context.Context, owner string) ([]VM, error)

	// GuestInfo reads the guest's address and host key. It returns an error
	// matching ErrNotReady while the guest cannot answer yet.
	GuestInfo(ctx context.Context, vmid int) (GuestInfo, error)

	// Snapshot takes a snapshot.
	Snapshot(ctx context.Context, vmid int, spec SnapshotSpec) error

	// Snapshots lists the VM's snapshots, oldest first, without the
	// pseudo-snapshot "current".
	Snapshots(ctx context.Context, vmid int) ([]SnapshotInfo, error)

	// Rollback restores a snapshot. Afterwards the VM runs if the snapshot
	// holds memory and is stopped otherwise; the Manager restores the run
	// state the caller asked for.
	Rollback(ctx context.Context, vmid int, name string) error

	// DeleteSnapshot removes a snapshot.
	DeleteSnapshot(ctx context.Context, vmid int, name string) error
}

// ValidateNodeName checks a hypervisor node name: a DNS label (letters,
// digits and -, up to 63). It goes into API paths, where "/" or ".." would
// change what is called.
func ValidateNodeName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: node name %q (letters, digits and -, up to 63)",
			ErrInvalidArgument, name)
	}
	return nil
}
