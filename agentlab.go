// Package agentlab gives AI-agent orchestrators disposable, network-isolated
// VM sandboxes on Proxmox VE.
//
// # Overview
//
// A [Manager] drives sandboxes through their lifecycle: it clones a template
// into a VM, boots it, waits until its guest answers over SSH, and then lets
// the caller run commands, copy files, pause, resume, stop, start, snapshot,
// restore, renew a lease and destroy it. A [Job] runs a task from a git
// repository in a fresh sandbox and brings back its status, log and
// artifacts. There is no daemon: the process that embeds the Manager drives
// the work, and several processes may share one Store.
//
// # Backends
//
// The Manager is built from three small interfaces defined here and
// implemented in subpackages, the way database/sql is built on drivers:
//
//   - [Store] keeps records and events: package store (SQLite, or in memory).
//   - [Hypervisor] controls VMs: package proxmox (Proxmox VE over
//     go-proxmox); proxmox/pvesim is a wire-level simulator of the PVE API.
//   - [Guest] reaches running sandboxes: package sshx (SSH and SFTP).
//
// # States
//
// A sandbox is in one of the [State] values. [Transitions] is the one table
// of allowed moves and [ValidStates] the one table of which operation is
// valid in which state; an operation refused in the current state returns an
// [*InvalidStateError] naming the state and the valid ones. Every change is
// a compare-and-set in the Store, so concurrent callers and processes never
// lose an update.
//
// # Events
//
// Every change is recorded as an [Event]: first stored durably with an ID
// greater than all before it, then published to the subscriptions of the
// Manager that made it. The delivery contract:
//
//   - A subscription receives the events its Manager publishes after it was
//     created, in increasing ID order. Events written by other processes
//     sharing the Store are not pushed; replay them.
//   - Each subscription has a bounded buffer. Publishing never blocks: when a
//     subscriber's buffer is full the event is dropped for that subscriber
//     alone and counted in [Subscription.Dropped]. A slow subscriber never
//     delays a lifecycle call or another subscriber.
//   - Nothing is lost for good: every event stays in the Store, and
//     [Manager.Events] replays them from any ID. A subscriber that saw a drop
//     replays from the last ID it received and skips IDs it already has.
//   - The channel is closed when the subscription or the Manager closes.
//
// # Errors
//
// Errors match the sentinels ([ErrNotFound], [ErrInvalidState],
// [ErrAlreadyExists], [ErrVMIDConflict], [ErrBusy], [ErrTimeout], [ErrClosed],
// [ErrUnsupported], [ErrInvalidArgument], [ErrHostKeyMismatch]) with
// [errors.Is], and carry the operation and the sandbox in their text.
//
// # Testing
//
// Package agentlabtest holds a deterministic fake Hypervisor and Guest, the
// in-memory Store, and conformance suites that every Store and Hypervisor
// implementation runs. Package proxmox/pvesim serves the real Proxmox API on
// loopback for tests that want the whole wire path.
package agentlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Config configures a [Manager]. Store and Hypervisor are required; every
// other field has a documented zero value.
type Config struct {
	// Store keeps records and events. The Manager does not close it.
	Store Store

	// Hypervisor controls the VMs.
	Hypervisor Hypervisor

	// Guest reaches running sandboxes. Nil means no guest access: Create
	// does not wait for the guest, and Exec and file transfers return
	// ErrUnsupported. The Manager does not close it.
	Guest Guest

	// Profiles holds the sandbox profiles. Nil means an empty set; load one
	// with [LoadProfiles] and swap it later with [Manager.SetProfiles].
	Profiles *ProfileSet

	// Owner is the ownership marker stamped on every VM this Manager creates
	// and the key reconcile uses to find them. Zero means "agentlab". Give
	// each orchestrator sharing a cluster its own.
	Owner string

	// VMIDMin and VMIDMax bound automatically chosen VMIDs (inclusive).
	// Zero means 1000 and 8999.
	VMIDMin, VMIDMax int

	// SSHPublicKeys are authorized in every guest through cloud-init.
	SSHPublicKeys []string

	// TrustOnFirstUse accepts a guest's SSH host key on first contact when
	// the hypervisor could not report it. False refuses unknown keys.
	TrustOnFirstUse bool

	// ReadyTimeout bounds the wait for a new or restarted guest. Zero means
	// five minutes.
	ReadyTimeout time.Duration

	// StopTimeout bounds a graceful shutdown before the VM is powered off.
	// Zero means 30 seconds.
	StopTimeout time.Duration

	// ReapInterval, IdleInterval and ReconcileInterval set how often the
	// background loops run. Zero means 10 s, 1 min and 30 s; a negative value
	// disables the loop (the work can still be run with [Manager.Reap],
	// [Manager.StopIdle] and [Manager.Reconcile]).
	ReapInterval, IdleInterval, ReconcileInterval time.Duration

	// StaleOpAfter is how old an unfinished operation recorded on a sandbox
	// must be before another caller or reconcile may take it over (it was
	// interrupted by a crash). Until then the sandbox is busy. Zero means ten
	// minutes.
	StaleOpAfter time.Duration

	// SkipInitialReconcile skips the reconcile pass New runs.
	SkipInitialReconcile bool

	// ArtifactDir is where job logs and artifacts are downloaded, one
	// directory per job. Zero means "agentlab/artifacts" in the user's cache
	// directory.
	ArtifactDir string

	// MaxArtifactBytes bounds the bytes of one job's log and artifacts that
	// are downloaded to ArtifactDir: an artifact that would exceed it is not
	// kept, and a job.step event says so. Zero means 1 GiB; a negative value
	// means no limit.
	MaxArtifactBytes int64

	// JobPollInterval is how often a job runner looks at its guest process.
	// Zero means one second.
	JobPollInterval time.Duration

	// JobHeartbeatTimeout is how long a running job may go without its
	// runner's heartbeat before another Manager re-attaches to it. Zero
	// means 30 seconds.
	JobHeartbeatTimeout time.Duration

	// Logger receives debug logs. Nil means silent.
	Logger *slog.Logger

	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Manager creates and drives sandboxes and jobs. It is safe for concurrent
// use. Create it with [New] and release it with [Manager.Close].
type Manager struct {
	cfg   Config
	store Store
	hv    Hypervisor
	guest Guest
	log   *slog.Logger
	now   func() time.Time
	bus   bus

	emitMu sync.Mutex // serialises event append+publish so IDs arrive in order

	profMu   sync.RWMutex // guards profiles
	profiles *ProfileSet

	mu       sync.Mutex // guards closed, jobs, logCount and inGuest
	closed   bool
	jobs     map[string]*Job // jobs this process runs
	logCount map[string]int  // job.log events published per job
	inGuest  map[int]int     // guest operations in flight per VMID

	instance string // identifies this Manager in job heartbeats

	ctx    context.Context // cancelled by Close; parent of background work
	cancel context.CancelFunc
	wg     sync.WaitGroup // background loops and job runners
}

// New validates cfg, runs a first reconcile pass, and starts the background
// loops (lease reaper, idle stop, periodic reconcile). A reconcile failure
// is logged, not returned, so that a Manager can start while the hypervisor
// is down; call [Manager.Reconcile] to see it.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m := &Manager{
		cfg: cfg, store: cfg.Store, hv: cfg.Hypervisor, guest: cfg.Guest,
		log: cfg.Logger, now: cfg.Now, profiles: cfg.Profiles,
		jobs: make(map[string]*Job), logCount: make(map[string]int), inGuest: map[int]int{},
		instance: newInstanceID(),
	}
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if !cfg.SkipInitialReconcile {
		if _, err := m.Reconcile(ctx, ReconcileOptions{Apply: true}); err != nil {
			m.log.Debug("initial reconcile", "err", err)
		}
	}
	m.startLoops()
	return m, nil
}

