package proxmox

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab"
	px "github.com/luthermonson/go-proxmox"
)

// Status reports the VM from status/current and its config. Owner comes
// from the description marker. A VM that no node holds matches
// [agentlab.ErrNotFound].
func (h *Hypervisor) Status(ctx context.Context, vmid int) (agentlab.VM, error) {
	var out agentlab.VM
	err := h.onVM(ctx, vmid, func(ctx context.Context, node string) error {
		var err error
		out, err = h.describe(ctx, node, vmid)
		return err
	})
	return out, translate(err, "status of", vmid)
}

// describe builds the VM report from status/current and the config.
func (h *Hypervisor) describe(ctx context.Context, node string, vmid int) (agentlab.VM, error) {
	st, err := h.statusOn(ctx, node, vmid)
	if err != nil {
		return agentlab.VM{}, err
	}
	conf, err := h.configOn(ctx, node, vmid)
	if err != nil {
		return agentlab.VM{}, err
	}
	owner, _ := parseMarker(conf.str("description"))
	name := st.Name
	if name == "" {
		name = conf.str("name")
	}
	return agentlab.VM{
		VMID: vmid, Node: node, Name: name, Power: power(st), Owner: owner,
		Tags: splitTags(conf.str("tags")), Locked: st.Lock,
	}, nil
}

// power maps status and qmpstatus to a PowerState; a hibernated VM is
// stopped.
func power(st *px.VirtualMachine) agentlab.PowerState {
	switch {
	case st.Status == "running" && st.QMPStatus == "paused":
		return agentlab.PowerPaused
	case st.Status == "running":
		return agentlab.PowerRunning
	}
	return agentlab.PowerStopped
}

// List returns the VMs tagged for owner in /cluster/resources whose
// description marker confirms the owner, ordered by VMID. The resource list
// lags behind by about ten seconds, so a VM created a moment ago may be
// missing; absence from List never means a VM does not exist.
func (h *Hypervisor) List(ctx context.Context, owner string) ([]agentlab.VM, error) {
	rs, err := h.vmResources(ctx)
	if err != nil {
		return nil, translate(err, "list vms of "+owner, 0)
	}
	want := OwnerTag(owner)
	var out []agentlab.VM
	for _, r := range rs {
		if r.Type != "qemu" || r.Template != 0 || !slices.Contains(splitTags(r.Tags), want) {
			continue
		}
		vm, ok, err := h.confirmOwner(ctx, r.Node, int(r.VMID), owner)
		if err != nil {
			return nil, translate(err, "list vms of "+owner, 0)
		}
		if ok {
			out = append(out, vm)
		}
	}
	slices.SortFunc(out, func(a, b agentlab.VM) int { return a.VMID - b.VMID })
	return out, nil
}

// confirmOwner reads a listed VM and reports whether its marker names
// owner. A VM that is gone since the list was made is not owned.
func (h *Hypervisor) confirmOwner(ctx context.Context, node string, vmid int,
	owner string) (agentlab.VM, bool, error) {
	vm, err := h.describe(ctx, node, vmid)
	if classify(err) == classNotFound {
		return agentlab.VM{}, false, nil // the list lags behind
	}
	if err != nil || vm.Owner != owner {
		return agentlab.VM{}, false, err
	}
	h.remember(vmid, node)
	return vm, true, nil
}

// Start powers the VM on and waits for the start task. A VM that is already
// running (or paused) is left as it is.
func (h *Hypervisor) Start(ctx context.Context, vmid int) error {
	err := h.onVM(ctx, vmid, func(ctx context.Context, node string) error {
		return h.retry(ctx, "start", func(ctx context.Context) error {
			err := h.run(ctx, func(ctx context.Context) (*px.Task, error) {
				return h.vm(node, vmid).Start(ctx)
			})
			if err != nil && strings.Contains(errorText(err), "already running") {
				return nil
			}
			return err
		})
	})
	return translate(err, "start", vmid)
}

// Stop shuts the VM down. With a timeout it asks the guest to shut down
// (shutdown with forceStop=1, so PVE kills it at the deadline) and then
// stops it if it still runs; without one it stops it at once. A stopped VM
// is left as it is.
func (h *Hypervisor) Stop(ctx context.Context, vmid int, opts agentlab.StopOptions) error {
	err := h.onVM(ctx, vmid, func(ctx context.Context, node string) error {
		st, err := h.statusOn(ctx, node, vmid)
		if err != nil || st.Status == "stopped" {
			return err
		}
		if opts.Timeout > 0 && power(st) == agentlab.PowerRunning {
			if err := h.shutdown(ctx, node, vmid, opts.Timeout); err != nil {
				return err
			}
			if st, err = h.statusOn(ctx, node, vmid); err != nil || st.Status == "stopped" {
				return err
			}
		}
		return h.powerOff(ctx, node, vmid)
	})
	return translate(err, "stop", vmid)
}

