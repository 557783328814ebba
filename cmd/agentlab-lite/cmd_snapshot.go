package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

type snapshotJSON struct {
	Sandbox   int        `json:"sandbox"`
	Name      string     `json:"name"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
	Memory    bool       `json:"memory"`
	Parent    string     `json:"parent,omitempty"`
	State     string     `json:"state,omitempty"`
}

// findSnapshot returns the named snapshot, if the VM has it.
func findSnapshot(ctx context.Context, sb *agentlab.Sandbox, name string) (
	agentlab.SnapshotInfo, bool, error) {
	snaps, err := sb.Snapshots(ctx)
	if err != nil {
		return agentlab.SnapshotInfo{}, false, err
	}
	for _, s := range snaps {
		if s.Name == name {
			return s, true, nil
		}
	}
	return agentlab.SnapshotInfo{}, false, nil
}

// needSnapshot fails, naming the snapshots there are, unless the sandbox
// has the named one.
func needSnapshot(ctx context.Context, sb *agentlab.Sandbox, name string) error {
	snaps, err := sb.Snapshots(ctx)
	if err != nil {
		return explain(err, fmt.Sprintf("agentlab-lite sandbox show %d", sb.VMID()))
	}
	names := make([]string, 0, len(snaps))
	for _, s := range snaps {
		if s.Name == name {
			return nil
		}
		names = append(names, s.Name)
	}
	ce := failf(fmt.Sprintf("agentlab-lite sandbox snapshot list %d", sb.VMID()),
		"sandbox %d has no snapshot %q", sb.VMID(), name)
	if len(names) == 0 {
		ce.hints = []string{"it has no snapshots"}
		return ce
	}
	ce.hints = []string{"its snapshots: " + strings.Join(names, ", ")}
	if s := suggest(name, names); s != "" {
		ce.hints = append(ce.hints, fmt.Sprintf("did you mean %q?", s))
	}
	return ce
}

func cmdSnapshotSave(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	memory := fs.Bool("memory", false, "include RAM, so a restore resumes running processes")
	force := fs.Bool("force", false, "replace a snapshot of the same name")
	a, sb, rest, err := c.oneSandbox(ctx, fs, args, 2, c.snapshotName)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	name := rest[0]
	_, exists, err := findSnapshot(ctx, sb, name)
	if err != nil {
		return explain(err, "")
	}
	if exists && !*force {
		return failf(fmt.Sprintf("agentlab-lite sandbox snapshot save --force %d %s",
			sb.VMID(), name), "sandbox %d already has a snapshot %q", sb.VMID(), name)
	}
	err = c.withProgress(a, sb.VMID(), func() error {
		if exists {
			if err := sb.DeleteSnapshot(ctx, name); err != nil {
				return err
			}
		}
		return sb.SaveSnapshot(ctx, name, &agentlab.SnapshotOptions{Memory: *memory})
	})
	if err != nil {
		return explain(err, fmt.Sprintf("agentlab-lite sandbox show %d", sb.VMID()))
	}
	info, _, err := findSnapshot(ctx, sb, name)
	if err != nil {
		return explain(err, "")
	}
	if info.CreatedAt.IsZero() {
		info.CreatedAt = time.Now()
	}
	out := snapshotJSON{Sandbox: sb.VMID(), Name: name, CreatedAt: tsPtr(info.CreatedAt),
		Memory: info.Memory || *memory, Parent: info.Parent}
	if c.json {
		return c.printJSON(out)
	}
	kv(c.stdout, "Sandbox", fmt.Sprint(out.Sandbox), "Snapshot", name,
		"Created At", ts(info.CreatedAt))
	return nil
}

// snapshotName checks the snapshot name, the second positional argument.
func (c *cli) snapshotName(pos []string) error {
	if err := agentlab.ValidateSnapshotName(pos[1]); err != nil {
		return usagef(c.helpRef(), "%s", sdkText(err))
	}
	return nil
}

func cmdSnapshotList(ctx context.Context, c *cli, args []string) error {
	a, sb, _, err := c.oneSandbox(ctx, c.flags(), args, 1)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	snaps, err := sb.Snapshots(ctx)
	if err != nil {
		return explain(err, fmt.Sprintf("agentlab-lite sandbox show %d", sb.VMID()))
	}
	out := make([]snapshotJSON, len(snaps))
	for i, s := range snaps {
		out[i] = snapshotJSON{Sandbox: sb.VMID(), Name: s.Name, CreatedAt: tsPtr(s.CreatedAt),
			Memory: s.Memory, Parent: s.Parent}
	}
	if c.json {
		return c.printJSON(map[string]any{"sandbox": sb.VMID(), "snapshots": out})
	}
	t := newTable(c.stdout, "NAME", "CREATED")
	for _, s := range snaps {
		created := "-"
		if !s.CreatedAt.IsZero() {
			created = s.CreatedAt.UTC().Format(time.RFC3339)
		}
		t.row(s.Name, created)
	}
	return t.flush()
}

func cmdSnapshotRestore(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	force := fs.Bool("force", false, "do not ask for confirmation")
	stopped := fs.Bool("stopped", false, "leave the sandbox stopped afterwards "+
		"(default: back to its previous run state)")
	a, sb, rest, err := c.oneSandbox(ctx, fs, args, 2, c.snapshotName)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	name := rest[0]
	if err := needSnapshot(ctx, sb, name); err != nil {
		return err
	}
	if err := c.confirmDiscard(sb, *force, "snapshot restore", " "+name); err != nil {
		return err
	}
	err = c.withProgress(a, sb.VMID(), func() error {
		return sb.RestoreSnapshot(ctx, name, &agentlab.RestoreOptions{Stopped: *stopped})
	})
	if err != nil {
		return explain(err, fmt.Sprintf("agentlab-lite sandbox snapshot list %d", sb.VMID()))
	}
	rec, err := sb.Refresh(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(snapshotJSON{Sandbox: sb.VMID(), Name: name, State: string(rec.State)})
	}
	kv(c.stdout, "Sandbox", fmt.Sprint(sb.VMID()), "Snapshot", name, "State", string(rec.State),
		"IP", dash(rec.IP))
	return nil
}

func cmdSnapshotDelete(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	force := fs.Bool("force", false, "also delete the \"clean\" snapshot revert uses")
	a, sb, rest, err := c.oneSandbox(ctx, fs, args, 2, c.snapshotName)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	name := rest[0]
	if name == agentlab.CleanSnapshot && !*force {
		return failf(fmt.Sprintf("agentlab-lite sandbox snapshot delete --force %d %s",
			sb.VMID(), name), "snapshot %q is what sandbox revert restores; pass --force", name)
	}
	if err := needSnapshot(ctx, sb, name); err != nil {
		return err
	}
	if err := sb.DeleteSnapshot(ctx, name); err != nil {
		return explain(err, fmt.Sprintf("agentlab-lite sandbox snapshot list %d", sb.VMID()))
	}
	if c.json {
		return c.printJSON(snapshotJSON{Sandbox: sb.VMID(), Name: name})
	}
	fmt.Fprintf(c.stdout, "snapshot %s deleted from sandbox %d\n", name, sb.VMID())
	return nil
}
