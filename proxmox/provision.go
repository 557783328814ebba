package proxmox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab"
	px "github.com/luthermonson/go-proxmox"
)

// errAbsent reports that no node holds the VMID a clone was meant to create.
var errAbsent = errors.New("vm absent")

// Provision clones spec.Template into spec.VMID on the node placement picks,
// stamps the ownership marker (name, description, tags), configures CPU,
// memory, net0, cloud-init and the guest agent, grows the root disk and
// applies the network policy through the VM firewall. The VM is left
// stopped. Non-fatal findings, such as a disabled datacenter firewall, are
// returned in VM.Warnings.
//
// The clone is sent with the explicit VMID, never /cluster/nextid, so PVE
// itself refuses a second VM with that ID. A taken VMID gives an error
// matching [agentlab.ErrVMIDConflict] and leaves the holder untouched. When
// a clone POST ends without an answer (a dropped connection, a gateway
// error), the clone may or may not have happened: Provision then looks for
// the VM by its marker (status/current and the config description) and
// adopts it when it is marked for spec.Owner and spec.Sandbox, waiting for
// the clone lock to clear; if no node holds the VMID it sends the clone
// again. Lock contention is retried with backoff within
// Config.RetryTimeout, then fails matching [agentlab.ErrBusy]; a clone slot
// of the target node (Config.CloneConcurrency) is held only while a clone is
// in flight, not during the backoff. A failure after the clone leaves the
// marked VM in place for the caller to Destroy; a VM stuck with a stale
// clone lock is waited on until ctx ends.
//
// The template's node and config are cached for Config.CacheTTL. The
// returned VM is what Provision wrote (node, name, owner, tags, stopped),
// not read back. net0 gets a MAC of PVE's choosing, as in any clone.
func (h *Hypervisor) Provision(ctx context.Context,
	spec agentlab.ProvisionSpec) (agentlab.VM, error) {
	if err := checkSpec(spec); err != nil {
		return agentlab.VM{}, err
	}
	vm, err := h.provision(ctx, spec)
	return vm, translate(err, "provision", spec.VMID)
}

func (h *Hypervisor) provision(ctx context.Context,
	spec agentlab.ProvisionSpec) (agentlab.VM, error) {
	tmpl, err := h.template(ctx, spec.Template)
	if err != nil {
		return agentlab.VM{}, err
	}
	vm, err := h.provisionFrom(ctx, spec, tmpl)
	if err != nil {
		// What was cached may be why it failed (a moved or changed template).
		h.templates.drop(spec.Template)
		h.storages.drop(struct{}{})
		return agentlab.VM{}, err
	}
	return vm, nil
}

// provisionFrom places, clones and configures spec.VMID from tmpl. The VM
// it reports is what Provision wrote, not read back: PVE has just confirmed
// every change, and the caller needs only the node and the warnings.
func (h *Hypervisor) provisionFrom(ctx context.Context, spec agentlab.ProvisionSpec,
	tmpl templateInfo) (agentlab.VM, error) {
	target, release, err := h.place(ctx, spec, tmpl.node, tmpl.conf)
	if err != nil {
		return agentlab.VM{}, err
	}
	defer release()
	node, err := h.cloneOrAdopt(ctx, spec, tmpl.node, target)
	if err != nil {
		return agentlab.VM{}, fmt.Errorf("clone template %d: %w", spec.Template, err)
	}
	warnings, err := h.configure(ctx, spec, node, tmpl.conf)
	if err != nil {
		return agentlab.VM{}, err
	}
	h.log.Info("proxmox: provisioned vm", "vmid", spec.VMID, "node", node,
		"template", spec.Template, "full", spec.Full, "warnings", len(warnings))
	return agentlab.VM{
		VMID: spec.VMID, Node: node, Name: spec.Name, Power: agentlab.PowerStopped,
		Owner: spec.Owner, Tags: splitTags(ownerTags(spec.Owner)), Warnings: warnings,
	}, nil
}

