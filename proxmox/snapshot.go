package proxmox

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/agentlab-sdk/agentlab"
	px "github.com/luthermonson/go-proxmox"
)

// checkSnapshotName refuses, before any request, a name that is not a PVE
// snapshot name: it goes into the API path, where "..", "/", "?" or "%"
// would change what is called.
func checkSnapshotName(verb string, vmid int, name string) error {
	if err := agentlab.ValidateSnapshotName(name); err != nil {
		return fmt.Errorf("%s vm %d: %w", verb, vmid, err)
	}
	return nil
}

// Snapshot takes a snapshot; with spec.Memory it includes RAM (vmstate=1),
// which PVE ignores for a stopped VM. After a transport error the call is
// repeated only if the snapshot did not appear. A name
// [agentlab.ValidateSnapshotName] refuses matches
// [agentlab.ErrInvalidArgument]; so it does in Rollback and DeleteSnapshot.
func (h *Hypervisor) Snapshot(ctx context.Context, vmid int, spec agentlab.SnapshotSpec) error {
	if err := checkSnapshotName("snapshot", vmid, spec.Name); err != nil {
		return err
	}
	err := h.onVM(ctx, vmid, func(ctx context.Context, node string) error {
		body := map[string]any{"snapname": spec.Name}
		if spec.Memory {
			body["vmstate"] = 1
		}
		if spec.Description != "" {
			body["description"] = spec.Description
		}
		path := fmt.Sprintf("/nodes/%s/qemu/%d/snapshot", node, vmid)
		return h.retry(ctx, "snapshot", func(ctx context.Context) error {
			err := h.run(ctx, h.post(path, body))
			if classify(err) != classTransient {
				return err
			}
			if ok, lerr := h.hasSnapshot(ctx, node, vmid, spec.Name); lerr == nil && ok {
				return h.awaitUnlock(ctx, node, vmid)
			}
			return err
		})
	})
	return translate(err, "snapshot "+spec.Name+" of", vmid)
}

// hasSnapshot reports whether vmid has a snapshot called name.
func (h *Hypervisor) hasSnapshot(ctx context.Context, node string, vmid int,
	name string) (bool, error) {
	snaps, err := h.snapshotsOn(ctx, node, vmid)
	if err != nil {
		return false, err
	}
	named := func(s agentlab.SnapshotInfo) bool { return s.Name == name }
	return slices.ContainsFunc(snaps, named), nil
}

// Snapshots lists the VM's snapshots, oldest first, without "current".
func (h *Hypervisor) Snapshots(ctx context.Context, vmid int) ([]agentlab.SnapshotInfo, error) {
	var out []agentlab.SnapshotInfo
	err := h.onVM(ctx, vmid, func(ctx context.Context, node string) error {
		var err error
		out, err = h.snapshotsOn(ctx, node, vmid)
		return err
	})
	return out, translate(err, "list snapshots of", vmid)
}

func (h *Hypervisor) snapshotsOn(ctx context.Context, node string,
	vmid int) ([]agentlab.SnapshotInfo, error) {
	var snaps []*px.VirtualMachineSnapshot
	err := h.retry(ctx, "list snapshots", func(ctx context.Context) error {
		var err error
		snaps, err = h.vm(node, vmid).Snapshots(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]agentlab.SnapshotInfo, 0, len(snaps))
	for _, s := range snaps {
		if s.Name == "current" {
			continue
		}
		parent := s.Parent
		if parent == "current" {
			parent = ""
		}
		out = append(out, agentlab.SnapshotInfo{Name: s.Name, Memory: s.Vmstate == 1,
			CreatedAt: time.Unix(s.Snaptime, 0), Parent: parent})
	}
	sortSnapshots(out)
	return out, nil
}

// sortSnapshots orders snapshots by creation time; snapshots taken in the
// same second are ordered by their depth in the parent chain.
func sortSnapshots(snaps []agentlab.SnapshotInfo) {
	parent := make(map[string]string, len(snaps))
	for _, s := range snaps {
		parent[s.Name] = s.Parent
	}
	depth := func(name string) int {
		d := 0
		for p := parent[name]; p != "" && d <= len(snaps); p = parent[p] {
			d++
		}
		return d
	}
	slices.SortStableFunc(snaps, func(a, b agentlab.SnapshotInfo) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return depth(a.Name) - depth(b.Name)
	})
}

// Rollback restores a snapshot. PVE leaves the VM stopped unless the
// snapshot holds RAM, in which case it runs again. A missing snapshot
// matches [agentlab.ErrNotFound].
func (h *Hypervisor) Rollback(ctx context.Context, vmid int, name string) error {
	if err := checkSnapshotName("roll back", vmid, name); err != nil {
		return err
	}
	err := h.onVM(ctx, vmid, func(ctx context.Context, node string) error {
		return h.retry(ctx, "rollback", func(ctx context.Context) error {
			return h.run(ctx, h.vm(node, vmid).Snapshot(name).Rollback)
		})
	})
	return translate(err, "roll back to "+name+" of", vmid)
}

// DeleteSnapshot removes a snapshot. A missing snapshot matches
// [agentlab.ErrNotFound], except after a retry, where it means the first
// attempt did the work.
func (h *Hypervisor) DeleteSnapshot(ctx context.Context, vmid int, name string) error {
	if err := checkSnapshotName("delete snapshot of", vmid, name); err != nil {
		return err
	}
	err := h.onVM(ctx, vmid, func(ctx context.Context, node string) error {
		attempt := 0
		return h.retry(ctx, "delete snapshot", func(ctx context.Context) error {
			attempt++
			err := h.run(ctx, h.vm(node, vmid).Snapshot(name).Delete)
			if attempt > 1 && classify(err) == classNotFound {
				return nil
			}
			return err
		})
	})
	return translate(err, "delete snapshot "+name+" of", vmid)
}

// awaitUnlock polls status/current until the VM's config lock is gone.
func (h *Hypervisor) awaitUnlock(ctx context.Context, node string, vmid int) error {
	for {
		st, err := h.statusOn(ctx, node, vmid)
		if err != nil || st.Lock == "" || st.Lock == "suspended" {
			return err
		}
		if err := sleep(ctx, h.cfg.PollInterval); err != nil {
			return fmt.Errorf("wait for lock %q to clear: %w", st.Lock, err)
		}
	}
}
