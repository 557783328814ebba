package sshtest_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab/sshx/sshtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return s
}

// fixture starts a server that accepts one client key and returns a
// connected client.
func fixture(t *testing.T, cfg sshtest.Config) (*sshtest.Server, *ssh.Client) {
	t.Helper()
	key := newSigner(t)
	cfg.AuthorizedKeys = append(cfg.AuthorizedKeys, key.PublicKey())
	srv := sshtest.Start(t, cfg)
	return srv, dial(t, srv, key)
}

func clientConfig(srv *sshtest.Server, key ssh.Signer) *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            "tester",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey()),
	}
}

func dial(t *testing.T, srv *sshtest.Server, key ssh.Signer) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", srv.Addr().String(), clientConfig(srv, key))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func run(t *testing.T, c *ssh.Client, cmd string, stdin string, env map[string]string) (string, string, error) {
	t.Helper()
	sess, err := c.NewSession()
	require.NoError(t, err)
	defer sess.Close()
	for k, v := range env {
		require.NoError(t, sess.Setenv(k, v))
	}
	var out, errb bytes.Buffer
	sess.Stdout, sess.Stderr = &out, &errb
	sess.Stdin = strings.NewReader(stdin)
	err = sess.Run(cmd)
	return out.String(), errb.String(), err
}

func TestExec(t *testing.T) {
	srv, c := fixture(t, sshtest.Config{Env: []string{"FROM_CONFIG=cfg"}})
	tests := []struct {
		name, cmd, stdin string
		env              map[string]string
		wantOut, wantErr string
		wantCode         int
	}{
		{name: "stdout", cmd: "echo hello", wantOut: "hello\n"},
		{name: "stderr and code", cmd: "echo oops >&2; exit 3", wantErr: "oops\n", wantCode: 3},
		{name: "stdin", cmd: "tr a-z A-Z", stdin: "shout", wantOut: "SHOUT"},
		{name: "env request", cmd: "echo $GREETING", env: map[string]string{"GREETING": "hi"},
			wantOut: "hi\n"},
		{name: "config env", cmd: "echo $FROM_CONFIG", wantOut: "cfg\n"},
		{name: "cwd is home", cmd: `test "$(pwd -P)" = "$(cd "$HOME" && pwd -P)" && echo same`,
			wantOut: "same\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := run(t, c, tt.cmd, tt.stdin, tt.env)
			require.Equal(t, tt.wantOut, out)
			require.Equal(t, tt.wantErr, errOut)
			if tt.wantCode == 0 {
				require.NoError(t, err)
				return
			}
			var ee *ssh.ExitError
			require.ErrorAs(t, err, &ee)
			require.Equal(t, tt.wantCode, ee.ExitStatus())
		})
	}
	require.DirExists(t, srv.Dir())
}

func TestExec_SignalKillsGroup(t *testing.T) {
	srv, c := fixture(t, sshtest.Config{})
	sess, err := c.NewSession()
	require.NoError(t, err)
	defer sess.Close()
	out, err := sess.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, sess.Start("sleep 30 & echo $! > child.pid; echo started; wait"))
	line := make([]byte, len("started\n"))
	_, err = io.ReadFull(out, line)
	require.NoError(t, err)
	require.NoError(t, sess.Signal(ssh.SIGTERM))
	err = sess.Wait()
	var ee *ssh.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, "TERM", ee.Signal())
	requireDead(t, filepath.Join(srv.Dir(), "child.pid"))
}

func TestExec_ConnCloseKillsCommand(t *testing.T) {
	srv, c := fixture(t, sshtest.Config{})
	sess, err := c.NewSession()
	require.NoError(t, err)
	out, err := sess.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, sess.Start("echo $$ > sh.pid; echo started; sleep 30"))
	_, err = io.ReadFull(out, make([]byte, 8))
	require.NoError(t, err)
	srv.CloseConns()
	require.Error(t, sess.Wait())
	requireDead(t, filepath.Join(srv.Dir(), "sh.pid"))
}

func TestClose_KillsDetachedProcesses(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("stray processes are found through /proc")
	}
	dir := t.TempDir()
	srv, c := fixture(t, sshtest.Config{Dir: dir})
	_, _, err := run(t, c, "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > bg.pid", "", nil)
	require.NoError(t, err)
	srv.CloseConns()
	pid := readPID(t, filepath.Join(dir, "bg.pid"))
	require.NoError(t, syscall.Kill(pid, 0), "a detached process outlives its connection")

	require.NoError(t, srv.Close())
	requireDead(t, filepath.Join(dir, "bg.pid"))
}

func readPID(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	return pid
}

// requireDead waits until the process whose pid is in file no longer exists.
func requireDead(t *testing.T, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	pid := strings.TrimSpace(string(b))
	require.Eventually(t, func() bool {
		_, err := os.Stat("/proc/" + pid)
		if err != nil {
			return true
		}
		st, _ := os.ReadFile("/proc/" + pid + "/stat")
		return strings.Contains(string(st), ") Z ") // zombie: killed, not reaped yet
	}, 10*time.Second, 20*time.Millisecond)
}

func TestShell_PTY(t *testing.T) {
	_, c := fixture(t, sshtest.Config{})
	sess, err := c.NewSession()
	require.NoError(t, err)
	defer sess.Close()
	require.NoError(t, sess.RequestPty("xterm", 40, 100, ssh.TerminalModes{}))
	stdin, err := sess.StdinPipe()
	require.NoError(t, err)
	var out syncBuffer
	sess.Stdout = &out
	require.NoError(t, sess.Shell())
	require.NoError(t, sess.WindowChange(50, 120))
	_, err = io.WriteString(stdin, "test -t 0 && echo TTY-$TERM-$(stty size | tr ' ' x)\nexit 7\n")
	require.NoError(t, err)
	err = sess.Wait()
	var ee *ssh.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 7, ee.ExitStatus())
	require.Contains(t, out.String(), "TTY-xterm-50x120")
}

