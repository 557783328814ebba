package sshx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// Background processes live in <ProcDir>/<id>/ in the guest:
//
//	wpid    the wrapper shell, which waits for the command and writes exit
//	pid     the command's process id, also its session and group id (setsid)
//	stdout  standard output
//	stderr  standard error
//	exit    the exit status ($? of the command), written atomically at the end
//
// Everything about a process is in those files, so any Transport, in any
// process, can wait for, signal or read it by ID.

// ErrProcessLost reports a background process that is no longer running
// and left no exit status (the guest rebooted or it was killed with its
// wrapper).
var ErrProcessLost = errors.New("sshx: background process lost")

// procID is the shape of IDs made by Start; anything else is refused so
// an ID can never inject shell syntax.
var procID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// Process polling bounds for Wait.
const (
	pollMinDelay = 50 * time.Millisecond
	pollMaxDelay = time.Second
)

// ProcState is the state of a background process at one moment.
type ProcState struct {
	// ID is the process ID returned by Start.
	ID string
	// Running is true while the process has not exited.
	Running bool
	// ExitCode is the exit status once Running is false. A command killed
	// by signal N reports 128+N, as the shell reports it.
	ExitCode int
}

// Stream selects a background process's standard output or error.
type Stream string

// The streams of a background process.
const (
	Stdout Stream = "stdout"
	Stderr Stream = "stderr"
)

// Start launches req in the background in ep's guest, detached from the
// SSH session (setsid, nohup, stdin from /dev/null) with its output in
// files, and returns its ID. Stdin, Stdout, Stderr and MaxOutput of req are
// ignored. The process survives the connection and this Transport.
func (t *Transport) Start(ctx context.Context, ep agentlab.Endpoint,
	req agentlab.ExecRequest) (string, error) {
	inner, err := Command(req)
	if err != nil {
		return "", fmt.Errorf("start in vm %d: %w", ep.VMID, err)
	}
	id, err := newProcID()
	if err != nil {
		return "", fmt.Errorf("start in vm %d: %w", ep.VMID, err)
	}
	script := t.procDirVar(id) + `mkdir -p "$D" || exit 1; ` +
		`S=; command -v setsid >/dev/null 2>&1 && S=setsid; ` +
		`$S nohup sh -c ` + Quote(procWrapper(inner)) + ` sh "$D" "$S" ` +
		`</dev/null >"$D/stdout" 2>"$D/stderr" & echo $! > "$D/wpid"; ` +
		waitForPID
	if err := t.procExec(ctx, ep, script, nil); err != nil {
		return "", fmt.Errorf("start in vm %d: %w", ep.VMID, err)
	}
	return id, nil
}

// procWrapper renders the script that runs inner in its own session (so a
// signal to that session spares the wrapper), publishes its pid and then
// records its exit status. $1 is the process directory, $2 "setsid" or "".
func procWrapper(inner string) string {
	return `$2 sh -c ` + Quote(inner) + ` & ` +
		`echo $! > "$1/pid.tmp" && mv -f "$1/pid.tmp" "$1/pid"; wait $!; ` +
		`echo $? > "$1/exit.tmp" && mv -f "$1/exit.tmp" "$1/exit"`
}

// waitForPID makes Start return only once the pid file exists (about 5 s
// at most), so Signal right after Start finds the process.
const waitForPID = `i=0; while ! test -s "$D/pid"; do i=$((i+1)); ` +
	`test $i -gt 500 && exit 1; sleep 0.01 2>/dev/null || sleep 1; done`

func newProcID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate process id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// procDirVar renders `D=<dir of id>; `, relative to $HOME unless ProcDir
// is absolute.
func (t *Transport) procDirVar(id string) string {
	dir := Quote(path.Join(t.cfg.ProcDir, id))
	if path.IsAbs(t.cfg.ProcDir) {
		return "D=" + dir + "; "
	}
	return `D="$HOME"/` + dir + "; "
}

// procExec runs a short management script and fails unless it exits 0.
func (t *Transport) procExec(ctx context.Context, ep agentlab.Endpoint, script string,
	stdout io.Writer) error {
	t.activity(ep.VMID)
	res, err := t.run(ctx, ep, script, agentlab.ExecRequest{Stdout: stdout, MaxOutput: 64 << 10})
	if err != nil {
		return err
	}
	switch {
	case res.ExitCode == 3:
		return fmt.Errorf("process: %w", agentlab.ErrNotFound)
	case res.ExitCode != 0 || res.Signal != "":
		return fmt.Errorf("guest script exited %d%s: %s", res.ExitCode, res.Signal,
			strings.TrimSpace(string(res.Stderr)))
	}
	return nil
}

