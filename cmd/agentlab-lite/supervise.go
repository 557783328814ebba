package main

// Detached supervisors
//
// There is no daemon, yet "job run" and "sandbox new --no-wait" return at
// once while the work goes on. They re-execute this binary as a detached
// process ("job supervise", hidden): a new session (setsid), stdin a pipe
// carrying the request, stdout a pipe for the one-line reply, stderr the
// supervisor log in the state directory. The supervisor opens its own
// Manager, starts the work (Manager.RunJob, or Manager.Create with NoWait),
// replies with the job ID or VMID, closes stdout, and then stays until the
// work ends: the job is terminal (its teardown done), or the sandbox is
// ready or gone. The job runs inside the supervisor from its first step, so
// secrets, which are never stored, go through the pipe only.
//
// If a supervisor dies, its job's heartbeat goes stale and the maintenance
// process ("reconcile --watch", or "sim serve") takes the job over.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// superviseRequest is what the parent sends the supervisor on stdin.
type superviseRequest struct {
	Kind   string                  `json:"kind"` // "job" or "create"
	Job    *agentlab.JobSpec       `json:"job,omitempty"`
	Create *agentlab.CreateRequest `json:"create,omitempty"`
}

// superviseReply is the supervisor's one line on stdout.
type superviseReply struct {
	JobID string `json:"job_id,omitempty"`
	VMID  int    `json:"vmid,omitempty"`
	Error string `json:"error,omitempty"`
}

// replyTimeout bounds the wait for the supervisor's reply; RunJob only
// records the job, Create with NoWait clones and starts the VM.
const replyTimeout = 10 * time.Minute

// spawnSupervisor starts the detached supervisor and returns its reply.
func (c *cli) spawnSupervisor(ctx context.Context, a *app, req superviseRequest) (
	superviseReply, error) {
	exe, err := os.Executable()
	if err != nil {
		return superviseReply{}, fmt.Errorf("find own binary: %w", err)
	}
	logf, err := openSupervisorLog(a.stateDir)
	if err != nil {
		return superviseReply{}, err
	}
	defer logf.Close()
	inR, inW, err := os.Pipe()
	if err != nil {
		return superviseReply{}, fmt.Errorf("create pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return superviseReply{}, fmt.Errorf("create pipe: %w", err)
	}
	defer outR.Close()
	cmd := exec.Command(exe, "--config", a.cfg.Path, "job", "supervise")
	cmd.Stdin, cmd.Stdout, cmd.Stderr, cmd.Dir = inR, outW, logf, a.stateDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		return superviseReply{}, fmt.Errorf("start supervisor: %w", err)
	}
	_ = cmd.Process.Release() // the supervisor outlives this process
	err = json.NewEncoder(inW).Encode(req)
	inW.Close()
	if err != nil {
		return superviseReply{}, fmt.Errorf("send request to supervisor: %w", err)
	}
	return readReply(ctx, outR, logf.Name())
}

func openSupervisorLog(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "supervisor.log"),
		os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open supervisor log: %w", err)
	}
	return f, nil
}

// readReply reads the supervisor's reply line, giving up when ctx ends.
func readReply(ctx context.Context, r *os.File, logName string) (superviseReply, error) {
	type result struct {
		line []byte
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadBytes('\n')
		ch <- result{line, err}
	}()
	ctx, cancel := context.WithTimeout(ctx, replyTimeout)
	defer cancel()
	var res result
	select {
	case res = <-ch:
	case <-ctx.Done():
		r.Close() // ends the reader goroutine
		return superviseReply{}, explain(ctx.Err(), "")
	}
	var rep superviseReply
	if err := json.Unmarshal(res.line, &rep); err != nil {
		return rep, failf("", "supervisor exited without a reply (see %s)", logName)
	}
	if rep.Error != "" {
		return rep, failf("", "%s", rep.Error)
	}
	return rep, nil
}

// cmdSupervise is the detached supervisor's side.
func cmdSupervise(ctx context.Context, c *cli, args []string) error {
	if _, _, err := c.args(c.flags(), args, 0, 0); err != nil {
		return err
	}
	if err := c.act(); err != nil {
		return err
	}
	// No terminal hangs up on a supervisor, and a parent gone before the
	// reply must turn the reply's write into an error, not a SIGPIPE death.
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	level := slog.LevelInfo
	if c.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level})).
		With("pid", os.Getpid())
	var req superviseRequest
	if err := json.NewDecoder(c.stdin).Decode(&req); err != nil {
		return c.reply(superviseReply{Error: "read request: " + err.Error()})
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return c.reply(superviseReply{Error: err.Error()})
	}
	a, err := openApp(ctx, cfg, modeSupervisor, nil, log)
	if err != nil {
		return c.reply(superviseReply{Error: err.Error()})
	}
	defer a.Close(ctx)
	switch req.Kind {
	case "job":
		return c.superviseJob(ctx, a, req.Job, log)
	case "create":
		return c.superviseCreate(ctx, a, req.Create, log)
	}
	return c.reply(superviseReply{Error: fmt.Sprintf("unknown request kind %q", req.Kind)})
}