func TestShell_NoPTY(t *testing.T) {
	_, c := fixture(t, sshtest.Config{})
	sess, err := c.NewSession()
	require.NoError(t, err)
	defer sess.Close()
	var out bytes.Buffer
	sess.Stdout = &out
	sess.Stdin = strings.NewReader("echo one\necho two\n")
	require.NoError(t, sess.Shell())
	require.NoError(t, sess.Wait())
	require.Equal(t, "one\ntwo\n", out.String())
}

func TestSFTP(t *testing.T) {
	srv, c := fixture(t, sshtest.Config{})
	sc, err := sftp.NewClient(c)
	require.NoError(t, err)
	defer sc.Close()
	f, err := sc.Create("hello.txt")
	require.NoError(t, err)
	_, err = f.Write([]byte("via sftp"))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	got, err := os.ReadFile(filepath.Join(srv.Dir(), "hello.txt"))
	require.NoError(t, err)
	require.Equal(t, "via sftp", string(got))
}

func TestAuth(t *testing.T) {
	good, other := newSigner(t), newSigner(t)
	srv := sshtest.Start(t, sshtest.Config{User: "agent", AuthorizedKeys: []ssh.PublicKey{good.PublicKey()}})
	tests := []struct {
		name string
		user string
		key  ssh.Signer
		ok   bool
	}{
		{"good", "agent", good, true},
		{"wrong user", "root", good, false},
		{"wrong key", "agent", other, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := clientConfig(srv, tt.key)
			cfg.User = tt.user
			c, err := ssh.Dial("tcp", srv.Addr().String(), cfg)
			if !tt.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			c.Close()
		})
	}
	srv.SetAuthorizedKeys(other.PublicKey())
	cfg := clientConfig(srv, other)
	cfg.User = "agent"
	c, err := ssh.Dial("tcp", srv.Addr().String(), cfg)
	require.NoError(t, err)
	c.Close()
}

func TestDirectTCPIP_JumpHost(t *testing.T) {
	key := newSigner(t)
	target := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	var d net.Dialer
	jump := sshtest.Start(t, sshtest.Config{
		AuthorizedKeys: []ssh.PublicKey{key.PublicKey()},
		Dial:           d.DialContext,
	})
	jc := dial(t, jump, key)
	conn, err := jc.Dial("tcp", target.Addr().String())
	require.NoError(t, err)
	sc, chans, reqs, err := ssh.NewClientConn(conn, target.Addr().String(), clientConfig(target, key))
	require.NoError(t, err)
	c := ssh.NewClient(sc, chans, reqs)
	defer c.Close()
	out, _, err := run(t, c, "echo through-jump", "", nil)
	require.NoError(t, err)
	require.Equal(t, "through-jump\n", out)

	// Without Dial, forwarding is refused.
	tc := dial(t, target, key)
	_, err = tc.Dial("tcp", jump.Addr().String())
	var oce *ssh.OpenChannelError
	require.ErrorAs(t, err, &oce)
	require.Equal(t, ssh.Prohibited, oce.Reason)
}

func TestKeepalive(t *testing.T) {
	_, c := fixture(t, sshtest.Config{})
	ok, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
	require.NoError(t, err)
	require.True(t, ok)
	ok, _, err = c.SendRequest("no-such-request", true, nil)
	require.NoError(t, err)
	require.False(t, ok)
}

func TestServeConn_Pipe(t *testing.T) {
	key := newSigner(t)
	srv, err := sshtest.NewServer(sshtest.Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	require.NoError(t, err)
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() { defer close(done); srv.ServeConn(a) }()
	sc, chans, reqs, err := ssh.NewClientConn(b, "pipe", clientConfig(srv, key))
	require.NoError(t, err)
	c := ssh.NewClient(sc, chans, reqs)
	out, _, err := run(t, c, "echo piped", "", nil)
	require.NoError(t, err)
	require.Equal(t, "piped\n", out)
	require.Nil(t, srv.Addr())
	dir := srv.Dir()
	require.NoError(t, srv.Close())
	<-done
	c.Close()
	require.NoDirExists(t, dir)
	require.NoError(t, srv.Close(), "second Close")
}

func TestCloseConns_KeepsListening(t *testing.T) {
	key := newSigner(t)
	srv := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	c := dial(t, srv, key)
	srv.CloseConns()
	require.Error(t, c.Wait())
	c2 := dial(t, srv, key)
	out, _, err := run(t, c2, "echo back", "", nil)
	require.NoError(t, err)
	require.Equal(t, "back\n", out)
}

func TestServe_ReturnsNilAfterClose(t *testing.T) {
	srv, err := sshtest.NewServer(sshtest.Config{})
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	require.Eventually(t, func() bool { return srv.Addr() != nil }, 5*time.Second, time.Millisecond)
	require.NoError(t, srv.Close())
	require.NoError(t, <-errc)
	_, err = srv.Listen("127.0.0.1:0")
	require.True(t, errors.Is(err, net.ErrClosed))
}

func TestNewServer_BadDir(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(f, nil, 0o600))
	_, err := sshtest.NewServer(sshtest.Config{Dir: f})
	require.Error(t, err)
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