// shutdown asks for a graceful shutdown bounded by timeout.
func (h *Hypervisor) shutdown(ctx context.Context, node string, vmid int,
	timeout time.Duration) error {
	body := map[string]any{"timeout": int(math.Ceil(timeout.Seconds())), "forceStop": 1}
	path := fmt.Sprintf("/nodes/%s/qemu/%d/status/shutdown", node, vmid)
	return h.retry(ctx, "shutdown", func(ctx context.Context) error {
		return h.run(ctx, h.post(path, body))
	})
}

// powerOff stops the VM at once.
func (h *Hypervisor) powerOff(ctx context.Context, node string, vmid int) error {
	return h.retry(ctx, "stop", func(ctx context.Context) error {
		return h.run(ctx, func(ctx context.Context) (*px.Task, error) {
			return h.vm(node, vmid).Stop(ctx)
		})
	})
}

// Suspend pauses the VM in memory (status/suspend without todisk).
func (h *Hypervisor) Suspend(ctx context.Context, vmid int) error {
	err := h.onVM(ctx, vmid, func(ctx context.Context, node string) error {
		return h.retry(ctx, "suspend", func(ctx context.Context) error {
			return h.run(ctx, func(ctx context.Context) (*px.Task, error) {
				return h.vm(node, vmid).Pause(ctx)
			})
		})
	})
	return translate(err, "suspend", vmid)
}

// Resume continues a paused (or hibernated) VM.
func (h *Hypervisor) Resume(ctx context.Context, vmid int) error {
	err := h.onVM(ctx, vmid, func(ctx context.Context, node string) error {
		return h.retry(ctx, "resume", func(ctx context.Context) error {
			return h.run(ctx, func(ctx context.Context) (*px.Task, error) {
				return h.vm(node, vmid).Resume(ctx)
			})
		})
	})
	return translate(err, "resume", vmid)
}

// Destroy stops the VM and deletes it with its disks (purge=1,
// destroy-unreferenced-disks=1). A VM that does not exist is not an error.
//
// The stop is sent without reading the power state first: PVE finishes a
// stop of a stopped VM as a no-op task, so a running VM (the usual case)
// costs one request less and a stopped one a task poll more.
func (h *Hypervisor) Destroy(ctx context.Context, vmid int) error {
	err := h.onVM(ctx, vmid, func(ctx context.Context, node string) error {
		if err := h.powerOff(ctx, node, vmid); err != nil {
			return err
		}
		return h.retry(ctx, "destroy", func(ctx context.Context) error {
			return h.run(ctx, h.destroyCall(node, vmid))
		})
	})
	if classify(err) == classNotFound {
		h.forget(vmid)
		return nil
	}
	if err == nil {
		h.forget(vmid)
	}
	return translate(err, "destroy", vmid)
}

// destroyCall sends the DELETE without go-proxmox's extra config read.
func (h *Hypervisor) destroyCall(node string, vmid int) func(context.Context) (*px.Task, error) {
	return func(ctx context.Context) (*px.Task, error) {
		var upid px.UPID
		params := map[string]int{"purge": 1, "destroy-unreferenced-disks": 1}
		path := fmt.Sprintf("/nodes/%s/qemu/%d", node, vmid)
		err := h.c.DeleteWithParams(ctx, path, params, &upid)
		return px.NewTask(upid, h.c), err
	}
}

// post returns a call that POSTs body to path and expects a UPID.
func (h *Hypervisor) post(path string, body any) func(context.Context) (*px.Task, error) {
	return func(ctx context.Context) (*px.Task, error) {
		var upid px.UPID
		err := h.c.Post(ctx, path, body, &upid)
		return px.NewTask(upid, h.c), err
	}
}

// run dispatches an asynchronous call and waits for its task.
func (h *Hypervisor) run(ctx context.Context, call func(context.Context) (*px.Task, error)) error {
	t, err := call(ctx)
	if err != nil {
		return err
	}
	return h.wait(ctx, t)
}
