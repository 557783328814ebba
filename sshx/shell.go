package sshx

import (
	"context"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
)

// WindowSize is a terminal size in character cells.
type WindowSize struct {
	Rows, Cols int
}

// ShellOptions configures an interactive session. The zero value runs the
// login shell on an 80x24 "xterm-256color" terminal with no input.
type ShellOptions struct {
	// Command, when set, runs instead of the login shell (still on a pty).
	Command string
	// Term is the TERM value; "" means "xterm-256color".
	Term string
	// Size is the initial window size; zero fields mean 24 rows, 80 columns.
	Size WindowSize
	// Resize, when not nil, delivers window size changes until it is closed
	// or the session ends.
	Resize <-chan WindowSize
	// Stdin feeds the terminal. A reader that blocks forever (a real
	// terminal) keeps one goroutine busy until its next Read returns.
	Stdin io.Reader
	// Stdout receives the terminal output; on a pty, stderr is merged into
	// it. nil discards it.
	Stdout io.Writer
}

// Shell runs an interactive session on a pseudo-terminal in ep's guest and
// returns its exit status (128+N when killed by signal N, as shells
// report it). When ctx ends the session is closed, which hangs up the
// terminal, and the error wraps ctx.Err().
func (t *Transport) Shell(ctx context.Context, ep agentlab.Endpoint, opts ShellOptions) (int, error) {
	t.activity(ep.VMID)
	sess, err := t.session(ctx, ep)
	if err != nil {
		return 0, fmt.Errorf("shell in vm %d: %w", ep.VMID, err)
	}
	defer sess.Close()
	if err := startShell(sess, opts); err != nil {
		return 0, fmt.Errorf("shell in vm %d: %w", ep.VMID, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	err = forwardResizes(ctx, sess, opts.Resize, done)
	var ee *ssh.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		return ee.ExitStatus(), nil
	}
	return 0, fmt.Errorf("shell in vm %d: %w", ep.VMID, err)
}

// startShell requests the pty and starts the shell or command.
func startShell(sess *ssh.Session, opts ShellOptions) error {
	term, rows, cols := opts.Term, opts.Size.Rows, opts.Size.Cols
	if term == "" {
		term = "xterm-256color"
	}
	if rows <= 0 || cols <= 0 {
		rows, cols = 24, 80
	}
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
	if err := sess.RequestPty(term, rows, cols, modes); err != nil {
		return fmt.Errorf("request pty: %w", err)
	}
	sess.Stdin, sess.Stdout, sess.Stderr = opts.Stdin, opts.Stdout, opts.Stdout
	if opts.Command != "" {
		return sess.Start(opts.Command)
	}
	return sess.Shell()
}

// forwardResizes relays window changes until the session ends (its Wait
// result arrives on done) or ctx ends, which closes the session.
func forwardResizes(ctx context.Context, sess *ssh.Session, resize <-chan WindowSize,
	done <-chan error) error {
	for {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			sess.Close()
			<-done
			return ctxErr(ctx.Err())
		case ws, ok := <-resize:
			if !ok {
				resize = nil
				continue
			}
			_ = sess.WindowChange(ws.Rows, ws.Cols)
		}
	}
}
