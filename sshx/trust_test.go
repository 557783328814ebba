package sshx_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/sshx"
	"github.com/agentlab-sdk/agentlab/sshx/sshtest"
)

var trueReq = agentlab.ExecRequest{Argv: []string{"true"}}

func TestHostKey_Mismatch(t *testing.T) {
	e := newEnv(t, nil)
	ep := e.ep
	ep.HostKey = sshx.FormatKey(newSigner(t).PublicKey())
	_, err := e.tr.Exec(ctxTimeout(t, 10*time.Second), ep, trueReq)
	require.ErrorIs(t, err, agentlab.ErrHostKeyMismatch)
	require.NotErrorIs(t, err, agentlab.ErrUnreachable)
	var mm *sshx.HostKeyMismatchError
	require.ErrorAs(t, err, &mm)
	require.Equal(t, ssh.FingerprintSHA256(e.srv.HostKey()), mm.Got)

	// WaitReady gives up at once instead of retrying until ctx ends.
	err = e.tr.WaitReady(ctxTimeout(t, time.Minute), ep)
	require.ErrorIs(t, err, agentlab.ErrHostKeyMismatch)
}

func TestHostKey_NotPinned(t *testing.T) {
	e := newEnv(t, nil)
	ep := e.ep
	ep.HostKey = ""
	_, err := e.tr.Exec(ctxTimeout(t, 10*time.Second), ep, trueReq)
	require.ErrorIs(t, err, sshx.ErrHostKeyNotPinned)
}

func TestHostKey_TrustOnFirstUse(t *testing.T) {
	e := newEnv(t, nil)
	var learned []string
	ep := e.ep
	ep.HostKey, ep.TrustOnFirstUse = "", true
	ep.LearnHostKey = func(k string) error { learned = append(learned, k); return nil }
	_, err := e.tr.Exec(ctxTimeout(t, 10*time.Second), ep, trueReq)
	require.NoError(t, err)
	require.Equal(t, []string{sshx.FormatKey(e.srv.HostKey())}, learned)

	// Another guest answers for the same VMID: the learned key is enforced.
	other := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{e.key.PublicKey()}})
	ep.Port = other.Addr().(*net.TCPAddr).Port
	_, err = e.tr.Exec(ctxTimeout(t, 10*time.Second), ep, trueReq)
	require.ErrorIs(t, err, agentlab.ErrHostKeyMismatch)

	// Drop forgets it (the VMID may now belong to a new sandbox).
	e.tr.Drop(ep.VMID)
	_, err = e.tr.Exec(ctxTimeout(t, 10*time.Second), ep, trueReq)
	require.NoError(t, err)
	require.Len(t, learned, 2)
	require.Equal(t, sshx.FormatKey(other.HostKey()), learned[1])
}

func TestHostKey_LearnRefuses(t *testing.T) {
	e := newEnv(t, nil)
	ep := e.ep
	ep.HostKey, ep.TrustOnFirstUse = "", true
	refused := errors.New("store is read-only")
	ep.LearnHostKey = func(string) error { return refused }
	_, err := e.tr.Exec(ctxTimeout(t, 10*time.Second), ep, trueReq)
	require.ErrorIs(t, err, refused)
}

func TestHostKey_BadPin(t *testing.T) {
	e := newEnv(t, nil)
	ep := e.ep
	ep.HostKey = "not a key"
	_, err := e.tr.Exec(ctxTimeout(t, 10*time.Second), ep, trueReq)
	require.ErrorIs(t, err, agentlab.ErrInvalidArgument)
}

func TestAuth_NoKeyNoAgent(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	e := newEnv(t, func(c *sshx.Config) { c.Signer = nil })
	_, err := e.tr.Exec(ctxTimeout(t, 10*time.Second), e.ep, trueReq)
	require.ErrorIs(t, err, agentlab.ErrInvalidArgument)
}

