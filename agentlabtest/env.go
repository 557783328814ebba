package agentlabtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// Clock is a settable clock for [agentlab.Config.Now]. The zero value starts
// at the zero time; use NewClock. It is safe for concurrent use.
type Clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

// NewClock returns a clock set to start.
func NewClock(start time.Time) *Clock { return &Clock{t: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// EnvOptions configures [NewEnv]. The zero value gives a Manager on the
// fakes and the in-memory Store, with one profile named "test".
type EnvOptions struct {
	// Profiles replaces the default "test" profile (template 9000).
	Profiles []agentlab.Profile

	// Store replaces the in-memory Store.
	Store agentlab.Store

	// Clock, when not nil, drives the Manager and the fake.
	Clock *Clock

	// Config is the base Manager configuration; Store, Hypervisor, Guest,
	// Profiles and Now are filled in. Its background loops are disabled
	// unless set.
	Config agentlab.Config
}

// Env is a Manager wired to the fakes, for tests.
type Env struct {
	Manager    *agentlab.Manager
	Hypervisor *Hypervisor
	Guest      *Guest
	Store      agentlab.Store
}

// NewEnv builds an Env and registers its teardown with tb.Cleanup.
func NewEnv(tb testing.TB, opts EnvOptions) *Env {
	tb.Helper()
	hvOpts := HypervisorOptions{Dir: tb.TempDir()}
	cfg := opts.Config
	if opts.Clock != nil {
		hvOpts.Now, cfg.Now = opts.Clock.Now, opts.Clock.Now
	}
	hv, err := NewHypervisor(hvOpts)
	if err != nil {
		tb.Fatal(err)
	}
	profiles := opts.Profiles
	if profiles == nil {
		profiles = []agentlab.Profile{{Name: "test", TemplateVMID: 9000,
			Job: agentlab.JobSettings{Command: "cat \"$AGENTLAB_TASK_FILE\""}}}
	}
	set, err := agentlab.NewProfileSet(profiles...)
	if err != nil {
		tb.Fatal(err)
	}
	st := opts.Store
	if st == nil {
		st = NewStore()
	}
	cfg.Store, cfg.Hypervisor, cfg.Guest, cfg.Profiles = st, hv, hv.Guest(), set
	disableLoops(&cfg)
	if cfg.ArtifactDir == "" {
		cfg.ArtifactDir = tb.TempDir()
	}
	if cfg.JobPollInterval == 0 {
		cfg.JobPollInterval = 20 * time.Millisecond
	}
	m, err := agentlab.New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close(context.Background()) })
	return &Env{Manager: m, Hypervisor: hv, Guest: hv.Guest(), Store: st}
}

func disableLoops(c *agentlab.Config) {
	for _, d := range []*time.Duration{&c.ReapInterval, &c.IdleInterval,
		&c.ReconcileInterval} {
		if *d == 0 {
			*d = -1
		}
	}
}