// Status reports whether background process id is running or its exit
// status. Errors: agentlab.ErrNotFound for an unknown ID, ErrProcessLost
// when it is gone without an exit status, agentlab.ErrInvalidArgument for a
// malformed ID, and connection errors.
func (t *Transport) Status(ctx context.Context, ep agentlab.Endpoint, id string) (ProcState, error) {
	if !procID.MatchString(id) {
		return ProcState{}, fmt.Errorf("status of process %q: %w", id, agentlab.ErrInvalidArgument)
	}
	script := t.procDirVar(id) + `test -d "$D" || exit 3; ` +
		`if test -f "$D/exit"; then echo "exit $(cat "$D/exit")"; ` +
		`elif kill -0 "$(cat "$D/wpid" 2>/dev/null)" 2>/dev/null; then echo running; ` +
		`elif test -f "$D/exit"; then echo "exit $(cat "$D/exit")"; else echo lost; fi`
	var out strings.Builder
	if err := t.procExec(ctx, ep, script, &out); err != nil {
		return ProcState{}, fmt.Errorf("status of process %s in vm %d: %w", id, ep.VMID, err)
	}
	st, err := parseState(id, out.String())
	if err != nil {
		return st, fmt.Errorf("status of process %s in vm %d: %w", id, ep.VMID, err)
	}
	return st, nil
}

func parseState(id, out string) (ProcState, error) {
	st := ProcState{ID: id}
	line := strings.TrimSpace(out)
	switch {
	case line == "running":
		st.Running = true
		return st, nil
	case line == "lost":
		return st, ErrProcessLost
	case strings.HasPrefix(line, "exit "):
		code, err := strconv.Atoi(strings.TrimPrefix(line, "exit "))
		if err != nil {
			return st, fmt.Errorf("parse exit status %q: %w", line, err)
		}
		st.ExitCode = code
		return st, nil
	}
	return st, fmt.Errorf("unexpected status output %q", line)
}

// Wait polls background process id until it exits and returns its final
// state. It ends with an error wrapping ctx.Err() when ctx ends first
// (the process keeps running), or with the errors of Status.
func (t *Transport) Wait(ctx context.Context, ep agentlab.Endpoint, id string) (ProcState, error) {
	delay := pollMinDelay
	for {
		st, err := t.Status(ctx, ep, id)
		if err != nil || !st.Running {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("wait for process %s in vm %d: %w", id, ep.VMID, ctxErr(ctx.Err()))
		case <-time.After(delay):
		}
		delay = min(delay*2, pollMaxDelay)
	}
}

// Signal sends sig ("TERM", "KILL", "INT", ...: a name without the SIG
// prefix) to the process group of background process id, which holds the
// command and its children (not the wrapper that records the exit status).
// Without setsid in the guest only the command itself is signalled.
// Signalling a process that already exited is not an error.
func (t *Transport) Signal(ctx context.Context, ep agentlab.Endpoint, id, sig string) error {
	if !procID.MatchString(id) {
		return fmt.Errorf("signal process %q: %w", id, agentlab.ErrInvalidArgument)
	}
	if !envName.MatchString(sig) {
		return fmt.Errorf("signal %q: %w", sig, agentlab.ErrInvalidArgument)
	}
	script := t.procDirVar(id) + `test -f "$D/pid" || exit 3; P=$(cat "$D/pid"); ` +
		`kill -s ` + sig + ` -"$P" 2>/dev/null || kill -s ` + sig + ` "$P" 2>/dev/null; exit 0`
	if err := t.procExec(ctx, ep, script, nil); err != nil {
		return fmt.Errorf("signal process %s in vm %d: %w", id, ep.VMID, err)
	}
	return nil
}

// ReadOutput copies background process id's stream, from byte offset on,
// to w and returns the bytes copied; call it again with the new offset to
// follow a running process. It reads over SFTP.
func (t *Transport) ReadOutput(ctx context.Context, ep agentlab.Endpoint, id string,
	s Stream, offset int64, w io.Writer) (int64, error) {
	if !procID.MatchString(id) || (s != Stdout && s != Stderr) {
		return 0, fmt.Errorf("read output of %q: %w", id, agentlab.ErrInvalidArgument)
	}
	t.activity(ep.VMID)
	sc, err := t.sftp(ctx, ep)
	if err != nil {
		return 0, fmt.Errorf("read output of %s in vm %d: %w", id, ep.VMID, err)
	}
	f, err := sc.Open(path.Join(t.cfg.ProcDir, id, string(s)))
	if err != nil {
		return 0, fmt.Errorf("read output of %s in vm %d: %w", id, ep.VMID, err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, fmt.Errorf("read output of %s in vm %d: %w", id, ep.VMID, err)
	}
	n, err := io.Copy(&progressWriter{ctx: ctx, w: w, fn: func(string, int64, int64) {}}, f)
	if err != nil {
		return n, fmt.Errorf("read output of %s in vm %d: %w", id, ep.VMID, err)
	}
	return n, nil
}
