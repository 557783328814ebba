// Package sshtest provides an in-process SSH server for tests, in the spirit of
// net/http/httptest.
//
// A [Server] speaks real SSH (golang.org/x/crypto/ssh) over any net.Conn: it
// runs "exec" and "shell" sessions (with or without a pty), serves the "sftp"
// subsystem with github.com/pkg/sftp and forwards "direct-tcpip" channels, so
// it can act as a jump host. It is used by the sshx tests, by the guests of the
// Proxmox simulator (proxmox/pvesim) and by users who test their own code.
//
// # Not a sandbox
//
// Commands run on the local host as the user running the test, with the
// working directory and $HOME set to [Server.Dir]. SFTP paths that are
// relative resolve under Dir; absolute paths reach the whole host file system.
//
// # Environment
//
// A command starts with a small environment: PATH copied from the test
// process, HOME=Dir, SHELL=Config.Shell, USER=the login name, then
// [Config.Env], then the variables the client sent with "env" requests, and
// TERM for pty sessions. Later entries win.
//
// # Processes
//
// Each command runs in its own process group. A "signal" request is delivered
// to the whole group. When the channel or the connection goes away while the
// command runs, the group gets SIGHUP and, if it is still alive after a short
// grace period, SIGKILL. Processes that start their own session (setsid)
// outlive their connection, as under a real sshd, but not the server: on
// Linux, Close kills every process whose environment carries the server's
// SSHTEST_SERVER marker, the way powering off a VM ends all its processes.
package sshtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// handshakeTimeout bounds the SSH handshake of one incoming connection.
const handshakeTimeout = 30 * time.Second

// Config configures a [Server]. The zero value is valid: it generates a host
// key, accepts no client keys (see [Server.SetAuthorizedKeys]), uses a fresh
// temporary directory and /bin/sh, and refuses port forwarding.
type Config struct {
	// HostKey is the server's host key. nil: a fresh ed25519 key is generated.
	HostKey ssh.Signer
	// AuthorizedKeys are the client public keys accepted for public-key
	// authentication. Other authentication methods are always refused.
	AuthorizedKeys []ssh.PublicKey
	// User, when set, is the only login name accepted; "" accepts any name.
	User string
	// Dir is the working directory and $HOME of commands, and the directory
	// relative SFTP paths resolve under. "" means a temporary directory
	// created by NewServer and removed by Close.
	Dir string
	// Env is extra environment ("K=V") for every command.
	Env []string
	// Shell runs commands as `Shell -c <command>`; "" means "/bin/sh".
	Shell string
	// Dial opens the connection for a "direct-tcpip" channel (jump-host
	// use). nil: direct-tcpip channels are refused. The ctx passed to Dial
	// ends when the SSH connection that asked for the channel closes.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives debug records about connections and sessions; nil is
	// silent.
	Logger *slog.Logger
}

// Server is an in-process SSH server. Create it with [NewServer] (or
// [Start] in tests), serve with [Server.Listen], [Server.Serve] or
// [Server.ServeConn], and stop it with [Server.Close]. All methods are safe
// for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	signer  ssh.Signer
	dir     string
	ownDir  bool
	sshConf *ssh.ServerConfig
	ctx     context.Context // ends at Close
	cancel  context.CancelFunc
	marker  string // SSHTEST_SERVER value in every command's environment

	mu        sync.Mutex
	authKeys  []ssh.PublicKey
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	closed    bool
	wg        sync.WaitGroup
}

// NewServer validates cfg and returns a Server that does not listen yet.
// It creates the temporary directory when cfg.Dir is "", and returns an
// error when the host key cannot be generated or Dir is not a directory.
func NewServer(cfg Config) (*Server, error) {
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		signer:    cfg.HostKey,
		dir:       cfg.Dir,
		authKeys:  append([]ssh.PublicKey(nil), cfg.AuthorizedKeys...),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.cfg.Shell == "" {
		s.cfg.Shell = "/bin/sh"
	}
	if err := s.initHostKey(); err != nil {
		return nil, err
	}
	if err := s.initDir(); err != nil {
		return nil, err
	}
	s.sshConf = &ssh.ServerConfig{PublicKeyCallback: s.checkKey}
	s.sshConf.AddHostKey(s.signer)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.marker = rand.Text()
	return s, nil
}

func (s *Server) initHostKey() error {
	if s.signer != nil {
		return nil
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate host key: %w", err)
	}
	s.signer, err = ssh.NewSignerFromKey(priv)
	if err != nil {
		return fmt.Errorf("wrap host key: %w", err)
	}
	return nil
}

