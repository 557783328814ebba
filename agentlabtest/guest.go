package agentlabtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// Guest is the guest side of the fake [Hypervisor]: an [agentlab.Guest]
// that runs commands with /bin/sh on the local host, in the VM's directory
// (which is also $HOME), and copies files within it. A VM that is not
// running does not answer. It is safe for concurrent use.
type Guest struct {
	hv *Hypervisor

	mu      sync.Mutex // guards handler and execs
	handler ExecHandler
	execs   int
}

var _ agentlab.Guest = (*Guest)(nil)

// ExecHandler intercepts commands. It returns handled=false to let the
// command run normally.
type ExecHandler func(ctx context.Context, ep agentlab.Endpoint, req agentlab.ExecRequest) (
	res agentlab.ExecResult, handled bool, err error)

// Handle installs a handler that sees every command first, to script
// results or inject failures. Nil removes it.
func (g *Guest) Handle(h ExecHandler) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.handler = h
}

// Execs returns how many commands ran.
func (g *Guest) Execs() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.execs
}

// reach checks the endpoint's VM runs and its host key is the pinned one.
func (g *Guest) reach(ep agentlab.Endpoint) (string, error) {
	dir, vmid, running := g.hv.byIP(ep.Host)
	if vmid == 0 || !running {
		return "", fmt.Errorf("dial %s: %w", ep.Host, agentlab.ErrUnreachable)
	}
	key := fmt.Sprintf("ssh-ed25519 FAKEHOSTKEY%d", vmid)
	switch {
	case ep.HostKey == key:
	case ep.HostKey != "":
		return "", fmt.Errorf("host %s: %w", ep.Host, agentlab.ErrHostKeyMismatch)
	case !ep.TrustOnFirstUse:
		return "", fmt.Errorf("host %s: %w: no pinned key", ep.Host,
			agentlab.ErrHostKeyMismatch)
	case ep.LearnHostKey != nil:
		if err := ep.LearnHostKey(key); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// Exec implements [agentlab.Guest].
func (g *Guest) Exec(ctx context.Context, ep agentlab.Endpoint, req agentlab.ExecRequest) (
	agentlab.ExecResult, error) {
	g.mu.Lock()
	g.execs++
	h := g.handler
	g.mu.Unlock()
	if h != nil {
		if res, ok, err := h(ctx, ep, req); ok {
			return res, err
		}
	}
	home, err := g.reach(ep)
	if err != nil {
		return agentlab.ExecResult{}, err
	}
	if err, _ := g.hv.enter(ctx, OpExec, ep.VMID); err != nil {
		return agentlab.ExecResult{}, err
	}
	res, err := runLocal(ctx, home, req)
	if err == nil {
		g.hv.runAfter(ctx, OpExec, ep.VMID)
	}
	return res, err
}

func commandLine(req agentlab.ExecRequest) string {
	if len(req.Argv) == 0 {
		return req.Shell
	}
	q := make([]string, len(req.Argv))
	for i, a := range req.Argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// runLocal runs the command with /bin/sh in home, killing its process group
// when ctx ends.
func runLocal(ctx context.Context, home string, req agentlab.ExecRequest) (
	agentlab.ExecResult, error) {
	cmd := exec.Command("/bin/sh", "-c", commandLine(req))
	cmd.Dir = home
	if req.Dir != "" {
		cmd.Dir = filepath.Join(home, req.Dir)
		if filepath.IsAbs(req.Dir) {
			cmd.Dir = req.Dir
		}
	}
	cmd.Env = append(os.Environ(), "HOME="+home)
	for k, v := range req.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if req.Stdin != nil {
		cmd.Stdin = req.Stdin
	}
	limit := req.MaxOutput
	if limit == 0 {
		limit = 1 << 20
	}
	stdout, stderr := &capped{max: limit, w: req.Stdout}, &capped{max: limit, w: req.Stderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	res := agentlab.ExecResult{Started: time.Now()}
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start command: %w", err)
	}
	// Once Wait returns, the group may hold only a detached child that has
	// not yet left it (setsid); the kill must not reach it then.
	pgid := cmd.Process.Pid
	stop := context.AfterFunc(ctx, func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	err := cmd.Wait()
	stop()
	res.Duration = time.Since(res.Started)
	res.Stdout, res.StdoutTruncated = stdout.buf.Bytes(), stdout.truncated
	res.Stderr, res.StderrTruncated = stderr.buf.Bytes(), stderr.truncated
	if ctx.Err() != nil {
		return res, fmt.Errorf("exec: %w", ctx.Err())
	}
	return exitResult(res, cmd, err)
}

func exitResult(res agentlab.ExecResult, cmd *exec.Cmd, err error) (agentlab.ExecResult, error) {
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return res, fmt.Errorf("exec: %w", err)
	}
	st, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if st.Signaled() {
		res.ExitCode, res.Signal = -1, strings.TrimPrefix(unixSignalName(st.Signal()), "SIG")
		return res, nil
	}
	res.ExitCode = cmd.ProcessState.ExitCode()
	return res, nil
}

func unixSignalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGKILL:
		return "KILL"
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGINT:
		return "INT"
	case syscall.SIGHUP:
		return "HUP"
	}
	return s.String()
}

// capped keeps up to max bytes and forwards everything to w.
type capped struct {
	buf       bytes.Buffer
	max       int
	truncated bool
	w         io.Writer
}

func (c *capped) Write(p []byte) (int, error) {
	if c.w != nil {
		if _, err := c.w.Write(p); err != nil {
			return 0, err
		}
	}
	room := c.max - c.buf.Len()
	switch {
	case room >= len(p):
		c.buf.Write(p)
	case room > 0:
		c.buf.Write(p[:room])
		c.truncated = true
	default:
		c.truncated = c.truncated || len(p) > 0 && c.max >= 0
	}
	return len(p), nil
}

// resolve maps a guest path to the local file inside home.
func resolve(home, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Join(home, "_root", p)
	}
	return filepath.Join(home, p)
}

