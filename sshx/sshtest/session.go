package sshtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

const (
	// drainGrace is how long output is still copied after the command exited
	// (descendants may hold the pipes open).
	drainGrace = time.Second
	// hangupGrace is how long a process group gets between SIGHUP and SIGKILL.
	hangupGrace = 500 * time.Millisecond
)

// signals maps SSH signal names (RFC 4254 section 6.10) to Unix signals.
var signals = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "FPE": syscall.SIGFPE,
	"HUP": syscall.SIGHUP, "ILL": syscall.SIGILL, "INT": syscall.SIGINT,
	"KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE, "QUIT": syscall.SIGQUIT,
	"SEGV": syscall.SIGSEGV, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

func signalName(sig syscall.Signal) (string, bool) {
	for name, s := range signals {
		if s == sig {
			return name, true
		}
	}
	return "", false
}

// ptyRequest is the payload of a "pty-req" request (RFC 4254 section 6.2).
type ptyRequest struct {
	Term          string
	Cols, Rows    uint32
	Width, Height uint32
	Modes         string
}

// winChange is the payload of a "window-change" request.
type winChange struct {
	Cols, Rows    uint32
	Width, Height uint32
}

// session is one "session" channel: at most one command, shell or
// subsystem runs on it.
type session struct {
	srv  *Server
	ch   ssh.Channel
	user string
	env  []string

	mu      sync.Mutex
	pty     *ptyRequest
	ptmx    *os.File
	pid     int  // process group of the running command, 0 if none
	started bool // exec, shell or subsystem accepted
	gone    bool // channel closed: a command starting now is killed at once
	done    chan struct{}
	wg      sync.WaitGroup
}

func (s *Server) handleSession(ctx context.Context, sc *ssh.ServerConn, nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	ss := &session{srv: s, ch: ch, user: sc.User(), done: make(chan struct{})}
	for r := range reqs {
		ok, launch := ss.handleRequest(r)
		if r.WantReply {
			_ = r.Reply(ok, nil)
		}
		if launch != nil {
			// Only after the reply: a quick command would otherwise close
			// the channel before the client saw its request accepted.
			launch()
		}
	}
	// The channel is gone (client closed it or the connection died).
	ss.hangup()
	ch.Close()
	ss.wg.Wait()
}

// handleRequest answers one channel request. launch, when not nil, starts
// the accepted command, shell or subsystem and must run after the reply.
func (ss *session) handleRequest(r *ssh.Request) (ok bool, launch func()) {
	switch r.Type {
	case "env":
		return ss.setEnv(r.Payload), nil
	case "pty-req":
		return ss.setPTY(r.Payload), nil
	case "window-change":
		return ss.resize(r.Payload), nil
	case "exec":
		var p struct{ Command string }
		if ssh.Unmarshal(r.Payload, &p) != nil {
			return false, nil
		}
		return ss.start(func() { ss.run(p.Command) })
	case "shell":
		return ss.start(func() { ss.run("") })
	case "subsystem":
		var p struct{ Name string }
		if ssh.Unmarshal(r.Payload, &p) != nil || p.Name != "sftp" {
			return false, nil
		}
		return ss.start(ss.serveSFTP)
	case "signal":
		var p struct{ Signal string }
		if ssh.Unmarshal(r.Payload, &p) != nil {
			return false, nil
		}
		return ss.signal(p.Signal), nil
	}
	return false, nil
}

