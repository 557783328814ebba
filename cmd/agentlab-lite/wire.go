package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/sshx"
	"github.com/agentlab-sdk/agentlab/store"
)

// mode says which background work a command's Manager does.
type mode int

const (
	// modeCommand is a short-lived command: no initial reconcile, no
	// background loops, and jobs of other processes are never taken over.
	modeCommand mode = iota
	// modeSupervisor runs one job or one sandbox creation to its end:
	// heartbeats, no loops.
	modeSupervisor
	// modeMaintain is the long-running maintenance process (reconcile
	// --watch, sim serve): reconcile at start and periodically, the lease
	// reaper, idle stop, and re-attaching jobs whose runner died.
	modeMaintain
)

// never is a job heartbeat timeout that no job reaches, so that a
// short-lived command never takes over another process's job.
const never = 100 * 365 * 24 * time.Hour

// defaultJobHeartbeat is how long a job's runner may stay silent before a
// maintenance process takes the job over. It exceeds a slow provisioning,
// during which the SDK writes no heartbeat.
const defaultJobHeartbeat = 10 * time.Minute

// app is an opened configuration: the store, the backends and the Manager.
// Close releases them in reverse order.
type app struct {
	cfg      *config
	store    *store.SQLite
	guest    *sshx.Transport
	hv       agentlab.Hypervisor
	m        *agentlab.Manager
	pubKey   string
	profErrs []error // profile files that could not be loaded
	log      *slog.Logger
	jobBeat  time.Duration
	stateDir string
}

// logger returns the SDK logger: debug records on stderr with --debug,
// silent otherwise.
func (c *cli) logger() *slog.Logger {
	if !c.debug {
		return nil
	}
	return slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// loadConfig finds and loads the configuration file.
func (c *cli) loadConfig() (*config, error) {
	if err := c.act(); err != nil {
		return nil, err
	}
	path, source := configLocation(c.configPath, c.getenv)
	cfg, err := loadConfig(path, source, c.getenv)
	if err != nil {
		return nil, err
	}
	// The SDK's own warning goes to a logger that is silent by default.
	if t := cfg.Proxmox.TLS; t.InsecureSkipVerify && t.Fingerprint == "" {
		fmt.Fprintln(c.stderr, "warning: TLS verification of the Proxmox API is off "+
			"(proxmox.tls.insecure_skip_verify); use it in a lab only")
	}
	return cfg, nil
}

// open loads the configuration and opens the app for a command.
func (c *cli) open(ctx context.Context, md mode) (*app, error) {
	cfg, err := c.loadConfig()
	if err != nil {
		return nil, err
	}
	return openApp(ctx, cfg, md, nil, c.logger())
}

// openApp opens the store, the backends and a Manager configured for md.
// dial, when not nil, replaces the SSH dialer (the embedded simulator's).
func openApp(ctx context.Context, cfg *config, md mode, dial dialFunc, log *slog.Logger) (
	*app, error) {
	a := &app{cfg: cfg, log: log, stateDir: cfg.StateDir}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if err := a.openBackends(ctx, dial); err != nil {
		a.Close(ctx)
		return nil, err
	}
	profiles := a.loadProfiles()
	m, err := agentlab.New(ctx, a.managerConfig(md, profiles))
	if err != nil {
		a.Close(ctx)
		return nil, fmt.Errorf("start manager: %w", err)
	}
	a.m = m
	return a, nil
}

func (a *app) openBackends(ctx context.Context, dial dialFunc) error {
	signer, pub, err := loadKey(a.cfg)
	if err != nil {
		return err
	}
	a.pubKey = pub
	if a.guest, err = newTransport(a.cfg, signer, dial, a.log); err != nil {
		return err
	}
	a.hv = &lazyHypervisor{cfg: a.cfg.proxmox(a.log)}
	a.store, err = openStore(ctx, a.cfg, a.log)
	return err
}

// loadProfiles reads the profiles directory, fresh on every command (no
// reload step). Broken files are skipped and remembered: the commands that
// need a profile report them when the profile asked for is missing.
func (a *app) loadProfiles() *agentlab.ProfileSet {
	set, errs := loadProfileDir(a.cfg.ProfilesDir)
	a.profErrs = errs
	return set
}

func (a *app) managerConfig(md mode, profiles *agentlab.ProfileSet) agentlab.Config {
	cfg := a.cfg
	a.jobBeat = defaultJobHeartbeat
	if d := time.Duration(cfg.Timeouts.JobHeartbeat); d > 0 {
		a.jobBeat = d
	}
	mc := agentlab.Config{
		Store: a.store, Hypervisor: a.hv, Guest: a.guest, Profiles: profiles,
		Owner: cfg.Owner, VMIDMin: cfg.VMIDMin, VMIDMax: cfg.VMIDMax,
		SSHPublicKeys: []string{a.pubKey}, TrustOnFirstUse: cfg.SSH.TrustOnFirstUse,
		ReadyTimeout: time.Duration(cfg.Timeouts.Ready),
		StopTimeout:  time.Duration(cfg.Timeouts.Stop), ArtifactDir: cfg.ArtifactsDir,
		JobHeartbeatTimeout: a.jobBeat, Logger: a.log,
	}
	if md == modeMaintain {
		mt := cfg.Maintenance
		mc.ReconcileInterval = time.Duration(mt.ReconcileInterval)
		mc.ReapInterval = time.Duration(mt.ReapInterval)
		mc.IdleInterval = time.Duration(mt.IdleInterval)
	}
	if md != modeMaintain {
		mc.SkipInitialReconcile = true
		mc.ReapInterval, mc.IdleInterval, mc.ReconcileInterval = -1, -1, -1
	}
	if md == modeCommand {
		mc.JobHeartbeatTimeout = never
	}
	return mc
}

// Close closes the Manager, the guest transport and the store.
func (a *app) Close(ctx context.Context) {
	if a.m != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := a.m.Close(ctx); err != nil {
			a.log.Debug("close manager", "err", err)
		}
	}
	if a.guest != nil {
		_ = a.guest.Close()
	}
	if a.store != nil {
		_ = a.store.Close()
	}
}