// Upload implements [agentlab.Guest]. Absolute guest paths land under the
// VM directory's "_root".
func (g *Guest) Upload(ctx context.Context, ep agentlab.Endpoint, local, remote string,
	opts *agentlab.TransferOptions) error {
	home, err := g.reach(ep)
	if err != nil {
		return err
	}
	return copyPath(ctx, local, resolve(home, remote), opts)
}

// Download implements [agentlab.Guest].
func (g *Guest) Download(ctx context.Context, ep agentlab.Endpoint, remote, local string,
	opts *agentlab.TransferOptions) error {
	home, err := g.reach(ep)
	if err != nil {
		return err
	}
	src := resolve(home, remote)
	if _, err := os.Lstat(src); err != nil {
		return fmt.Errorf("download %s: %w", remote, agentlab.ErrNotFound)
	}
	return copyPath(ctx, src, local, opts)
}

// copyPath copies a file or a tree for a transfer; symlinks are neither
// followed nor copied.
func copyPath(ctx context.Context, src, dst string, opts *agentlab.TransferOptions) error {
	return copyWalk(ctx, src, dst, false, opts)
}

// copyWalk copies src to dst: directories, regular files with their modes,
// and, when links is set, symlinks as they are.
func copyWalk(ctx context.Context, src, dst string, links bool,
	opts *agentlab.TransferOptions) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		switch {
		case err != nil:
			return err
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case d.Type().IsRegular():
			return copyFile(p, target, info, opts)
		case links && d.Type()&os.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		}
		return nil
	})
}

func copyFile(src, dst string, info os.FileInfo, opts *agentlab.TransferOptions) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(dst, data, info.Mode().Perm()); err != nil {
		return err
	}
	if opts != nil && opts.Progress != nil {
		opts.Progress(src, int64(len(data)), int64(len(data)))
	}
	return nil
}

// WaitReady implements [agentlab.Guest].
func (g *Guest) WaitReady(ctx context.Context, ep agentlab.Endpoint) error {
	for {
		_, err := g.reach(ep)
		if err == nil || errors.Is(err, agentlab.ErrHostKeyMismatch) {
			return err
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for guest %s: %w", ep.Host, ctx.Err())
		case <-t.C:
		}
	}
}

// Drop implements [agentlab.Guest]; the fake keeps no connections.
func (g *Guest) Drop(int) {}

// Close implements [agentlab.Guest].
func (g *Guest) Close() error { return nil }
