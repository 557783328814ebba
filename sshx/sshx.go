// Package sshx is the guest data plane of agentlab: it runs commands in
// sandboxes and moves files to and from them over SSH and SFTP, with
// golang.org/x/crypto/ssh and github.com/pkg/sftp (no ssh subprocess).
//
// [Transport] implements [agentlab.Guest]. Beyond that interface it offers
// background processes ([Transport.Start], [Transport.Wait],
// [Transport.Signal], [Transport.Status]) and an interactive shell on a
// pseudo-terminal ([Transport.Shell]).
//
// # Connections
//
// One multiplexed *ssh.Client is kept per VMID and shared by all calls for
// that sandbox; sessions are cheap, dials are not. A keepalive request
// (keepalive@openssh.com) runs every [Config.KeepAlive]; a connection that
// fails it, or whose peer went away, is closed and redialled on next use.
// When opening a session on a pooled connection fails, the connection is
// redialled once and the call retried, because no command was sent yet.
// [Transport.Drop] closes the connection of one sandbox.
//
// Every dial and handshake is bounded by the caller's ctx and by
// [Config.ConnectTimeout]: x/crypto/ssh does not watch a context, so the
// connection is closed when ctx ends.
//
// # Trust
//
// The guest's host key must match [agentlab.Endpoint.HostKey]. With no key
// pinned, the first key seen is accepted only when TrustOnFirstUse is set; it
// is passed to LearnHostKey and remembered for that VMID until
// [Transport.Drop], so a reconnect cannot silently accept a different key.
// A changed key fails with an error matching [agentlab.ErrHostKeyMismatch].
// The client authenticates with [Config.Signer], or with the keys of the
// ssh-agent at $SSH_AUTH_SOCK when Signer is nil. [LoadOrCreateKey] manages
// a private key file.
//
// # Commands
//
// Commands run through the login shell of the guest user, which must be a
// POSIX shell. Argv is quoted word by word and run with exec; Dir becomes
// `cd -- 'dir' || exit 1`; Env becomes `export K='v'` statements in front of
// the command. Env is not sent with "env" requests, because sshd refuses
// names missing from its AcceptEnv list. Output is streamed to the
// request's writers and captured up to a bound per stream, so a guest that
// prints gigabytes does not grow memory.
//
// When ctx ends during a command, the remote process gets SIGTERM, then
// SIGKILL after [Config.KillGrace], and the session is closed. OpenSSH
// delivers "signal" requests to the session's process only; commands given
// as Argv are exec'd so that process is the command itself.
//
// # Errors
//
// A command that ran and exited non-zero is a result, not an error.
// Errors wrap [agentlab.ErrUnreachable] (dial or handshake failed),
// [agentlab.ErrHostKeyMismatch], [ErrHostKeyNotPinned],
// [agentlab.ErrInvalidArgument], [agentlab.ErrTimeout] together with
// context.DeadlineExceeded, or context.Canceled.
package sshx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
)

// Defaults for the zero values of [Config].
const (
	DefaultKeepAlive      = 15 * time.Second
	DefaultConnectTimeout = 30 * time.Second
	DefaultKillGrace      = 2 * time.Second
	DefaultProcDir        = ".agentlab/proc"
	defaultMaxOutput      = 1 << 20
)

// ErrHostKeyNotPinned reports that the guest offered a host key while none
// was pinned and trust on first use was off.
var ErrHostKeyNotPinned = fmt.Errorf("sshx: no host key pinned and trust on first use is off: %w",
	agentlab.ErrHostKeyMismatch)

// Config configures a [Transport]. The zero value is usable when an
// ssh-agent is running; every zero field has the documented default.
type Config struct {
	// Signer is the client's private key. nil: use the keys of the ssh-agent
	// at $SSH_AUTH_SOCK (dials fail when there is none).
	Signer ssh.Signer

	// Dial opens the TCP connection to a guest (or to the jump host). nil:
	// a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Jump, when not nil, is a bastion every guest connection goes through
	// (ProxyJump semantics).
	Jump *JumpHost

	// KeepAlive is the interval of keepalive requests on pooled connections;
	// a connection that does not answer within one interval is closed.
	// Zero: DefaultKeepAlive; negative: no keepalives.
	KeepAlive time.Duration

	// ConnectTimeout bounds one dial plus handshake, on top of ctx. Zero:
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration

	// KillGrace is the time between SIGTERM and SIGKILL when a command's ctx
	// ends. Zero: DefaultKillGrace.
	KillGrace time.Duration

	// ProcDir is the guest directory holding background processes' files,
	// relative to the login directory unless absolute. Zero: DefaultProcDir.
	ProcDir string

	// OnActivity, when not nil, is called with the VMID at the start of every
	// exec, transfer, background-process call and shell, so the caller can
	// track idleness. It must not block.
	OnActivity func(vmid int)

	// Logger receives debug records about dials and reconnects; nil is silent.
	Logger *slog.Logger
}

// JumpHost is a bastion reached before the guests (ProxyJump): the
// Transport connects to Addr, verifies HostKey, then opens a direct-tcpip
// channel to each guest. One connection to the jump host is shared.
type JumpHost struct {
	// Addr is the jump host's "host:port".
	Addr string
	// User is the login name on the jump host.
	User string
	// HostKey is the jump host's pinned key in authorized_keys format;
	// required (a jump host is never trusted on first use).
	HostKey string
	// Signer authenticates to the jump host; nil: the Transport's auth.
	Signer ssh.Signer
}

// Transport runs commands and transfers files in guests over pooled SSH
// connections. It implements [agentlab.Guest]. It is safe for concurrent
// use; the caller closes it with [Transport.Close].
type Transport struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	slots   map[int]*slot  // pooled connection per VMID
	learned map[int]string // host keys accepted on first use, until Drop
	jump    *slot
	closed  bool
	wg      sync.WaitGroup // connection watchers and keepalives
}

var _ agentlab.Guest = (*Transport)(nil)

// New returns a Transport for cfg. It does not connect.
func New(cfg Config) *Transport {
	cfg = withDefaults(cfg)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Transport{
		cfg: cfg, log: log,
		slots:   make(map[int]*slot),
		learned: make(map[int]string),
		jump:    newSlot(),
	}
}

// withDefaults fills the zero fields of cfg.
func withDefaults(cfg Config) Config {
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	if cfg.ProcDir == "" {
		cfg.ProcDir = DefaultProcDir
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = d.DialContext
	}
	return cfg
}

// Drop closes the pooled connection of sandbox vmid, if any, and forgets a
// host key learned on first use for it. Calls in flight on that connection
// fail. Safe to call for an unknown vmid.
func (t *Transport) Drop(vmid int) {
	t.mu.Lock()
	s := t.slots[vmid]
	delete(t.slots, vmid)
	delete(t.learned, vmid)
	t.mu.Unlock()
	if s != nil {
		s.closeConn()
	}
}

// Close closes every pooled connection, including the jump host's, and
// waits for the Transport's goroutines. Calls after Close fail with
// agentlab.ErrClosed. A second Close returns nil.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	slots := t.slots
	t.slots = map[int]*slot{}
	t.mu.Unlock()
	for _, s := range slots {
		s.closeConn()
	}
	t.jump.closeConn()
	t.wg.Wait()
	return nil
}

// activity reports use of sandbox vmid to Config.OnActivity.
func (t *Transport) activity(vmid int) {
	if t.cfg.OnActivity != nil {
		t.cfg.OnActivity(vmid)
	}
}

// ctxErr wraps a context error, adding agentlab.ErrTimeout for deadlines.
func ctxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", agentlab.ErrTimeout, err)
	}
	return err
}