// reply writes the reply line and closes stdout: the parent may exit at
// any time after, and a write to its closed pipe would kill this process.
func (c *cli) reply(rep superviseReply) error {
	err := json.NewEncoder(c.stdout).Encode(rep)
	if cl, ok := c.stdout.(io.Closer); ok && c.stdout != os.Stderr {
		_ = cl.Close()
	}
	c.stdout = io.Discard
	if rep.Error != "" {
		return errors.New(rep.Error)
	}
	return err
}

func (c *cli) superviseJob(ctx context.Context, a *app, spec *agentlab.JobSpec,
	log *slog.Logger) error {
	if spec == nil {
		return c.reply(superviseReply{Error: "empty job request"})
	}
	j, err := a.m.RunJob(ctx, *spec)
	if err != nil {
		return c.reply(superviseReply{Error: sdkText(err)})
	}
	log = log.With("job_id", j.ID())
	log.Info("job started", "profile", spec.Profile)
	if stop, err := serveCancel(ctx, a.stateDir, j, log); err == nil {
		defer stop()
	} else {
		log.Warn("no cancel socket; job cancel works across processes", "err", err)
	}
	if err := c.reply(superviseReply{JobID: j.ID()}); err != nil {
		log.Warn("reply", "err", err)
	}
	rec, err := j.Wait(ctx)
	if err != nil {
		log.Warn("job left running; the maintenance process takes it over", "err", err)
		return nil
	}
	log.Info("job ended", "status", rec.Status, "message", rec.Message)
	return nil
}

func (c *cli) superviseCreate(ctx context.Context, a *app, req *agentlab.CreateRequest,
	log *slog.Logger) error {
	if req == nil {
		return c.reply(superviseReply{Error: "empty create request"})
	}
	req.NoWait = true
	sb, err := a.m.Create(ctx, *req)
	if err != nil {
		return c.reply(superviseReply{Error: sdkText(err)})
	}
	log = log.With("vmid", sb.VMID())
	if err := c.reply(superviseReply{VMID: sb.VMID()}); err != nil {
		log.Warn("reply", "err", err)
	}
	// RUNNING is the last step of creation (READY comes before the clean
	// snapshot); closing the Manager earlier would cancel the rest.
	rec, err := sb.Wait(ctx, agentlab.StateRunning, agentlab.StateFailed,
		agentlab.StateDestroyed)
	log.Info("sandbox settled", "state", rec.State, "err", err)
	return nil
}

// createDetached runs "sandbox new --no-wait": the supervisor creates the
// sandbox and finishes its readiness; this process prints it as soon as
// the VM boots.
func (c *cli) createDetached(ctx context.Context, a *app, req agentlab.CreateRequest) error {
	reply, err := c.spawnSupervisor(ctx, a, superviseRequest{Kind: "create", Create: &req})
	if err != nil {
		return err
	}
	sb, err := a.m.Get(ctx, reply.VMID)
	if err != nil {
		return err
	}
	return c.printSandbox(a, sb.Record())
}

// Cancelling through the supervisor
//
// A job is best cancelled by the process that runs it: the SDK then stops
// its runner first, so the job ends CANCELED rather than racing the runner
// that sees its guest process vanish. The supervisor listens on a Unix
// socket in the state directory; "job cancel" sends "cancel" there and
// falls back to Job.Cancel across processes when nobody listens.

// cancelSocket is the socket path of job id's supervisor.
func cancelSocket(stateDir, id string) string {
	return filepath.Join(stateDir, "c-"+strings.TrimPrefix(id, "job_")+".sock")
}

// serveCancel listens for cancel requests for j until stop is called.
func serveCancel(ctx context.Context, stateDir string, j *agentlab.Job, log *slog.Logger) (
	stop func(), err error) {
	ln, err := net.Listen("unix", cancelSocket(stateDir, j.ID()))
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			handleCancel(ctx, conn, j, log)
		}
	}()
	return func() { ln.Close(); wg.Wait() }, nil
}

// handleCancel serves one request: "cancel" cancels the job and answers
// with its final status.
func handleCancel(ctx context.Context, conn net.Conn, j *agentlab.Job, log *slog.Logger) {
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "cancel" {
		return
	}
	log.Info("cancel requested")
	if err := j.Cancel(ctx); err != nil {
		fmt.Fprintf(conn, "error: %s\n", oneLine(sdkText(err)))
		return
	}
	fmt.Fprintf(conn, "ok %s\n", j.Record().Status)
}

// cancelViaSupervisor asks the job's supervisor to cancel it. It reports
// false when no supervisor listens.
func cancelViaSupervisor(ctx context.Context, stateDir, id string) (bool, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "unix", cancelSocket(stateDir, id))
	if err != nil {
		return false, nil
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if _, err := io.WriteString(conn, "cancel\n"); err != nil {
		return false, nil
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	switch {
	case err != nil && ctx.Err() != nil:
		return true, ctx.Err()
	case err != nil:
		return false, nil // the supervisor went away meanwhile
	case strings.HasPrefix(line, "error: "):
		return true, errors.New(strings.TrimSpace(strings.TrimPrefix(line, "error: ")))
	}
	return true, nil
}
