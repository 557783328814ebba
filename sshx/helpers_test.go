package sshx_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/sshx"
	"github.com/agentlab-sdk/agentlab/sshx/sshtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newSigner(tb testing.TB) ssh.Signer {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(tb, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(tb, err)
	return s
}

// env is one guest (an sshtest server) and a Transport that reaches it.
type env struct {
	srv   *sshtest.Server
	key   ssh.Signer
	tr    *sshx.Transport
	ep    agentlab.Endpoint
	dials atomic.Int32
}

// newEnv starts a guest and a Transport with a counting dialer; mod may
// adjust the Transport config.
func newEnv(tb testing.TB, mod func(*sshx.Config)) *env {
	tb.Helper()
	e := &env{key: newSigner(tb)}
	e.srv = sshtest.Start(tb, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{e.key.PublicKey()}})
	cfg := sshx.Config{Signer: e.key, Dial: e.dial, KillGrace: 300 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	e.tr = sshx.New(cfg)
	tb.Cleanup(func() { require.NoError(tb, e.tr.Close()) })
	e.ep = endpointFor(e.srv, 1)
	return e
}

// transports returns e's Transport ("direct") and one that reaches the
// same guest with the same key through an SSH jump host ("jump").
func (e *env) transports(tb testing.TB) map[string]*sshx.Transport {
	tb.Helper()
	var d net.Dialer
	var forwarded atomic.Int32
	jump := sshtest.Start(tb, sshtest.Config{
		AuthorizedKeys: []ssh.PublicKey{e.key.PublicKey()},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			forwarded.Add(1)
			return d.DialContext(ctx, network, addr)
		},
	})
	tb.Cleanup(func() { require.Positive(tb, forwarded.Load(), "the jump host forwarded") })
	tr := sshx.New(sshx.Config{Signer: e.key, KillGrace: 300 * time.Millisecond,
		Jump: &sshx.JumpHost{Addr: jump.Addr().String(), User: "bastion",
			HostKey: sshx.FormatKey(jump.HostKey())}})
	tb.Cleanup(func() { require.NoError(tb, tr.Close()) })
	return map[string]*sshx.Transport{"direct": e.tr, "jump": tr}
}

func (e *env) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	e.dials.Add(1)
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// endpointFor is the endpoint of srv with its host key pinned.
func endpointFor(srv *sshtest.Server, vmid int) agentlab.Endpoint {
	addr := srv.Addr().(*net.TCPAddr)
	return agentlab.Endpoint{
		VMID: vmid, Host: addr.IP.String(), Port: addr.Port, User: "agent",
		HostKey: sshx.FormatKey(srv.HostKey()),
	}
}

func ctxTimeout(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// requireDead waits until the process whose pid is in file is gone (or a
// zombie waiting to be reaped).
func requireDead(t *testing.T, file string) {
	t.Helper()
	var pid string
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(file)
		pid = strings.TrimSpace(string(b))
		return err == nil && pid != ""
	}, 5*time.Second, 10*time.Millisecond, "pid file %s", file)
	require.Eventually(t, func() bool {
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		return err != nil || strings.Contains(string(st), ") Z ")
	}, 10*time.Second, 20*time.Millisecond, "process %s still alive", pid)
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
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

// closedPort returns a loopback port nothing listens on.
func closedPort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(tb, l.Close())
	return port
}