// checkSpec rejects specs PVE would refuse or that would break the marker.
func checkSpec(spec agentlab.ProvisionSpec) error {
	var errs []error
	if spec.VMID < 100 || spec.VMID > 999999999 {
		errs = append(errs, fmt.Errorf("vmid %d is outside 100..999999999", spec.VMID))
	}
	if spec.Template <= 0 {
		errs = append(errs, errors.New("template vmid is required"))
	}
	if spec.Owner == "" || strings.ContainsAny(spec.Owner+spec.Sandbox, "\r\n") {
		errs = append(errs, errors.New("owner is required and owner and sandbox must be one line"))
	}
	if err := spec.Network.Validate(); err != nil {
		errs = append(errs, err)
	}
	if spec.Node != "" {
		if err := agentlab.ValidateNodeName(spec.Node); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("provision vm %d: %w: %w", spec.VMID, agentlab.ErrInvalidArgument,
			errors.Join(errs...))
	}
	return nil
}

// templateInfo is what Provision needs to know about a template.
type templateInfo struct {
	node string
	conf vmConfig // shared between calls: read it, never change it
}

// template finds the template's node and reads its config, or takes both
// from the cache (Config.CacheTTL).
func (h *Hypervisor) template(ctx context.Context, vmid int) (templateInfo, error) {
	if t, ok := h.templates.get(vmid); ok {
		return t, nil
	}
	var t templateInfo
	err := h.onVM(ctx, vmid, func(ctx context.Context, n string) error {
		var err error
		t.node = n
		t.conf, err = h.configOn(ctx, n, vmid)
		return err
	})
	if err != nil {
		return templateInfo{}, fmt.Errorf("read template %d: %w", vmid, err)
	}
	h.templates.put(vmid, t)
	return t, nil
}

// cloneOrAdopt makes spec.VMID a clone of the template exactly once and
// returns the node that holds it. Each attempt holds one of target's clone
// slots; the backoff between attempts holds none, so that other clones can
// use the slot meanwhile.
func (h *Hypervisor) cloneOrAdopt(ctx context.Context, spec agentlab.ProvisionSpec,
	tnode, target string) (string, error) {
	opts := h.cloneOptions(spec, tnode, target)
	deadline := time.Now().Add(h.cfg.RetryTimeout)
	unsure := false // an earlier attempt may have created the VM
	for n := 0; ; n++ {
		node, done, err := h.cloneAttempt(ctx, spec, tnode, target, opts, &unsure)
		if done || time.Now().After(deadline) {
			return node, err
		}
		h.log.Debug("proxmox: retrying clone", "vmid", spec.VMID, "attempt", n+1, "err", err)
		if serr := sleep(ctx, h.backoff(n)); serr != nil {
			return "", fmt.Errorf("%w (last error: %w)", serr, err)
		}
	}
}

// cloneAttempt takes a clone slot on target, sends the clone once and
// decides what a failure means (see afterCloneError). unsure accumulates
// across attempts.
func (h *Hypervisor) cloneAttempt(ctx context.Context, spec agentlab.ProvisionSpec,
	tnode, target string, opts px.VirtualMachineCloneOptions,
	unsure *bool) (node string, done bool, _ error) {
	release, err := h.acquire(ctx, target)
	if err != nil {
		return "", true, err
	}
	defer release()
	err = h.cloneOnce(ctx, tnode, spec.Template, opts)
	if err == nil {
		h.remember(spec.VMID, target)
		return target, true, nil
	}
	*unsure = *unsure || classify(err) == classTransient
	return h.afterCloneError(ctx, spec, err, *unsure)
}

// cloneOptions is the clone request: explicit VMID, name and marker,
// linked unless spec.Full, the target node when it is not the template's.
func (h *Hypervisor) cloneOptions(spec agentlab.ProvisionSpec,
	tnode, target string) px.VirtualMachineCloneOptions {
	opts := px.VirtualMachineCloneOptions{NewID: spec.VMID, Name: spec.Name,
		Description: markerDescription(spec.Owner, spec.Sandbox), Full: px.IntOrBool(spec.Full)}
	if target != tnode {
		opts.Target = target
	}
	if spec.Full && h.cfg.Storage != "" {
		opts.Storage = h.cfg.Storage
	}
	return opts
}

