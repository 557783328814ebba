package sshx

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
)

// Single regular files move through an exec session rather than SFTP:
// the bytes go through the channel as one stream, with none of SFTP's
// per-packet requests. The remote command first prints streamReady; a
// session whose exec request is refused, or whose output does not start
// with that line (no POSIX shell ran the command), fails with errNoExec
// before any byte moved, and the caller falls back to SFTP.

// ErrSizeMismatch reports a single-file transfer whose byte count differs
// from the size of its source (the file changed during the transfer, or
// the stream was cut). The destination is left as it was.
var ErrSizeMismatch = errors.New("sshx: transfer size mismatch")

// errNoExec reports that streaming through an exec session is not
// possible on this guest; nothing was transferred.
var errNoExec = errors.New("exec streaming unavailable")

// streamReady is the line the remote side prints before any data moves.
const streamReady = "agentlab-sshx-stream-1"

// exitSizeMismatch is the upload script's exit status for a size check
// that failed.
const exitSizeMismatch = 4

// streamBuf is the copy buffer size of exec streams.
const streamBuf = 256 << 10

// stream is one exec session carrying a file.
type stream struct {
	sess   *ssh.Session
	stdin  io.WriteCloser // nil when the command reads no input
	stdout *bufio.Reader
	stderr *capture
	done   chan error // the result of Transport.wait
	cancel context.CancelFunc
}

