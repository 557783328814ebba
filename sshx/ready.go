package sshx

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// Backoff bounds for WaitReady.
const (
	readyMinDelay = 100 * time.Millisecond
	readyMaxDelay = 2 * time.Second
)

// WaitReady returns nil once the guest completes an SSH handshake and runs
// `true` successfully, retrying with jittered exponential backoff (100 ms
// to 2 s) until ctx ends. Trust failures (agentlab.ErrHostKeyMismatch,
// ErrHostKeyNotPinned) and invalid endpoints end it at once; otherwise the
// error wraps ctx.Err() and the last attempt's error.
func (t *Transport) WaitReady(ctx context.Context, ep agentlab.Endpoint) error {
	delay := readyMinDelay
	var last error // last failure not caused by ctx ending
	for {
		err := t.probe(ctx, ep)
		switch {
		case err == nil:
			return nil
		case permanent(err):
			return fmt.Errorf("wait for vm %d: %w", ep.VMID, err)
		case ctx.Err() == nil:
			last = err
			t.log.Debug("guest not ready", "vmid", ep.VMID, "err", err)
		}
		select {
		case <-ctx.Done():
			return readyTimeout(ctx, ep.VMID, last)
		case <-time.After(delay/2 + rand.N(delay/2+1)):
		}
		delay = min(delay*2, readyMaxDelay)
	}
}

// readyTimeout is WaitReady's error when ctx ends.
func readyTimeout(ctx context.Context, vmid int, last error) error {
	if last == nil {
		return fmt.Errorf("wait for vm %d: %w", vmid, ctxErr(ctx.Err()))
	}
	return fmt.Errorf("wait for vm %d: %w (last error: %w)", vmid, ctxErr(ctx.Err()), last)
}

// probe runs `true` once and checks that it exits 0.
func (t *Transport) probe(ctx context.Context, ep agentlab.Endpoint) error {
	res, err := t.run(ctx, ep, "true", agentlab.ExecRequest{MaxOutput: -1})
	if err != nil {
		return err
	}
	if res.ExitCode != 0 || res.Signal != "" {
		return fmt.Errorf("probe exited %d%s: %w", res.ExitCode, res.Signal,
			agentlab.ErrUnreachable)
	}
	return nil
}

// permanent reports errors that retrying cannot fix.
func permanent(err error) bool {
	return errors.Is(err, agentlab.ErrHostKeyMismatch) ||
		errors.Is(err, ErrHostKeyNotPinned) ||
		errors.Is(err, agentlab.ErrInvalidArgument) ||
		errors.Is(err, agentlab.ErrClosed)
}