// afterCloneError decides what a failed clone attempt means. done is true
// when the outcome is final: adopted (node set, err nil) or failed for good.
// Otherwise nothing was created and the clone may be sent again. unsure
// says an attempt ended without an answer, so the VMID may be held by our
// own clone; only then is a VM with our marker adopted, and otherwise a
// taken VMID is a conflict even when the marker matches (the VM belongs to
// an earlier Provision call).
func (h *Hypervisor) afterCloneError(ctx context.Context, spec agentlab.ProvisionSpec,
	err error, unsure bool) (node string, done bool, _ error) {
	switch classify(err) {
	case classBusy:
		return "", false, err
	case classConflict, classExists:
		if !unsure {
			return "", true, err
		}
	case classTransient:
	default:
		return "", true, err
	}
	node, aerr := h.adopt(ctx, spec)
	switch {
	case aerr == nil:
		return node, true, nil
	case errors.Is(aerr, errAbsent):
		return "", false, err // nothing holds the VMID: send the clone again
	}
	return "", true, aerr
}

// cloneOnce sends one clone POST and waits for its task.
func (h *Hypervisor) cloneOnce(ctx context.Context, tnode string, template int,
	opts px.VirtualMachineCloneOptions) error {
	_, task, err := h.vm(tnode, template).Clone(ctx, &opts)
	if err != nil {
		return err
	}
	return h.wait(ctx, task)
}

// adopt finds the VM holding spec.VMID and returns its node when its marker
// names spec's owner and sandbox. It waits while a clone lock is held (the
// marker is complete once the clone finishes). It returns errAbsent when no
// node holds the VMID and an error matching ErrVMIDConflict when another
// owner's VM does.
func (h *Hypervisor) adopt(ctx context.Context, spec agentlab.ProvisionSpec) (string, error) {
	for {
		node, err := h.relocate(ctx, spec.VMID)
		if classify(err) == classNotFound {
			return "", errAbsent
		}
		if err != nil {
			return "", err
		}
		vm, err := h.describe(ctx, node, spec.VMID)
		if classify(err) == classNotFound {
			continue // moved to the clone target just now
		}
		if err != nil {
			return "", err
		}
		if vm.Locked != "clone" {
			return node, h.checkMarker(ctx, node, spec)
		}
		if err := sleep(ctx, h.cfg.PollInterval); err != nil {
			return "", fmt.Errorf("wait for clone of vm %d: %w", spec.VMID, err)
		}
	}
}

// checkMarker compares the VM's marker with spec.
func (h *Hypervisor) checkMarker(ctx context.Context, node string,
	spec agentlab.ProvisionSpec) error {
	conf, err := h.configOn(ctx, node, spec.VMID)
	if err != nil {
		return err
	}
	owner, sandbox := parseMarker(conf.str("description"))
	if owner == spec.Owner && sandbox == spec.Sandbox {
		h.log.Info("proxmox: adopting vm from an earlier attempt", "vmid", spec.VMID, "node", node)
		return nil
	}
	holder := "an unmarked vm"
	if owner != "" {
		holder = fmt.Sprintf("sandbox %q of owner %q", sandbox, owner)
	}
	return fmt.Errorf("%w: vm %d exists on %s and is %s", agentlab.ErrVMIDConflict,
		spec.VMID, node, holder)
}