func (s *Server) initDir() error {
	if s.dir == "" {
		d, err := os.MkdirTemp("", "sshtest-")
		if err != nil {
			return fmt.Errorf("create server dir: %w", err)
		}
		s.dir, s.ownDir = d, true
		return nil
	}
	fi, err := os.Stat(s.dir)
	if err != nil {
		return fmt.Errorf("check server dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("check server dir: %s is not a directory", s.dir)
	}
	return nil
}

// checkKey is the public-key callback: the user must match Config.User (when
// set) and the key must be one of the authorized keys.
func (s *Server) checkKey(md ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	if s.cfg.User != "" && md.User() != s.cfg.User {
		return nil, fmt.Errorf("sshtest: user %q not allowed", md.User())
	}
	want := string(key.Marshal())
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.authKeys {
		if string(k.Marshal()) == want {
			return &ssh.Permissions{}, nil
		}
	}
	return nil, errors.New("sshtest: key not authorized")
}

// SetAuthorizedKeys replaces the accepted client keys. It affects new
// authentications only; established connections stay up.
func (s *Server) SetAuthorizedKeys(keys ...ssh.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authKeys = append([]ssh.PublicKey(nil), keys...)
}

// HostKey returns the public half of the server's host key.
func (s *Server) HostKey() ssh.PublicKey { return s.signer.PublicKey() }

// Dir returns the commands' working directory and $HOME.
func (s *Server) Dir() string { return s.dir }

// Addr returns the address of the first listener still open, or nil when the
// server does not listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners {
		return l.Addr()
	}
	return nil
}

// Listen listens on addr (for example "127.0.0.1:0") and serves the
// listener in a background goroutine until Close. It returns the bound
// address.
func (s *Server) Listen(addr string) (net.Addr, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if !s.addListener(l) {
		l.Close()
		return nil, net.ErrClosed
	}
	go func() { _ = s.serve(l) }()
	return l.Addr(), nil
}

// Serve accepts connections on l and serves each in its own goroutine. It
// returns nil after Close, or the listener's error otherwise; l is closed in
// both cases.
func (s *Server) Serve(l net.Listener) error {
	if !s.addListener(l) {
		l.Close()
		return nil
	}
	return s.serve(l)
}

func (s *Server) addListener(l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.listeners[l] = struct{}{}
	s.wg.Add(1) // released by serve; Close waits for it
	return true
}

func (s *Server) serve(l net.Listener) error {
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
		s.wg.Done()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.ServeConn(c)
		}()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// ServeConn runs the SSH protocol on one already-accepted connection (a TCP
// conn, one end of net.Pipe, ...) and returns when the connection is done.
// It closes c. After Close it closes c at once.
func (s *Server) ServeConn(c net.Conn) {
	if !s.trackConn(c) {
		c.Close()
		return
	}
	defer s.untrackConn(c)
	wc := wrapUnbuffered(c)
	defer wc.Close()
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(wc, s.sshConf)
	if err != nil {
		s.log.Debug("ssh handshake", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	s.log.Debug("ssh connection", "remote", c.RemoteAddr().String(), "user", sc.User())
	s.serveSSH(sc, chans, reqs)
}

func (s *Server) trackConn(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1) // released by untrackConn; Close waits for it
	return true
}

func (s *Server) untrackConn(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
	s.wg.Done()
}

// serveSSH dispatches channels until the connection ends, then waits for
// every channel handler of this connection.
func (s *Server) serveSSH(sc *ssh.ServerConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	ctx, cancel := context.WithCancel(s.ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		replyGlobal(reqs)
	}()
	for nc := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handleChannel(ctx, sc, nc)
		}()
	}
	cancel()
	sc.Close()
	wg.Wait()
}

// replyGlobal answers global requests: true for keepalives, false otherwise.
func replyGlobal(reqs <-chan *ssh.Request) {
	for r := range reqs {
		if r.WantReply {
			_ = r.Reply(r.Type == "keepalive@openssh.com", nil)
		}
	}
}

func (s *Server) handleChannel(ctx context.Context, sc *ssh.ServerConn, nc ssh.NewChannel) {
	switch nc.ChannelType() {
	case "session":
		s.handleSession(ctx, sc, nc)
	case "direct-tcpip":
		s.handleDirectTCPIP(ctx, nc)
	default:
		_ = nc.Reject(ssh.UnknownChannelType, "unsupported channel type")
	}
}

// CloseConns drops every live connection (and so kills their commands) but
// keeps listening, which looks like a guest reboot or pause to clients.
func (s *Server) CloseConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// Close stops listening, drops all connections, kills running commands
// (detached ones too, on Linux), waits for every goroutine of the server and removes the temporary Dir
// (when NewServer created it). A second Close returns nil.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	killMarked(s.marker)
	if s.ownDir {
		if err := os.RemoveAll(s.dir); err != nil {
			return fmt.Errorf("remove server dir: %w", err)
		}
	}
	return nil
}

// Start creates a Server with cfg, listens on 127.0.0.1 on a free port and
// registers Close with tb.Cleanup. It fails tb on error.
func Start(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	s, err := NewServer(cfg)
	if err != nil {
		tb.Fatalf("sshtest: %v", err)
	}
	if _, err := s.Listen("127.0.0.1:0"); err != nil {
		s.Close()
		tb.Fatalf("sshtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("sshtest: close: %v", err)
		}
	})
	return s
}