func TestJumpHost(t *testing.T) {
	key := newSigner(t)
	guest := sshtest.Start(t, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	var d net.Dialer
	jump := sshtest.Start(t, sshtest.Config{
		AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}, Dial: d.DialContext,
	})
	newTransport := func(jumpKey ssh.PublicKey) *sshx.Transport {
		tr := sshx.New(sshx.Config{Signer: key, Jump: &sshx.JumpHost{
			Addr: jump.Addr().String(), User: "bastion", HostKey: sshx.FormatKey(jumpKey),
		}})
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	tr := newTransport(jump.HostKey())
	ep := endpointFor(guest, 7)
	res, err := tr.Exec(ctxTimeout(t, 10*time.Second), ep, agentlab.ExecRequest{Shell: "echo via-jump"})
	require.NoError(t, err)
	require.Equal(t, "via-jump\n", string(res.Stdout))

	// The jump host restarts: its connection is redialled.
	jump.CloseConns()
	tr.Drop(ep.VMID)
	require.NoError(t, tr.WaitReady(ctxTimeout(t, 10*time.Second), ep))

	// The guest's key is still checked end to end.
	bad := ep
	bad.HostKey = sshx.FormatKey(newSigner(t).PublicKey())
	bad.VMID = 8
	_, err = tr.Exec(ctxTimeout(t, 10*time.Second), bad, trueReq)
	require.ErrorIs(t, err, agentlab.ErrHostKeyMismatch)

	// A guest the jump host cannot reach.
	gone := ep
	gone.VMID, gone.Port = 9, closedPort(t)
	_, err = tr.Exec(ctxTimeout(t, 10*time.Second), gone, trueReq)
	require.ErrorIs(t, err, agentlab.ErrUnreachable)

	// A jump host with the wrong key is refused.
	_, err = newTransport(newSigner(t).PublicKey()).Exec(ctxTimeout(t, 10*time.Second), ep, trueReq)
	require.ErrorIs(t, err, agentlab.ErrHostKeyMismatch)
}

func TestWaitReady(t *testing.T) {
	e := newEnv(t, nil)
	key := e.key
	port := closedPort(t)
	hostKey := newSigner(t)
	ep := agentlab.Endpoint{VMID: 2, Host: "127.0.0.1", Port: port, User: "agent",
		HostKey: sshx.FormatKey(hostKey.PublicKey())}

	done := make(chan error, 1)
	go func() { done <- e.tr.WaitReady(ctxTimeout(t, 20*time.Second), ep) }()
	time.Sleep(300 * time.Millisecond) // a few failed attempts
	srv, err := sshtest.NewServer(sshtest.Config{
		HostKey: hostKey, AuthorizedKeys: []ssh.PublicKey{key.PublicKey()},
	})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	_, err = srv.Listen(ep.Host + ":" + strconv.Itoa(port))
	require.NoError(t, err)
	require.NoError(t, <-done)
}

func TestWaitReady_Timeout(t *testing.T) {
	e := newEnv(t, nil)
	ep := e.ep
	ep.Port = closedPort(t)
	err := e.tr.WaitReady(ctxTimeout(t, 400*time.Millisecond), ep)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, agentlab.ErrTimeout)
	require.ErrorIs(t, err, agentlab.ErrUnreachable, "last attempt's error is kept")
}