// configure applies the spec to the freshly cloned VM on node and returns
// the warnings found on the way. tconf is the template's config, which the
// clone copied: the clone's own config is not read again.
func (h *Hypervisor) configure(ctx context.Context, spec agentlab.ProvisionSpec,
	node string, tconf vmConfig) ([]string, error) {
	opts, warnings := h.configOptions(spec, tconf)
	vm := h.vm(node, spec.VMID)
	err := h.retry(ctx, "configure", func(ctx context.Context) error {
		return h.run(ctx, func(ctx context.Context) (*px.Task, error) {
			return vm.Config(ctx, opts...)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("configure: %w", err)
	}
	if err := h.resize(ctx, spec, vm, tconf); err != nil {
		return nil, err
	}
	if err := h.firewallOnClone(ctx, vm, planFirewall(spec.Network)); err != nil {
		return nil, fmt.Errorf("apply network mode %s: %w", spec.Network.Mode, err)
	}
	return append(warnings, h.datacenterWarnings(ctx, spec.Network.Mode)...), nil
}

// configOptions builds the config update for spec on top of the template's
// config tconf. net0 is always written, so firewall=1 holds whatever the
// template has; it is written without a MAC, so PVE gives the clone a new
// one as the clone itself does (the template's MAC must not be reused).
func (h *Hypervisor) configOptions(spec agentlab.ProvisionSpec, tconf vmConfig) (
	[]px.VirtualMachineOption, []string) {
	opts := []px.VirtualMachineOption{
		{Name: "name", Value: spec.Name},
		{Name: "description", Value: markerDescription(spec.Owner, spec.Sandbox)},
		{Name: "tags", Value: ownerTags(spec.Owner)},
		{Name: "net0", Value: h.net0(spec.Network, withoutMAC(tconf.str("net0")))},
		{Name: "ipconfig0", Value: "ip=dhcp"},
	}
	if spec.Name == "" {
		opts = opts[1:]
	}
	opts = append(opts, sizeOptions(spec)...)
	opts = append(opts, guestOptions(spec, tconf)...)
	var warnings []string
	if !hasCloudInitDrive(tconf) {
		warnings = append(warnings, fmt.Sprintf("template %d has no cloud-init drive: "+
			"user, ssh keys and dhcp are not applied to the guest", spec.Template))
	}
	return opts, warnings
}

// ownerTags is the tags value Provision writes.
func ownerTags(owner string) string {
	return TagAgentlab + ";" + OwnerTag(owner)
}

// sizeOptions sets cores and memory when the spec asks.
func sizeOptions(spec agentlab.ProvisionSpec) []px.VirtualMachineOption {
	var opts []px.VirtualMachineOption
	if spec.Cores > 0 {
		opts = append(opts, px.VirtualMachineOption{Name: "cores", Value: spec.Cores})
	}
	if spec.MemoryMB > 0 {
		opts = append(opts, px.VirtualMachineOption{Name: "memory", Value: spec.MemoryMB})
	}
	return opts
}

// guestOptions sets the cloud-init user and keys and turns the agent on.
func guestOptions(spec agentlab.ProvisionSpec, conf vmConfig) []px.VirtualMachineOption {
	var opts []px.VirtualMachineOption
	if spec.User != "" {
		opts = append(opts, px.VirtualMachineOption{Name: "ciuser", Value: spec.User})
	}
	if len(spec.SSHKeys) > 0 {
		opts = append(opts, px.VirtualMachineOption{Name: "sshkeys",
			Value: px.EncodeSSHKeys(trimKeys(spec.SSHKeys)...)})
	}
	if !agentEnabled(conf.str("agent")) {
		opts = append(opts, px.VirtualMachineOption{Name: "agent", Value: "1"})
	}
	return opts
}

// trimKeys drops empty keys and trailing newlines.
func trimKeys(keys []string) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, k)
		}
	}
	return out
}

// agentEnabled reports whether a config "agent" value turns the agent on.
func agentEnabled(v string) bool {
	for _, kv := range strings.Split(v, ",") {
		if kv == "1" || kv == "enabled=1" {
			return true
		}
	}
	return false
}

// hasCloudInitDrive reports a cloud-init volume on any drive.
func hasCloudInitDrive(conf vmConfig) bool {
	for k := range conf {
		if isDiskKey(k) && strings.Contains(conf.str(k), "cloudinit") {
			return true
		}
	}
	return false
}
