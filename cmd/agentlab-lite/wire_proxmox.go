package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox"
)

// proxmoxConfig builds the proxmox backend's Config from the file.
func (c *config) proxmox(log *slog.Logger) proxmox.Config {
	p := c.Proxmox
	return proxmox.Config{
		URL: p.URL, TokenID: p.TokenID, TokenSecret: c.TokenSecret,
		CAFile: p.TLS.CAFile, Fingerprint: p.TLS.Fingerprint,
		InsecureSkipVerify: p.TLS.InsecureSkipVerify,
		Nodes:              p.Nodes, GuestCIDR: c.GuestCIDR, Bridge: p.Bridge, Storage: p.Storage,
		CloneConcurrency: p.CloneConcurrency, PollInterval: time.Duration(p.PollInterval),
		Logger: log,
	}
}

// lazyHypervisor connects to Proxmox on first use, so that commands that
// only read the Store (show, list, logs, status) work while the API is
// down. A failed connection is retried on the next call. It is safe for
// concurrent use.
type lazyHypervisor struct {
	cfg proxmox.Config

	mu sync.Mutex // guards hv
	hv *proxmox.Hypervisor
}

func (l *lazyHypervisor) get(ctx context.Context) (*proxmox.Hypervisor, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hv != nil {
		return l.hv, nil
	}
	hv, err := proxmox.New(ctx, l.cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to proxmox %s: %w", l.cfg.URL, err)
	}
	l.hv = hv
	return hv, nil
}

var _ agentlab.Hypervisor = (*lazyHypervisor)(nil)

// Provision implements agentlab.Hypervisor, connecting on first use.
func (l *lazyHypervisor) Provision(ctx context.Context, spec agentlab.ProvisionSpec) (
	agentlab.VM, error) {
	hv, err := l.get(ctx)
	if err != nil {
		return agentlab.VM{}, err
	}
	return hv.Provision(ctx, spec)
}

// Start implements agentlab.Hypervisor, connecting on first use.
func (l *lazyHypervisor) Start(ctx context.Context, vmid int) error {
	return l.do(ctx, func(hv *proxmox.Hypervisor) error { return hv.Start(ctx, vmid) })
}

// Stop implements agentlab.Hypervisor, connecting on first use.
func (l *lazyHypervisor) Stop(ctx context.Context, vmid int, opts agentlab.StopOptions) error {
	return l.do(ctx, func(hv *proxmox.Hypervisor) error { return hv.Stop(ctx, vmid, opts) })
}

// Suspend implements agentlab.Hypervisor, connecting on first use.
func (l *lazyHypervisor) Suspend(ctx context.Context, vmid int) error {
	return l.do(ctx, func(hv *proxmox.Hypervisor) error { return hv.Suspend(ctx, vmid) })
}

// Resume implements agentlab.Hypervisor, connecting on first use.
func (l *lazyHypervisor) Resume(ctx context.Context, vmid int) error {
	return l.do(ctx, func(hv *proxmox.Hypervisor) error { return hv.Resume(ctx, vmid) })
}

// Destroy implements agentlab.Hypervisor, connecting on first use.
func (l *lazyHypervisor) Destroy(ctx context.Context, vmid int) error {
	return l.do(ctx, func(hv *proxmox.Hypervisor) error { return hv.Destroy(ctx, vmid) })
}

// Status implements agentlab.Hypervisor, connecting on first use.
func (l *lazyHypervisor) Status(ctx context.Context, vmid int) (agentlab.VM, error) {
	hv, err := l.get(ctx)
	if err != nil {
		return agentlab.VM{}, err
	}
	return hv.Status(ctx, vmid)
}

// List implements agentlab.Hypervisor, connecting on first use.
func (l *lazyHypervisor) List(ctx context.Context, owner string) ([]agentlab.VM, error) {
	hv, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return hv.List(ctx, owner)
}

// GuestInfo implements agentlab.Hypervisor, connecting on first use.
func (l *lazyHypervisor) GuestInfo(ctx context.Context, vmid int) (agentlab.GuestInfo, error) {
	hv, err := l.get(ctx)
	if err != nil {
		return agentlab.GuestInfo{}, err
	}
	return hv.GuestInfo(ctx, vmid)
}

// Snapshot implements agentlab.Hypervisor, connecting on first use.
func (l *lazyHypervisor) Snapshot(ctx context.Context, vmid int,
	spec agentlab.SnapshotSpec) error {
	return l.do(ctx, func(hv *proxmox.Hypervisor) error { return hv.Snapshot(ctx, vmid, spec) })
}

// Snapshots implements agentlab.Hypervisor, connecting on first use.
func (l *lazyHypervisor) Snapshots(ctx context.Context, vmid int) ([]agentlab.SnapshotInfo,
	error) {
	hv, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return hv.Snapshots(ctx, vmid)
}

// Rollback implements agentlab.Hypervisor, connecting on first use.
func (l *lazyHypervisor) Rollback(ctx context.Context, vmid int, name string) error {
	return l.do(ctx, func(hv *proxmox.Hypervisor) error { return hv.Rollback(ctx, vmid, name) })
}

// DeleteSnapshot implements agentlab.Hypervisor, connecting on first use.
func (l *lazyHypervisor) DeleteSnapshot(ctx context.Context, vmid int, name string) error {
	return l.do(ctx, func(hv *proxmox.Hypervisor) error {
		return hv.DeleteSnapshot(ctx, vmid, name)
	})
}

func (l *lazyHypervisor) do(ctx context.Context, fn func(*proxmox.Hypervisor) error) error {
	hv, err := l.get(ctx)
	if err != nil {
		return err
	}
	return fn(hv)
}
