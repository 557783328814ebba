package proxmox

import (
	"context"
	"fmt"
	"slices"

	"github.com/agentlab-sdk/agentlab"
	px "github.com/luthermonson/go-proxmox"
)

// onVM runs fn against the node that holds vmid's config. When fn reports
// "does not exist" the VM is looked up afresh (it may have migrated, or the
// cached node may be stale) and fn runs once more on the new node.
func (h *Hypervisor) onVM(ctx context.Context, vmid int,
	fn func(ctx context.Context, node string) error) error {
	node, err := h.locate(ctx, vmid)
	if err != nil {
		return err
	}
	err = fn(ctx, node)
	if classify(err) != classNotFound {
		return err
	}
	again, lerr := h.relocate(ctx, vmid)
	if lerr != nil {
		return lerr
	}
	if again == node {
		return err
	}
	return fn(ctx, again)
}

// locate returns the node that holds vmid's config, from the cache when it
// can.
func (h *Hypervisor) locate(ctx context.Context, vmid int) (string, error) {
	h.mu.Lock()
	node, ok := h.nodeOf[vmid]
	h.mu.Unlock()
	if ok {
		return node, nil
	}
	return h.relocate(ctx, vmid)
}

// relocate finds vmid without the cache. The cluster resource list only
// suggests where to look first, since it lags behind; the VM is concluded
// missing only when every node answers "does not exist" for it.
func (h *Hypervisor) relocate(ctx context.Context, vmid int) (string, error) {
	h.forget(vmid)
	nodes, err := h.probeOrder(ctx, vmid)
	if err != nil {
		return "", err
	}
	var firstErr error
	for _, n := range nodes {
		ok, err := h.exists(ctx, n, vmid)
		switch {
		case err != nil && firstErr == nil:
			firstErr = err
		case ok:
			h.remember(vmid, n)
			return n, nil
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", fmt.Errorf("%w: vm %d does not exist on any of the nodes %v",
		agentlab.ErrNotFound, vmid, nodes)
}

// probeOrder lists every cluster node, the one the resource list names for
// vmid first.
func (h *Hypervisor) probeOrder(ctx context.Context, vmid int) ([]string, error) {
	var nodes px.NodeStatuses
	err := h.retry(ctx, "list nodes", func(ctx context.Context) error {
		return h.c.Get(ctx, "/nodes", &nodes)
	})
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		names = append(names, n.Node)
	}
	slices.Sort(names)
	if hint := h.resourceNode(ctx, vmid); hint != "" {
		if i := slices.Index(names, hint); i > 0 {
			names = slices.Insert(slices.Delete(names, i, i+1), 0, hint)
		}
	}
	return names, nil
}

// resourceNode returns the node /cluster/resources reports for vmid, or ""
// when it is not listed or the list cannot be read.
func (h *Hypervisor) resourceNode(ctx context.Context, vmid int) string {
	rs, err := h.vmResources(ctx)
	if err != nil {
		h.log.Debug("proxmox: read cluster resources", "err", err)
		return ""
	}
	for _, r := range rs {
		if int(r.VMID) == vmid {
			return r.Node
		}
	}
	return ""
}

// vmResources reads /cluster/resources?type=vm.
func (h *Hypervisor) vmResources(ctx context.Context) (px.ClusterResources, error) {
	var rs px.ClusterResources
	err := h.retry(ctx, "list vms", func(ctx context.Context) error {
		var err error
		rs, err = h.cluster().Resources(ctx, "vm")
		return err
	})
	return rs, err
}

// exists asks node for vmid's status; "does not exist" is (false, nil).
func (h *Hypervisor) exists(ctx context.Context, node string, vmid int) (bool, error) {
	_, err := h.statusOn(ctx, node, vmid)
	switch classify(err) {
	case classNotFound:
		return false, nil
	case classOther:
		if err == nil {
			return true, nil
		}
	}
	return false, err
}

// statusOn reads status/current of vmid on node.
func (h *Hypervisor) statusOn(ctx context.Context, node string,
	vmid int) (*px.VirtualMachine, error) {
	st := &px.VirtualMachine{}
	err := h.retry(ctx, "read vm status", func(ctx context.Context) error {
		return h.c.Get(ctx, fmt.Sprintf("/nodes/%s/qemu/%d/status/current", node, vmid), st)
	})
	return st, err
}

// configOn reads the config of vmid on node as PVE sends it.
func (h *Hypervisor) configOn(ctx context.Context, node string, vmid int) (vmConfig, error) {
	conf := vmConfig{}
	err := h.retry(ctx, "read vm config", func(ctx context.Context) error {
		return h.c.Get(ctx, fmt.Sprintf("/nodes/%s/qemu/%d/config", node, vmid), &conf)
	})
	return conf, err
}

func (h *Hypervisor) remember(vmid int, node string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nodeOf[vmid] = node
}

func (h *Hypervisor) forget(vmid int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.nodeOf, vmid)
}