func (c *Config) setDefaults() error {
	if c.Store == nil || c.Hypervisor == nil {
		return fmt.Errorf("new manager: %w: Store and Hypervisor are required",
			ErrInvalidArgument)
	}
	if c.Owner == "" {
		c.Owner = "agentlab"
	}
	if c.VMIDMin == 0 && c.VMIDMax == 0 {
		c.VMIDMin, c.VMIDMax = 1000, 8999
	}
	if c.VMIDMin < 100 || c.VMIDMax < c.VMIDMin {
		return fmt.Errorf("new manager: %w: vmid range [%d, %d]", ErrInvalidArgument,
			c.VMIDMin, c.VMIDMax)
	}
	c.ReadyTimeout = orDefault(c.ReadyTimeout, 5*time.Minute)
	c.StopTimeout = orDefault(c.StopTimeout, 30*time.Second)
	c.StaleOpAfter = orDefault(c.StaleOpAfter, 10*time.Minute)
	c.ReapInterval = orDefault(c.ReapInterval, 10*time.Second)
	c.IdleInterval = orDefault(c.IdleInterval, time.Minute)
	c.ReconcileInterval = orDefault(c.ReconcileInterval, 30*time.Second)
	c.JobPollInterval = orDefault(c.JobPollInterval, time.Second)
	c.JobHeartbeatTimeout = orDefault(c.JobHeartbeatTimeout, 30*time.Second)
	if c.MaxArtifactBytes == 0 {
		c.MaxArtifactBytes = 1 << 30
	}
	if c.ArtifactDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		c.ArtifactDir = filepath.Join(dir, "agentlab", "artifacts")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Profiles == nil {
		c.Profiles = &ProfileSet{}
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Close stops the background loops and job runners and waits for them. Jobs
// still running in guests keep running there; a new Manager on the same
// Store re-attaches to them. Close does not close the Store, Hypervisor or
// Guest. A second Close returns ErrClosed.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	m.closed = true
	m.mu.Unlock()

	m.cancel()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("close manager: %w", ctx.Err())
	}
	m.bus.close()
	return nil
}

func (m *Manager) checkOpen() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	return nil
}

// startLoops starts the periodic background work, each loop owned by m.
func (m *Manager) startLoops() {
	m.loop("reap", m.cfg.ReapInterval, func(ctx context.Context) error {
		_, err := m.Reap(ctx)
		return err
	})
	m.loop("idle_stop", m.cfg.IdleInterval, func(ctx context.Context) error {
		_, err := m.StopIdle(ctx)
		return err
	})
	m.loop("reconcile", m.cfg.ReconcileInterval, func(ctx context.Context) error {
		_, err := m.Reconcile(ctx, ReconcileOptions{Apply: true})
		return err
	})
}

func (m *Manager) loop(name string, every time.Duration, fn func(context.Context) error) {
	if every < 0 {
		return
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-m.ctx.Done():
				return
			case <-t.C:
			}
			if err := fn(m.ctx); err != nil && !errors.Is(err, context.Canceled) {
				m.log.Debug("background pass", "loop", name, "err", err)
			}
		}
	}()
}

func newInstanceID() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
