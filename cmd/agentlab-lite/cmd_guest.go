package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	pathpkg "path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// guestFlags are the flags ssh and exec share.
type guestFlags struct {
	wait    *bool
	timeout *time.Duration
	noStdin *bool
}

func addGuestFlags(fs *flag.FlagSet) guestFlags {
	return guestFlags{
		wait: fs.Bool("wait", false, "first wait until the sandbox runs and SSH answers"),
		timeout: fs.Duration("wait-timeout", 5*time.Minute,
			"how long --wait waits"),
		noStdin: fs.Bool("n", false, "do not forward standard input"),
	}
}

func cmdSSH(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	gf := addGuestFlags(fs)
	fs.Bool("exec", false, "run the command (the default; accepted for compatibility)")
	printCmd := fs.Bool("print", false, "print an equivalent OpenSSH command line instead")
	a, sb, words, err := c.guestTarget(ctx, fs, args, gf)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	line := strings.Join(words, " ")
	if *printCmd {
		return c.printSSH(ctx, a, sb, line)
	}
	if line == "" {
		return c.shell(ctx, a, sb, *gf.noStdin)
	}
	return c.runGuest(ctx, sb, agentlab.ExecRequest{Shell: line}, *gf.noStdin)
}

func cmdExec(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	gf := addGuestFlags(fs)
	env := envFlag{}
	fs.Var(env, "env", "set `K=V` in the command's environment (repeatable)")
	dir := fs.String("dir", "", "working `directory` (default: the login directory)")
	a, sb, argv, err := c.guestTarget(ctx, fs, args, gf)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	if len(argv) == 0 {
		return usagef(c.helpRef(), "missing command: agentlab-lite exec VMID -- PROGRAM [ARG...]")
	}
	req := agentlab.ExecRequest{Argv: argv, Dir: *dir, Env: map[string]string(env)}
	if len(env) == 0 {
		req.Env = nil
	}
	return c.runGuest(ctx, sb, req, *gf.noStdin)
}

// guestTarget parses "VMID [WORDS] [-- COMMAND...]", opens the app and,
// with --wait, waits for the guest. It returns the command words.
func (c *cli) guestTarget(ctx context.Context, fs *flag.FlagSet, args []string,
	gf guestFlags) (*app, *agentlab.Sandbox, []string, error) {
	pos, rest, err := c.args(fs, args, 1, -1)
	if err != nil {
		return nil, nil, nil, err
	}
	a, err := c.open(ctx, modeCommand)
	if err != nil {
		return nil, nil, nil, err
	}
	sb, err := a.sandbox(ctx, pos[0])
	if err == nil && *gf.wait {
		err = waitGuest(ctx, a, sb, *gf.timeout)
	}
	if err != nil {
		a.Close(ctx)
		return nil, nil, nil, err
	}
	return a, sb, append(pos[1:], rest...), nil
}