func (ss *session) setEnv(payload []byte) bool {
	var p struct{ Name, Value string }
	if ssh.Unmarshal(payload, &p) != nil {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.env = append(ss.env, p.Name+"="+p.Value)
	return true
}

func (ss *session) setPTY(payload []byte) bool {
	var p ptyRequest
	if ssh.Unmarshal(payload, &p) != nil {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.pty = &p
	return true
}

func (ss *session) resize(payload []byte) bool {
	var p winChange
	if ssh.Unmarshal(payload, &p) != nil {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.pty != nil {
		ss.pty.Cols, ss.pty.Rows = p.Cols, p.Rows
	}
	if ss.ptmx == nil {
		return ss.pty != nil
	}
	return setWinsize(ss.ptmx, p.Rows, p.Cols) == nil
}

// start accepts fn as the channel's one command and returns the func that
// runs it in a goroutine owned by the session.
func (ss *session) start(fn func()) (bool, func()) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.started {
		return false, nil
	}
	ss.started = true
	ss.wg.Add(1)
	return true, func() {
		go func() {
			defer ss.wg.Done()
			defer close(ss.done)
			fn()
		}()
	}
}

// signal delivers the named signal to the command's process group.
func (ss *session) signal(name string) bool {
	sig, ok := signals[name]
	if !ok {
		return false
	}
	ss.mu.Lock()
	pid := ss.pid
	ss.mu.Unlock()
	if pid == 0 {
		return false
	}
	ss.srv.log.Debug("deliver signal", "signal", name, "pgid", pid)
	return syscall.Kill(-pid, sig) == nil
}

// hangup kills a still-running command: SIGHUP to its group, then SIGKILL
// after hangupGrace.
func (ss *session) hangup() {
	ss.mu.Lock()
	pid, started := ss.pid, ss.started
	ss.gone = true
	ss.mu.Unlock()
	if !started || pid == 0 {
		return
	}
	select {
	case <-ss.done:
		return
	default:
	}
	_ = syscall.Kill(-pid, syscall.SIGHUP)
	t := time.NewTimer(hangupGrace)
	defer t.Stop()
	select {
	case <-ss.done:
	case <-t.C:
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// environ builds the command environment (see the package doc).
func (ss *session) environ() []string {
	srv := ss.srv
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + srv.dir,
		"SHELL=" + srv.cfg.Shell, "USER=" + ss.user, "LOGNAME=" + ss.user,
	}
	env = append(env, srv.cfg.Env...)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	env = append(env, ss.env...)
	if ss.pty != nil && ss.pty.Term != "" {
		env = append(env, "TERM="+ss.pty.Term)
	}
	return append(env, markerVar+"="+srv.marker)
}

// run executes command ("" = interactive shell), reports its exit and
// closes the channel.
func (ss *session) run(command string) {
	cmd := exec.Command(ss.srv.cfg.Shell)
	if command != "" {
		cmd.Args = append(cmd.Args, "-c", command)
	}
	cmd.Dir = ss.srv.dir
	cmd.Env = ss.environ()
	ss.mu.Lock()
	withPTY := ss.pty != nil
	ss.mu.Unlock()
	var err error
	if withPTY {
		err = ss.runPTY(cmd)
	} else {
		err = ss.runPipes(cmd)
	}
	ss.finish(cmd, err)
}

// finish sends exit-status or exit-signal, then EOF and close.
func (ss *session) finish(cmd *exec.Cmd, runErr error) {
	defer ss.ch.Close()
	if cmd.ProcessState == nil {
		fmt.Fprintf(ss.ch.Stderr(), "sshtest: %v\n", runErr)
		_ = ss.ch.CloseWrite()
		sendExitStatus(ss.ch, 127)
		return
	}
	_ = ss.ch.CloseWrite()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		if name, ok := signalName(ws.Signal()); ok {
			msg := struct {
				Signal     string
				CoreDumped bool
				Error      string
				Lang       string
			}{name, ws.CoreDump(), "", ""}
			_, _ = ss.ch.SendRequest("exit-signal", false, ssh.Marshal(&msg))
			return
		}
		sendExitStatus(ss.ch, 128+int(ws.Signal()))
		return
	}
	sendExitStatus(ss.ch, ws.ExitStatus())
}

func sendExitStatus(ch ssh.Channel, code int) {
	msg := struct{ Status uint32 }{uint32(code)}
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(&msg))
}

func (ss *session) setPID(pid int) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.pid = pid
	if ss.gone {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// copyStdin copies the channel into w until the client sends EOF or the
// channel closes, then closes w. The goroutine belongs to the session.
func (ss *session) copyStdin(w io.WriteCloser) {
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		_, _ = io.Copy(w, ss.ch)
		w.Close()
	}()
}

// runPipes runs cmd with its stdio on pipes, in its own process group.
func (ss *session) runPipes(cmd *exec.Cmd) error {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	defer outR.Close()
	defer errR.Close()
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		return err
	}
	ss.setPID(cmd.Process.Pid)
	ss.copyStdin(stdin)
	var copies sync.WaitGroup
	copies.Add(2)
	go func() { defer copies.Done(); _, _ = io.Copy(ss.ch, outR) }()
	go func() { defer copies.Done(); _, _ = io.Copy(ss.ch.Stderr(), errR) }()
	err = cmd.Wait()
	drainBy := time.Now().Add(drainGrace)
	_ = outR.SetReadDeadline(drainBy)
	_ = errR.SetReadDeadline(drainBy)
	copies.Wait()
	return err
}

// runPTY runs cmd as a session leader on a new pseudo-terminal.
func (ss *session) runPTY(cmd *exec.Cmd) error {
	ptmx, tty, err := openPTY()
	if err != nil {
		return err
	}
	defer ptmx.Close()
	ss.mu.Lock()
	_ = setWinsize(ptmx, ss.pty.Rows, ss.pty.Cols)
	ss.ptmx = ptmx
	ss.mu.Unlock()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	err = cmd.Start()
	tty.Close()
	if err != nil {
		return err
	}
	ss.setPID(cmd.Process.Pid)
	ss.copyStdin(nopCloser{ptmx})
	copied := make(chan struct{})
	go func() { defer close(copied); _, _ = io.Copy(ss.ch, ptmx) }()
	err = cmd.Wait()
	_ = ptmx.SetReadDeadline(time.Now().Add(drainGrace))
	<-copied
	ss.mu.Lock()
	ss.ptmx = nil
	ss.mu.Unlock()
	return err
}

// nopCloser keeps the stdin copier from closing the pty master, which
// runPTY owns.
type nopCloser struct{ io.Writer }

// Close does nothing.
func (nopCloser) Close() error { return nil }

// serveSFTP serves the sftp subsystem rooted (for relative paths) at Dir.
func (ss *session) serveSFTP() {
	defer ss.ch.Close()
	srv, err := sftp.NewServer(ss.ch, sftp.WithServerWorkingDirectory(ss.srv.dir))
	if err != nil {
		sendExitStatus(ss.ch, 1)
		return
	}
	err = srv.Serve()
	srv.Close()
	code := 0
	if err != nil && err != io.EOF {
		ss.srv.log.Debug("sftp session", "err", err)
		code = 1
	}
	sendExitStatus(ss.ch, code)
}