// startStream runs cmd on a new session of ep's pooled connection and
// waits for its streamReady line. The session is signalled and closed
// when ctx ends (see Transport.wait). Errors wrapping errNoExec mean
// nothing ran that could have touched a file.
func (t *Transport) startStream(ctx context.Context, ep agentlab.Endpoint, cmd string,
	withStdin bool) (*stream, error) {
	sess, err := t.session(ctx, ep)
	if err != nil {
		return nil, err
	}
	s := &stream{sess: sess, stderr: newCapture(nil, 4<<10)}
	if err := s.pipes(withStdin); err != nil {
		sess.Close()
		return nil, err
	}
	if err := sess.Start(cmd); err != nil {
		sess.Close()
		return nil, fmt.Errorf("start command: %w: %w", errNoExec, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- t.wait(sctx, sess) }()
	if err := s.awaitReady(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// pipes connects the session's streams.
func (s *stream) pipes(withStdin bool) error {
	if withStdin {
		w, err := s.sess.StdinPipe()
		if err != nil {
			return fmt.Errorf("stdin pipe: %w", err)
		}
		s.stdin = w
	}
	r, err := s.sess.StdoutPipe()
	if err != nil {
		return fmt.Errorf("stdout pipe: %w", err)
	}
	s.stdout = bufio.NewReaderSize(r, streamBuf)
	s.sess.Stderr = s.stderr
	return nil
}

// awaitReady reads the streamReady line; anything else ends the session.
func (s *stream) awaitReady(ctx context.Context) error {
	line, err := s.stdout.ReadSlice('\n')
	if err == nil && string(line) == streamReady+"\n" {
		return nil
	}
	if err == nil || errors.Is(err, bufio.ErrBufferFull) {
		s.abort()
		if ctx.Err() != nil {
			return ctxErr(ctx.Err())
		}
		return fmt.Errorf("unexpected output %.40q: %w", line, errNoExec)
	}
	// Stdout ended before the first line: the command ended, or ctx did.
	waitErr := s.finish()
	if ctx.Err() != nil {
		return ctxErr(ctx.Err())
	}
	// The script explains its own failures (mkdir, a directory in the
	// way) on stderr; silence means an account with no shell (/bin/false).
	if msg := s.stderrText(); msg != "" {
		return remoteErr(waitErr, msg)
	}
	return fmt.Errorf("no output from remote command: %w", errNoExec)
}

// remoteErr describes a remote command that failed, with its stderr.
func remoteErr(waitErr error, stderr string) error {
	if waitErr == nil {
		return fmt.Errorf("remote command failed%s", stderr)
	}
	return fmt.Errorf("remote command failed: %w%s", waitErr, stderr)
}

// abort stops the remote command and returns the wait result.
func (s *stream) abort() error {
	s.cancel()
	if s.stdin != nil {
		s.stdin.Close()
	}
	err := <-s.done
	s.sess.Close()
	return err
}

// finish waits for the remote command and closes the session.
func (s *stream) finish() error {
	err := <-s.done
	s.cancel()
	s.sess.Close()
	return err
}

// stderrText is the captured stderr as ": text", or "".
func (s *stream) stderrText() string {
	b, _ := s.stderr.result()
	if msg := strings.TrimSpace(string(b)); msg != "" {
		return ": " + msg
	}
	return ""
}

// streamUpload streams size bytes from src into the remote file dst: see
// uploadScript. It fails with ErrSizeMismatch when src does not hold
// exactly size bytes or the remote file did not end up with them.
func (t *Transport) streamUpload(ctx context.Context, ep agentlab.Endpoint, src io.Reader,
	size int64, perm fs.FileMode, dst string) error {
	dir, _, ok := splitRemote(dst)
	if !ok {
		return fmt.Errorf("remote path %q: %w", dst, errNoExec)
	}
	tmp, err := tempName()
	if err != nil {
		return err
	}
	script := uploadScript(shellPath(dir), shellPath(dst), shellPath(joinRemote(dir, tmp)),
		size, perm)
	s, err := t.startStream(ctx, ep, script, true)
	if err != nil {
		return err
	}
	// One byte more than expected is sent when there is one, so a file
	// that grew fails the remote size check instead of being cut short.
	in := &errReader{r: io.LimitReader(src, size+1)}
	sent, err := io.CopyBuffer(s.stdin, in, make([]byte, streamBuf))
	if in.err != nil {
		s.cancel() // a local read failed or ctx ended: stop the remote side
	}
	s.stdin.Close()
	out, _ := io.ReadAll(io.LimitReader(s.stdout, 4<<10))
	waitErr := s.finish()
	return uploadResult(in.err, err, waitErr, s.stderrText(), sent, size, string(out))
}

// uploadResult turns the outcome of streamUpload into its error: a local
// read error first, then the remote exit status, then the byte counts.
func uploadResult(readErr, copyErr, waitErr error, stderr string, sent, size int64,
	out string) error {
	if readErr != nil {
		return readErr
	}
	var ee *ssh.ExitError
	switch {
	case errors.As(waitErr, &ee) && ee.ExitStatus() == exitSizeMismatch:
		return fmt.Errorf("sent %d bytes, expected %d, remote file has %s: %w",
			sent, size, strings.TrimSpace(out), ErrSizeMismatch)
	case waitErr != nil:
		return remoteErr(waitErr, stderr)
	case copyErr != nil:
		return fmt.Errorf("send data: %w", copyErr)
	case sent != size || strings.TrimSpace(out) != strconv.FormatInt(size, 10):
		return fmt.Errorf("sent %d bytes, expected %d, remote file has %q: %w",
			sent, size, strings.TrimSpace(out), ErrSizeMismatch)
	}
	return nil
}

// streamDownload copies the remote file src, expected to hold size bytes,
// into w through `cat`. It fails with ErrSizeMismatch when a different
// number of bytes arrived.
func (t *Transport) streamDownload(ctx context.Context, ep agentlab.Endpoint, src string,
	size int64, w io.Writer) error {
	if strings.ContainsRune(src, 0) || src == "" {
		return fmt.Errorf("remote path %q: %w", src, errNoExec)
	}
	s, err := t.startStream(ctx, ep, "echo "+streamReady+" && exec cat "+Quote(shellPath(src)),
		false)
	if err != nil {
		return err
	}
	out := &errWriter{w: w}
	n, err := io.CopyBuffer(out, s.stdout, make([]byte, streamBuf))
	if out.err != nil {
		s.cancel() // a local write failed or ctx ended: stop the remote side
	}
	waitErr := s.finish()
	switch {
	case out.err != nil:
		return out.err
	case waitErr != nil:
		return remoteErr(waitErr, s.stderrText())
	case err != nil:
		return fmt.Errorf("receive data: %w", err)
	case n != size:
		return fmt.Errorf("received %d bytes, expected %d: %w", n, size, ErrSizeMismatch)
	}
	return nil
}

// uploadScript renders the guest script of a single-file upload: create
// dir, refuse a directory at dst, print streamReady, write stdin into tmp
// (created exclusively, mode 0600), check it holds size bytes (printing
// the count), set perm and rename it over dst. tmp is removed on any
// failure and on HUP, INT or TERM. The paths are shell-safe (see
// shellPath) and are quoted here.
func uploadScript(dir, dst, tmp string, size int64, perm fs.FileMode) string {
	return "D=" + Quote(dir) + "; F=" + Quote(dst) + "; T=" + Quote(tmp) + "\n" +
		`mkdir -p "$D" || exit 1` + "\n" +
		`if test -d "$F"; then echo "$F: is a directory" >&2; exit 1; fi` + "\n" +
		`trap 'rm -f "$T"' EXIT; trap 'exit 129' HUP; trap 'exit 130' INT; ` +
		`trap 'exit 143' TERM` + "\n" +
		`umask 077; set -C` + "\n" +
		`echo ` + streamReady + "\n" +
		`cat > "$T" || exit 1` + "\n" +
		`set -- $(wc -c < "$T"); echo "$1"` + "\n" +
		`test "$1" = ` + strconv.FormatInt(size, 10) + ` || exit ` +
		strconv.Itoa(exitSizeMismatch) + "\n" +
		`chmod ` + fmt.Sprintf("%04o", perm.Perm()) + ` "$T" || exit 1` + "\n" +
		`if test -d "$F"; then echo "$F: is a directory" >&2; exit 1; fi` + "\n" +
		`mv -f "$T" "$F"`
}

// splitRemote splits a remote file path into its directory as written
// ("." or "/" when it has none) and its last element; ok is false when
// there is no usable last element or the path holds a NUL byte.
func splitRemote(p string) (dir, base string, ok bool) {
	if strings.ContainsRune(p, 0) {
		return "", "", false
	}
	i := strings.LastIndexByte(p, '/')
	base = p[i+1:]
	switch {
	case i < 0:
		dir = "."
	case i == 0:
		dir = "/"
	default:
		dir = p[:i]
	}
	return dir, base, base != "" && base != "." && base != ".."
}

// joinRemote puts name in dir without cleaning dir, so symlinks and ".."
// in it resolve as the guest's kernel resolves dst.
func joinRemote(dir, name string) string {
	if strings.HasSuffix(dir, "/") {
		return dir + name
	}
	return dir + "/" + name
}

// shellPath makes a relative path start with "./" so that no utility
// reads it as an option; it stays relative to the login directory.
func shellPath(p string) string {
	if strings.HasPrefix(p, "/") || p == "." || strings.HasPrefix(p, "./") {
		return p
	}
	return "./" + p
}

// tempName returns a fresh hidden file name for a transfer in progress.
func tempName() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate temp name: %w", err)
	}
	return ".agentlab-" + hex.EncodeToString(b) + ".tmp", nil
}

// errReader records the error of its reader, to tell a local failure
// from a failed send.
type errReader struct {
	r   io.Reader
	err error
}

// Read reads from r and keeps any error but io.EOF.
func (e *errReader) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// errWriter records the error of its writer, to tell a local failure from
// a failed receive.
type errWriter struct {
	w   io.Writer
	err error
}

// Write writes to w and keeps its error.
func (e *errWriter) Write(b []byte) (int, error) {
	n, err := e.w.Write(b)
	if err != nil {
		e.err = err
	}
	return n, err
}
