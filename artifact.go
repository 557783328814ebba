package agentlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
)

// errArtifactBudget stops a download that would take a job's artifacts past
// Config.MaxArtifactBytes.
var errArtifactBudget = errors.New("the job's log and artifacts would exceed " +
	"Config.MaxArtifactBytes")

// byteBudget is what is left of one job's Config.MaxArtifactBytes.
type byteBudget struct {
	mu        sync.Mutex // guards left
	left      int64
	unlimited bool
}

func newByteBudget(max int64) *byteBudget {
	return &byteBudget{left: max, unlimited: max < 0}
}

// take reserves n more bytes, or reports false when they do not fit.
func (b *byteBudget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.unlimited {
		return true
	}
	if n > b.left {
		return false
	}
	b.left -= n
	return true
}

// give returns n bytes taken before.
func (b *byteBudget) give(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.left += n
}

// fetch downloads remote to local within budget. Each file is charged its
// announced size (or what arrived, when more did); a download that does not
// fit is cancelled, what it wrote removed and its bytes given back.
func (r *runner) fetch(ctx context.Context, remote, local string, b *byteBudget) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c := &charge{budget: b, cancel: cancel, files: map[string]int64{}}
	err := r.sb.Download(ctx, remote, local, &TransferOptions{Progress: c.progress})
	if cause := context.Cause(ctx); errors.Is(cause, errArtifactBudget) {
		_ = os.RemoveAll(local)
		c.refund()
		return fmt.Errorf("download %s: %w", remote, cause)
	}
	return err
}

// charge is what one download took from a budget.
type charge struct {
	budget *byteBudget
	cancel context.CancelCauseFunc

	mu    sync.Mutex // guards the fields below
	files map[string]int64
	total int64
	over  bool
}

// progress is the download's TransferOptions.Progress: it charges the
// file's growth and cancels the download when the budget cannot take it.
func (c *charge) progress(path string, done, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := max(done, size) - c.files[path]
	if n <= 0 || c.over {
		return
	}
	if !c.budget.take(n) {
		c.over = true
		c.cancel(errArtifactBudget)
		return
	}
	c.files[path] += n
	c.total += n
}

// refund gives back everything the download took.
func (c *charge) refund() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.budget.give(c.total)
	c.total = 0
}