// waitGuest waits until the sandbox is in a state where commands run and
// SSH answers, or fails at once when it is stopped, paused or destroyed.
func waitGuest(ctx context.Context, a *app, sb *agentlab.Sandbox, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		rec, err := sb.Refresh(ctx)
		if err != nil {
			return err
		}
		switch rec.State {
		case agentlab.StateStopped, agentlab.StateSuspended, agentlab.StateDestroyed:
			return failf(fmt.Sprintf("agentlab-lite sandbox show %d", rec.VMID),
				"sandbox %d is %s; it will not answer until started", rec.VMID, rec.State)
		}
		if slices.Contains(agentlab.ValidStates[agentlab.OpExec], rec.State) && rec.IP != "" {
			ep, err := sb.Endpoint(ctx)
			if err == nil && a.guest.WaitReady(ctx, ep) == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return failf(fmt.Sprintf("agentlab-lite logs %d", rec.VMID),
				"sandbox %d did not answer within %s (state %s)", rec.VMID, d, rec.State)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// runGuest runs req with the CLI's streams and exits with the remote status.
func (c *cli) runGuest(ctx context.Context, sb *agentlab.Sandbox, req agentlab.ExecRequest,
	noStdin bool) error {
	if !noStdin {
		req.Stdin = c.forwardableStdin()
	}
	if !c.json {
		req.Stdout, req.Stderr, req.MaxOutput = c.stdout, c.stderr, -1
	}
	res, err := sb.Exec(ctx, req)
	if err != nil {
		return guestError(err, sb.VMID())
	}
	code := res.ExitCode
	if res.Signal != "" {
		code = 128 + signalNumber(res.Signal)
	}
	if c.json {
		if err := c.printJSON(map[string]any{"sandbox": sb.VMID(), "exit_code": code,
			"signal": res.Signal, "stdout": string(res.Stdout), "stderr": string(res.Stderr),
			"duration_ms": res.Duration.Milliseconds()}); err != nil {
			return err
		}
	}
	if code != 0 {
		return exitCodeError{code: code}
	}
	return nil
}

// forwardableStdin returns stdin unless it is a terminal: a terminal never
// reaches EOF, and the command would not end before the next key press.
func (c *cli) forwardableStdin() io.Reader {
	if f, ok := c.stdin.(*os.File); ok && (f == nil || isTerminal(f)) {
		return nil
	}
	return c.stdin
}

// guestError maps a failure to run a command: transport failures exit 255
// as OpenSSH does, state and lookup errors 1.
func guestError(err error, vmid int) error {
	ce := explain(err, fmt.Sprintf("agentlab-lite sandbox show %d", vmid))
	if errors.Is(err, agentlab.ErrUnreachable) || errors.Is(err, agentlab.ErrHostKeyMismatch) {
		ce.code = exitUnreachable
	}
	return ce
}

// signalNumber maps a signal name ("KILL") to its number.
func signalNumber(name string) int {
	m := map[string]syscall.Signal{"HUP": syscall.SIGHUP, "INT": syscall.SIGINT,
		"QUIT": syscall.SIGQUIT, "ABRT": syscall.SIGABRT, "KILL": syscall.SIGKILL,
		"SEGV": syscall.SIGSEGV, "PIPE": syscall.SIGPIPE, "ALRM": syscall.SIGALRM,
		"TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2}
	return int(m[strings.TrimPrefix(strings.ToUpper(name), "SIG")])
}

// remoteRE matches "VMID:path" or "NAME:path", NAME a sandbox name.
var remoteRE = regexp.MustCompile(`^([0-9]+|[A-Za-z0-9][A-Za-z0-9-]*):(.*)$`)

// splitRemote parses "VMID:/path" (or "NAME:path"); a path that exists
// locally is local, so "./a:b" or an existing file "a:b" stays local.
func splitRemote(s string) (target, path string, ok bool) {
	m := remoteRE.FindStringSubmatch(s)
	if m == nil {
		return "", "", false
	}
	if _, err := os.Lstat(s); err == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// copyPlan is a parsed "cp SRC DST": which side is the guest, and the
// paths on each side.
type copyPlan struct {
	target      string // VMID or sandbox name
	download    bool   // guest to local
	local       string // local path
	remote      string // guest path
	localTarget string // where a download lands (local, or local/base(remote))
}

// parseCopy reads the two arguments of cp. Exactly one is VMID:path. A
// destination ending in "/" (or a local directory, or an empty guest path,
// which is the login directory) receives the source under its own name.
func parseCopy(src, dst string) (copyPlan, error) {
	srcT, srcP, srcRemote := splitRemote(src)
	dstT, dstP, dstRemote := splitRemote(dst)
	switch {
	case srcRemote == dstRemote:
		return copyPlan{}, errors.New("exactly one of SRC and DST must be VMID:/path")
	case src == "" || dst == "":
		return copyPlan{}, errors.New("empty path")
	case srcRemote:
		if base := guestBase(srcP); base == "" {
			return copyPlan{}, fmt.Errorf("%q names no file: give a path after %s:", src, srcT)
		}
		p := copyPlan{target: srcT, download: true, local: dst, remote: srcP, localTarget: dst}
		if st, err := os.Stat(dst); strings.HasSuffix(dst, "/") || (err == nil && st.IsDir()) {
			p.localTarget = filepath.Join(dst, guestBase(srcP))
		}
		return p, nil
	}
	p := copyPlan{target: dstT, local: src, remote: dstP}
	if dstP == "" || strings.HasSuffix(dstP, "/") {
		base := filepath.Base(filepath.Clean(src))
		if base == "/" || base == "." || base == ".." {
			return copyPlan{}, fmt.Errorf("%q has no name to copy under; name the "+
				"destination, e.g. %s:/tmp/dir", src, dstT)
		}
		p.remote = dstP + base
	}
	return p, nil
}

// guestBase is the last element of a guest path, "" when there is none
// (empty, "/", ".", "..").
func guestBase(p string) string {
	b := pathpkg.Base(pathpkg.Clean("/" + p))
	if b == "/" || b == "." || b == ".." || p == "" {
		return ""
	}
	return b
}

func cmdCopy(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	pos, _, err := c.args(fs, args, 2, 2)
	if err != nil {
		return err
	}
	plan, err := parseCopy(pos[0], pos[1])
	if err != nil {
		return usagef(c.helpRef(), "%v", err)
	}
	a, err := c.open(ctx, modeCommand)
	if err != nil {
		return err
	}
	defer a.Close(ctx)
	sb, err := a.sandbox(ctx, plan.target)
	if err != nil {
		return err
	}
	var prog progressCounter
	opts := &agentlab.TransferOptions{Progress: prog.add}
	dir := "upload"
	if plan.download {
		dir = "download"
		err = sb.Download(ctx, plan.remote, plan.localTarget, opts)
	} else {
		err = sb.Upload(ctx, plan.local, plan.remote, opts)
	}
	if err != nil {
		return guestError(err, sb.VMID())
	}
	files, bytes := prog.totals()
	if c.json {
		return c.printJSON(map[string]any{"sandbox": sb.VMID(), "direction": dir,
			"source": pos[0], "destination": pos[1], "files": files, "bytes": bytes})
	}
	fmt.Fprintf(c.stdout, "copied %s -> %s (%s, %s)\n", pos[0], pos[1], count(files, "file"),
		count(bytes, "byte"))
	return nil
}

// progressCounter sums transfer progress per file. It is safe for
// concurrent use.
type progressCounter struct {
	mu   sync.Mutex // guards done
	done map[string]int64
}

func (p *progressCounter) add(path string, done, _ int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		p.done = map[string]int64{}
	}
	p.done[path] = done
}

func (p *progressCounter) totals() (files int, bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range p.done {
		bytes += n
	}
	return len(p.done), bytes
}
