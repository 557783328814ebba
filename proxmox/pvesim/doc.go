// Package pvesim is a wire-level simulator of the Proxmox VE REST API, in the
// spirit of net/http/httptest: NewServer starts an HTTPS server on loopback,
// with its own certificate authority, that speaks the /api2/json protocol
// closely enough for github.com/luthermonson/go-proxmox (v0.10.0) and for
// hand-written clients.
//
// # What it imitates
//
//   - Authentication with API tokens (Authorization: PVEAPIToken=id=secret)
//     and with tickets (POST /access/ticket, PVEAuthCookie plus
//     CSRFPreventionToken).
//   - A cluster of one or more nodes with cluster-wide VMIDs: /nodes,
//     /cluster/status, /cluster/resources, /cluster/nextid.
//   - QEMU VMs: listing, status/current, config (GET/POST/PUT, validated
//     against the keys and net sub-keys of the real schema), clone, resize,
//     start/stop/shutdown/suspend/resume/reboot/reset, destroy, snapshots
//     (create, list, rollback, delete), the guest agent and the VM firewall,
//     plus cluster firewall options and security groups.
//   - Asynchronous tasks with real UPIDs, per-type delays, task logs and
//     exit statuses, config locks ("VM is locked (clone)") and per-VM file
//     locks that time out like PVE's.
//   - Error envelopes and texts as PVE sends them, including the reason
//     phrase of the status line ("500 VM is locked (snapshot)").
//
// Response shapes follow PVE's typing rules (booleans and integers as JSON
// numbers, property strings as strings, /cluster/nextid as a string,
// "template" omitted unless 1) because go-proxmox fails to decode otherwise.
//
// # Guests
//
// Every running VM has a guest: an in-process SSH server (package
// sshx/sshtest) that accepts the keys in the VM's cloud-init "sshkeys" for the
// user "ciuser", with a per-VM ed25519 host key generated when the VM is
// created. The guest's home directory is a per-VM directory under
// Config.Dir. Snapshots copy that directory and rollback restores it, so file
// state behaves like a disk snapshot. Guests get a stable IP address in
// Config.GuestCIDR, reported by the guest agent; those addresses are not
// routable, and only Server.Dialer and the jump host (Server.JumpHost) reach
// them. A stopped or paused VM drops its connections and refuses new ones.
//
// # Faults
//
// InjectFault makes requests fail with a status and message, adds latency,
// drops connections, fails tasks, turns tasks into lock timeouts, or makes
// /cluster/nextid hand out a VMID that is already taken. Probabilistic faults
// draw from a generator seeded with Config.Seed, so a run is reproducible.
//
// # Simplifications
//
// Every node has the same three storages: "local" (dir), "local-lvm"
// (lvmthin) and "shared" (nfs, shared). Templates from AddTemplate keep their
// disks on local-lvm, so cloning to another node needs a full clone to
// "shared", as on a real cluster with local storage.
//
// Config changes apply at once, also on a running VM (there is no pending
// section). Cloud-init values (ciuser, sshkeys, a static ipconfig0 address
// inside GuestCIDR) take effect when the guest boots. /cluster/resources is
// current unless Config.ResourcesLag is set. Ticket-authenticated root@pam
// may use skiplock; API tokens may not, as on PVE. Snapshot names follow
// PVE's configid rule (at least two characters). Request faults act before
// authentication.
//
// VMs and tasks live in memory, guest files in Config.Dir; nothing survives
// Close (a Config.Dir you gave keeps its files).
//
// # What it is not
//
// pvesim imitates the PVE API and a guest; it isolates nothing. Guest
// commands (SSH exec, shells, SFTP, guest-agent exec) run on the local host
// as the current user, in the guest's directory. Firewall rules are stored
// and reported, never enforced. Disks, memory and CPU are bookkeeping only.
// Use it for tests, demos and development, never as a sandbox.
package pvesim
