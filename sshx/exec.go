package sshx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
)

// envName is the shape of a portable environment variable name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Quote returns s quoted for a POSIX shell so that it is read back as one
// word with no expansion. Words made only of safe characters are returned
// unchanged.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if strings.Trim(s, safeChars) == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

const safeChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" +
	"@%+=:,./-_"

// QuoteArgv quotes each word of argv and joins them with spaces.
func QuoteArgv(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}

// Command renders req as the command line sent to the guest's shell:
// `export K='v';` statements, then `cd -- 'dir' || exit 1;`, then either
// `exec` and the quoted Argv, or Shell as is. It fails with
// agentlab.ErrInvalidArgument when not exactly one of Argv and Shell is
// set or an Env name is not a valid variable name.
func Command(req agentlab.ExecRequest) (string, error) {
	if (len(req.Argv) == 0) == (req.Shell == "") {
		return "", fmt.Errorf("exactly one of Argv and Shell must be set: %w",
			agentlab.ErrInvalidArgument)
	}
	var b strings.Builder
	if err := writeExports(&b, req.Env); err != nil {
		return "", err
	}
	if req.Dir != "" {
		fmt.Fprintf(&b, "cd -- %s || exit 1; ", Quote(req.Dir))
	}
	if req.Shell != "" {
		b.WriteString(req.Shell)
	} else {
		b.WriteString("exec " + QuoteArgv(req.Argv))
	}
	return b.String(), nil
}

// writeExports writes `export K='v'; ` for each variable, sorted by name.
func writeExports(b *strings.Builder, env map[string]string) error {
	names := make([]string, 0, len(env))
	for k := range env {
		if !envName.MatchString(k) {
			return fmt.Errorf("env name %q: %w", k, agentlab.ErrInvalidArgument)
		}
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(b, "export %s=%s; ", k, Quote(env[k]))
	}
	return nil
}

// capture tees a stream to an optional writer and keeps up to max bytes.
// A failing tee writer is dropped so the remote output keeps draining.
type capture struct {
	mu        sync.Mutex
	tee       io.Writer
	max       int
	buf       []byte
	truncated bool
}

func newCapture(tee io.Writer, limit int) *capture {
	if limit == 0 {
		limit = defaultMaxOutput
	}
	if limit < 0 {
		limit = 0
	}
	return &capture{tee: tee, max: limit}
}

// Write tees p and keeps what fits; it never fails.
func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tee != nil {
		if _, err := c.tee.Write(p); err != nil {
			c.tee = nil
		}
	}
	room := c.max - len(c.buf)
	if len(p) > room {
		c.truncated = true
		c.buf = append(c.buf, p[:max(room, 0)]...)
		return len(p), nil
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *capture) result() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf, c.truncated
}

// Exec runs req in ep's guest and waits for it. A command that exits
// non-zero or dies from a signal is a result (ExitCode -1 and Signal set
// for a signal). Errors: invalid requests (agentlab.ErrInvalidArgument),
// connection and trust failures, and ctx ending, after which the remote
// process was sent SIGTERM, then SIGKILL after Config.KillGrace; the error
// then wraps ctx.Err() (and agentlab.ErrTimeout for deadlines).
func (t *Transport) Exec(ctx context.Context, ep agentlab.Endpoint,
	req agentlab.ExecRequest) (agentlab.ExecResult, error) {
	cmd, err := Command(req)
	if err != nil {
		return agentlab.ExecResult{}, fmt.Errorf("exec in vm %d: %w", ep.VMID, err)
	}
	t.activity(ep.VMID)
	res, err := t.run(ctx, ep, cmd, req)
	if err != nil {
		return res, fmt.Errorf("exec in vm %d: %w", ep.VMID, err)
	}
	return res, nil
}

// run executes the rendered command cmd with req's streams.
func (t *Transport) run(ctx context.Context, ep agentlab.Endpoint, cmd string,
	req agentlab.ExecRequest) (agentlab.ExecResult, error) {
	sess, err := t.session(ctx, ep)
	if err != nil {
		return agentlab.ExecResult{}, err
	}
	defer sess.Close()
	stdout := newCapture(req.Stdout, req.MaxOutput)
	stderr := newCapture(req.Stderr, req.MaxOutput)
	sess.Stdout, sess.Stderr = stdout, stderr
	sess.Stdin = req.Stdin
	res := agentlab.ExecResult{Started: time.Now()}
	if err := sess.Start(cmd); err != nil {
		return res, fmt.Errorf("start command: %w", err)
	}
	waitErr := t.wait(ctx, sess)
	res.Duration = time.Since(res.Started)
	res.Stdout, res.StdoutTruncated = stdout.result()
	res.Stderr, res.StderrTruncated = stderr.result()
	return exitResult(res, waitErr)
}

// wait waits for sess, signalling and closing it when ctx ends first.
func (t *Transport) wait(ctx context.Context, sess *ssh.Session) error {
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	_ = sess.Signal(ssh.SIGTERM)
	grace := time.NewTimer(t.cfg.KillGrace)
	defer grace.Stop()
	select {
	case <-done:
		return ctxErr(ctx.Err())
	case <-grace.C:
	}
	_ = sess.Signal(ssh.SIGKILL)
	sess.Close()
	<-done
	return ctxErr(ctx.Err())
}

// exitResult turns the session's wait error into the result's exit fields.
func exitResult(res agentlab.ExecResult, err error) (agentlab.ExecResult, error) {
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &ee) && ee.Signal() != "":
		res.ExitCode, res.Signal = -1, ee.Signal()
		return res, nil
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitStatus()
		return res, nil
	case errors.As(err, &missing):
		return res, fmt.Errorf("command ended without exit status: %w: %w",
			agentlab.ErrUnreachable, err)
	}
	return res, err
}
