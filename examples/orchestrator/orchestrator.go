// Package orchestrator is an example of code built on agentlab, and of how
// to test it fast with agentlabtest: it runs a batch of shell tasks, each
// in a sandbox of its own, a few at a time, and always cleans up.
//
// # Usage
//
//	results, err := orchestrator.Run(ctx, m, orchestrator.Batch{
//		Profile: "dev", Parallel: 4,
//		Tasks:   []string{"make test", "make lint"},
//	})
//
// Each Result holds the task's exit code and output. A task that could not
// run (no sandbox, unreachable guest) has Err set; the batch goes on.
package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// Batch describes tasks to run. Profile and Tasks are required.
type Batch struct {
	Profile string
	Tasks   []string // shell command lines

	// Parallel bounds the sandboxes alive at once; zero means 2.
	Parallel int

	// TTL is each sandbox's lease, a safety net should the orchestrator
	// die; zero means 30 minutes.
	TTL time.Duration

	// Labels are put on every sandbox, to find them later.
	Labels map[string]string
}

// Result is the outcome of one task.
type Result struct {
	Task     string
	VMID     int
	ExitCode int
	Output   string // standard output and error, in that order
	Err      error  // the task could not be run
}

// Run runs every task of b in a fresh sandbox, at most b.Parallel at a time,
// and returns the results in task order. Every sandbox it creates is
// destroyed before it returns, also when ctx ends. It returns an error only
// for an invalid batch; task failures are in the results.
func Run(ctx context.Context, m *agentlab.Manager, b Batch) ([]Result, error) {
	if b.Profile == "" || len(b.Tasks) == 0 {
		return nil, errors.New("orchestrator: a batch needs a profile and tasks")
	}
	if b.Parallel <= 0 {
		b.Parallel = 2
	}
	if b.TTL == 0 {
		b.TTL = 30 * time.Minute
	}
	results := make([]Result, len(b.Tasks))
	sem := make(chan struct{}, b.Parallel)
	var wg sync.WaitGroup
	for i, task := range b.Tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				results[i] = runOne(ctx, m, b, task)
			case <-ctx.Done():
				results[i] = Result{Task: task, Err: ctx.Err()}
			}
		}()
	}
	wg.Wait()
	return results, nil
}

// runOne runs one task in its own sandbox and destroys the sandbox.
func runOne(ctx context.Context, m *agentlab.Manager, b Batch, task string) Result {
	r := Result{Task: task}
	sb, err := m.Create(ctx, agentlab.CreateRequest{Profile: b.Profile, TTL: b.TTL,
		Labels: b.Labels})
	if err != nil {
		r.Err = fmt.Errorf("create sandbox: %w", err)
		return r
	}
	r.VMID = sb.VMID()
	defer func() {
		// Destroy even when ctx ended: the sandbox must not outlive the batch.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := sb.Destroy(dctx); err != nil && r.Err == nil {
			r.Err = fmt.Errorf("destroy sandbox %d: %w", r.VMID, err)
		}
	}()
	res, err := sb.Exec(ctx, agentlab.ExecRequest{Shell: task})
	if err != nil {
		r.Err = err
		return r
	}
	r.ExitCode, r.Output = res.ExitCode, string(res.Stdout)+string(res.Stderr)
	return r
}
