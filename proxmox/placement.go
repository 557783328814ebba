package proxmox

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/agentlab-sdk/agentlab"
	px "github.com/luthermonson/go-proxmox"
)

// defaultReserve is the memory a clone in flight is assumed to take when the
// spec keeps the template's size.
const defaultReserve = 1 << 30

// place picks the node for a new VM: spec.Node when set; else the
// template's node when the template's disks are on node-local storage
// (linked and local clones cannot leave it); else the online allowed node
// with the least memory in use, counting clones this Hypervisor has in
// flight. release gives back the reservation once provisioning ends.
func (h *Hypervisor) place(ctx context.Context, spec agentlab.ProvisionSpec, tnode string,
	tconf vmConfig) (node string, release func(), err error) {
	reserve := uint64(defaultReserve)
	if spec.MemoryMB > 0 {
		reserve = uint64(spec.MemoryMB) << 20
	}
	switch {
	case spec.Node != "":
		node = spec.Node
	case !h.sharedDisks(ctx, tconf):
		node = tnode
	default:
		node, err = h.leastLoaded(ctx, reserve)
		if err != nil {
			return "", nil, err
		}
	}
	if !h.allowed(node) {
		return "", nil, fmt.Errorf("%w: node %s is not in Config.Nodes %v (template %d is on %s)",
			agentlab.ErrInvalidArgument, node, h.cfg.Nodes, spec.Template, tnode)
	}
	return node, h.reserve(node, reserve), nil
}

func (h *Hypervisor) allowed(node string) bool {
	return len(h.cfg.Nodes) == 0 || slices.Contains(h.cfg.Nodes, node)
}

// reserve counts bytes against node until the returned func runs.
func (h *Hypervisor) reserve(node string, bytes uint64) func() {
	h.mu.Lock()
	h.pending[node] += bytes
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.pending[node] -= bytes
		if h.pending[node] == 0 {
			delete(h.pending, node)
		}
	}
}

// leastLoaded picks the online allowed node with the lowest share of memory
// in use, counting reservations; ties go to the node name.
func (h *Hypervisor) leastLoaded(ctx context.Context, reserve uint64) (string, error) {
	var rs px.ClusterResources
	err := h.retry(ctx, "list nodes", func(ctx context.Context) error {
		var err error
		rs, err = h.cluster().Resources(ctx, "node")
		return err
	})
	if err != nil {
		return "", fmt.Errorf("list nodes: %w", err)
	}
	best, bestScore := "", 0.0
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range rs {
		if r.Type != "node" || r.Status != "online" || !h.allowed(r.Node) {
			continue
		}
		score := float64(r.Mem+h.pending[r.Node]+reserve) / float64(max(r.MaxMem, 1))
		if best == "" || score < bestScore || (score == bestScore && r.Node < best) {
			best, bestScore = r.Node, score
		}
	}
	if best == "" {
		return "", fmt.Errorf("%w: no online node among %v", agentlab.ErrBusy, h.cfg.Nodes)
	}
	return best, nil
}

// sharedDisks reports whether every disk of the template lives on shared
// storage. Unknown storage, or a storage list that cannot be read, counts
// as local: the template's own node is always a valid placement.
func (h *Hypervisor) sharedDisks(ctx context.Context, conf vmConfig) bool {
	stores, ok := diskStorages(conf)
	if !ok || len(stores) == 0 {
		return false
	}
	rs, err := h.storageList(ctx)
	if err != nil {
		h.log.Debug("proxmox: list storage; placing on the template's node", "err", err)
		return false
	}
	for _, s := range stores {
		if !slices.ContainsFunc(rs, func(r *px.ClusterResource) bool {
			return r.Storage == s && r.Shared == 1
		}) {
			return false
		}
	}
	return true
}

// storageList reads /cluster/resources?type=storage, or takes it from the
// cache (Config.CacheTTL).
func (h *Hypervisor) storageList(ctx context.Context) (px.ClusterResources, error) {
	if rs, ok := h.storages.get(struct{}{}); ok {
		return rs, nil
	}
	var rs px.ClusterResources
	err := h.retry(ctx, "list storage", func(ctx context.Context) error {
		var err error
		rs, err = h.cluster().Resources(ctx, "storage")
		return err
	})
	if err != nil {
		return nil, err
	}
	h.storages.put(struct{}{}, rs)
	return rs, nil
}

// diskStorages lists the storage IDs of the config's disks, CD-ROMs
// excepted; ok is false when a disk is a passed-through device.
func diskStorages(conf vmConfig) (stores []string, ok bool) {
	for k := range conf {
		v := conf.str(k)
		if !isDiskKey(k) || strings.Contains(v, "media=cdrom") || v == "none" {
			continue
		}
		id, _, found := strings.Cut(v, ":")
		if !found || strings.HasPrefix(v, "/") {
			return nil, false
		}
		stores = append(stores, id)
	}
	return stores, true
}

// acquire takes one of the clone slots of node, waiting while all are in
// use.
func (h *Hypervisor) acquire(ctx context.Context, node string) (func(), error) {
	h.mu.Lock()
	sem, ok := h.sems[node]
	if !ok {
		sem = make(chan struct{}, h.cfg.CloneConcurrency)
		h.sems[node] = sem
	}
	h.mu.Unlock()
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for a clone slot on %s: %w", node, ctx.Err())
	}
}
