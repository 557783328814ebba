// Package proxmox implements [agentlab.Hypervisor] on Proxmox VE, over the
// REST API through github.com/luthermonson/go-proxmox.
//
//	hv, err := proxmox.New(ctx, proxmox.Config{
//		URL:         "https://pve1.example.net:8006",
//		TokenID:     "agentlab@pve!sdk",
//		TokenSecret: os.Getenv("PVE_TOKEN_SECRET"),
//		Fingerprint: "AB:CD:...", // or CAFile: "pve-root-ca.pem"
//		GuestCIDR:   netip.MustParsePrefix("10.20.0.0/16"),
//	})
//
// # Trust
//
// The API is reached over HTTPS only, authenticated by an API token. The
// server is trusted through a CA file (PVE's /etc/pve/pve-root-ca.pem, with
// host name checks), through the SHA-256 fingerprint of its certificate, or
// both. InsecureSkipVerify exists for labs and is logged as a warning. The
// token secret never appears in logs, errors or printed Configs.
//
// # Token privileges
//
// Create a token with privilege separation and grant it a role with:
//
//   - VM.Allocate and VM.Clone (clone into new VMIDs; VM.Clone on the
//     template), VM.Audit (status, config, lists);
//   - VM.Config.CPU, VM.Config.Memory, VM.Config.Disk, VM.Config.Network,
//     VM.Config.Options and VM.Config.Cloudinit (the configuration Provision
//     writes; VM.Config.Network also covers the VM firewall);
//   - VM.PowerMgmt (start, stop, suspend, resume), VM.Snapshot and
//     VM.Snapshot.Rollback;
//   - VM.GuestAgent.Audit and VM.GuestAgent.FileRead on PVE 9 and later, or
//     VM.Monitor on older releases (guest interfaces and the host key);
//   - Datastore.AllocateSpace (and Datastore.Audit) on the storages that
//     clones use, SDN.Use on the bridges they attach to;
//   - Sys.Audit on / to read the datacenter firewall options (without it
//     Provision warns that isolation cannot be confirmed).
//
// Security groups are referenced, never created: creating them needs
// Sys.Modify, so have an administrator create them beforehand.
//
// # Templates
//
// A template needs a cloud-init drive (Provision sets ciuser, sshkeys and
// ipconfig0=ip=dhcp and warns when there is none), qemu-guest-agent
// installed and enabled at boot (Provision turns agent=1 on; GuestInfo reads
// the address and host key through it), an empty /etc/machine-id so that
// clones get distinct DHCP leases, and SSH host keys generated on first
// boot (ed25519, read from /etc/ssh/ssh_host_ed25519_key.pub).
//
// # Provisioning
//
// Provision clones with an explicit VMID (never /cluster/nextid), linked
// unless ProvisionSpec.Full, and stamps ownership on the VM: the name, a
// description marker ("agentlab-owner: <owner>" and "agentlab-sandbox:
// <name>" lines) and the tags [TagAgentlab] and [OwnerTag](owner). The node
// is spec.Node when set, else the template's node when its disks are on
// node-local storage, else the online node in Config.Nodes with the least
// memory in use. Clones per node are limited by Config.CloneConcurrency.
//
// # Network modes
//
// Modes are enforced only through the PVE firewall, never by NIC options:
// net0 gets firewall=1, the VM firewall is enabled with DHCP allowed, and
// the rules copied from the template are replaced by:
//
//   - every mode: inbound DROP except TCP 22 (SSH);
//   - off: outbound DROP;
//   - nat: outbound ACCEPT, except DROP to 10/8, 172.16/12, 192.168/16,
//     169.254/16, fc00::/7 and fe80::/10;
//   - allowlist: outbound DROP, except ACCEPT to the IP set [AllowIPSet];
//   - a security group, when named, as a group rule after these.
//
// PVE filters nothing while the datacenter firewall is off; Provision then
// returns a warning in VM.Warnings. Whether it is on is cached for
// Config.CacheTTL, like the template's config and the storage list.
//
// # Errors and retries
//
// Every asynchronous call waits for its task and checks its exit status
// ("OK" and "WARNINGS: n" succeed). One function translates PVE errors:
// a VM or snapshot that does not exist matches [agentlab.ErrNotFound] (a
// missing storage, node, task or security group does not), a taken VMID
// [agentlab.ErrVMIDConflict], held or timed-out locks and transient
// transport or proxy failures [agentlab.ErrBusy], a guest agent that does
// not answer yet [agentlab.ErrNotReady]; context errors stay matchable.
// Lock contention and transient errors are retried with jittered backoff
// within Config.RetryTimeout; calls that must not be repeated blindly (the
// clone, a snapshot) first check what the failed attempt did.
package proxmox