// TestHandshake_BoundedByContext dials a server that accepts TCP but never
// speaks SSH: the handshake must end with ctx.
func TestHandshake_BoundedByContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	e := newEnv(t, nil)
	ep := e.ep
	ep.Port = l.Addr().(*net.TCPAddr).Port
	_, err = e.tr.Exec(ctxTimeout(t, 300*time.Millisecond), ep, trueReq)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, agentlab.ErrTimeout)

	// Config.ConnectTimeout expiring (not the caller's ctx) means unreachable.
	tr := sshx.New(sshx.Config{Signer: e.key, ConnectTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { tr.Close() })
	_, err = tr.Exec(ctxTimeout(t, time.Minute), ep, trueReq)
	require.ErrorIs(t, err, agentlab.ErrUnreachable)
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "id_ed25519")
	s1, err := sshx.LoadOrCreateKey(path)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	pub, err := os.ReadFile(path + ".pub")
	require.NoError(t, err)
	require.Equal(t, sshx.FormatKey(s1.PublicKey())+"\n", string(pub))

	s2, err := sshx.LoadOrCreateKey(path)
	require.NoError(t, err)
	require.Equal(t, s1.PublicKey().Marshal(), s2.PublicKey().Marshal())

	require.NoError(t, os.WriteFile(path, []byte("garbage"), 0o600))
	_, err = sshx.LoadOrCreateKey(path)
	require.Error(t, err)
}

// TestLoadOrCreateKey_LooseModeRefused: like OpenSSH, an existing private
// key that others may read is refused, not used.
func TestLoadOrCreateKey_LooseModeRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "id_ed25519")
	_, err := sshx.LoadOrCreateKey(path)
	require.NoError(t, err)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		require.NoError(t, os.Chmod(path, mode))
		_, err = sshx.LoadOrCreateKey(path)
		require.ErrorIs(t, err, agentlab.ErrInvalidArgument, "%v", mode)
		require.ErrorContains(t, err, "chmod 600")
	}
	require.NoError(t, os.Chmod(path, 0o400))
	_, err = sshx.LoadOrCreateKey(path)
	require.NoError(t, err, "owner-only modes are fine")
}

func TestAuth_SSHAgent(t *testing.T) {
	e := newEnv(t, func(c *sshx.Config) { c.Signer = nil })
	keyring := agent.NewKeyring()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	require.NoError(t, keyring.Add(agent.AddedKey{PrivateKey: priv}))
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	e.srv.SetAuthorizedKeys(signer.PublicKey())

	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = agent.ServeAgent(keyring, c) // one client at a time is enough here
			c.Close()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
	_, err = e.tr.Exec(ctxTimeout(t, 10*time.Second), e.ep, trueReq)
	require.NoError(t, err)
}

// blackhole is a conn that can be switched to swallow writes and never
// deliver reads, like a peer that vanished without a reset.
type blackhole struct {
	net.Conn
	on     atomic.Bool
	closed chan struct{}
	once   sync.Once
}

func (b *blackhole) Read(p []byte) (int, error) {
	n, err := b.Conn.Read(p)
	if b.on.Load() {
		<-b.closed
		return 0, net.ErrClosed
	}
	return n, err
}

func (b *blackhole) Write(p []byte) (int, error) {
	if b.on.Load() {
		return len(p), nil
	}
	return b.Conn.Write(p)
}

func (b *blackhole) Close() error {
	b.once.Do(func() { close(b.closed) })
	return b.Conn.Close()
}

// TestKeepAlive_DetectsDeadPeer: a connection whose peer stops answering is
// closed by the keepalive, and the next call dials again.
func TestKeepAlive_DetectsDeadPeer(t *testing.T) {
	var mu sync.Mutex
	var conns []*blackhole
	e := newEnv(t, nil)
	tr := sshx.New(sshx.Config{Signer: e.key, KeepAlive: 100 * time.Millisecond,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := e.dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			b := &blackhole{Conn: c, closed: make(chan struct{})}
			mu.Lock()
			conns = append(conns, b)
			mu.Unlock()
			return b, nil
		}})
	t.Cleanup(func() { tr.Close() })
	_, err := tr.Exec(ctxTimeout(t, 10*time.Second), e.ep, trueReq)
	require.NoError(t, err)
	mu.Lock()
	conns[0].on.Store(true)
	mu.Unlock()
	_, err = tr.Exec(ctxTimeout(t, 10*time.Second), e.ep, trueReq)
	require.NoError(t, err)
	require.Equal(t, int32(2), e.dials.Load())
}
