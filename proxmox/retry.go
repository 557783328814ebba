package proxmox

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab"
	px "github.com/luthermonson/go-proxmox"
)

// retry runs fn until it succeeds, fails with an error other than lock
// contention or a transient failure, ctx ends, or RetryTimeout passes. It
// returns fn's last error untranslated. Only calls that are safe to repeat
// after an unknown outcome, or that check the outcome themselves, use it.
func (h *Hypervisor) retry(ctx context.Context, what string,
	fn func(ctx context.Context) error) error {
	deadline := time.Now().Add(h.cfg.RetryTimeout)
	for n := 0; ; n++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if c := classify(err); (c != classBusy && c != classTransient) ||
			time.Now().After(deadline) {
			return err
		}
		d := h.backoff(n)
		h.log.Debug("proxmox: retrying", "op", what, "attempt", n+1, "delay", d, "err", err)
		if serr := sleep(ctx, d); serr != nil {
			return fmt.Errorf("%w (last error: %w)", serr, err)
		}
	}
}

// backoff is the full-jitter exponential delay before retry n+1.
func (h *Hypervisor) backoff(n int) time.Duration {
	ceil := h.cfg.RetryMin << min(n, 16)
	if ceil <= 0 || ceil > h.cfg.RetryMax {
		ceil = h.cfg.RetryMax
	}
	lo := h.cfg.RetryMin / 2
	return lo + rand.N(ceil-lo+1)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// wait polls the task until it stops and reports its outcome: nil for "OK"
// and "WARNINGS: n", a *px.TaskFailedError carrying PVE's text otherwise. A
// nil task (a call PVE finished synchronously) succeeds at once. Transient
// errors while polling, and "no such task" right after dispatch, are
// retried within RetryTimeout.
func (h *Hypervisor) wait(ctx context.Context, t *px.Task) error {
	if t == nil {
		return nil
	}
	for {
		err := h.retry(ctx, "poll task", func(ctx context.Context) error {
			err := t.Ping(ctx)
			if err != nil && isNoSuchTask(err) {
				return fmt.Errorf("%w: %w", errTaskNotVisible, err)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("poll task %s: %w", t.UPID, err)
		}
		if t.IsCompleted {
			return h.outcome(t)
		}
		if err := sleep(ctx, h.cfg.PollInterval); err != nil {
			return fmt.Errorf("wait for task %s: %w", t.UPID, err)
		}
	}
}

// outcome turns a finished task into nil or a *px.TaskFailedError.
func (h *Hypervisor) outcome(t *px.Task) error {
	if t.IsSuccessful {
		if t.Warnings > 0 {
			h.log.Debug("proxmox: task finished with warnings", "upid", string(t.UPID),
				"warnings", t.Warnings)
		}
		return nil
	}
	return &px.TaskFailedError{UPID: t.UPID, Node: t.Node, Type: t.Type, ID: t.ID,
		User: t.User, ExitStatus: t.ExitStatus}
}

// errTaskNotVisible marks a task status PVE does not serve yet; it is
// retried like lock contention.
var errTaskNotVisible = fmt.Errorf("%w: task status not visible yet", agentlab.ErrBusy)

func isNoSuchTask(err error) bool {
	return strings.Contains(strings.ToLower(err.Error()), "no such task")
}
