package pvesim

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Config configures a simulated cluster. The zero value is valid: one node
// "pve1", one generated API token for root@pam, tasks that finish at once,
// a guest agent that answers as soon as a VM runs, guests in 10.77.0.0/16 and
// a temporary directory for guest files.
type Config struct {
	// Addr is the listen address of the API; "" means "127.0.0.1:0".
	Addr string
	// Nodes names the cluster nodes; nil means ["pve1"]. Names must match
	// PVE's node name syntax. VMIDs are unique across all nodes.
	Nodes []string
	// Tokens maps API token IDs ("root@pam!agentlab") to secrets. nil means
	// one generated token, reported by Server.TokenID and Server.TokenSecret.
	Tokens map[string]string
	// Users maps user IDs ("root@pam") to passwords for ticket login
	// (POST /access/ticket). nil means no user can log in with a password.
	Users map[string]string
	// TaskDelays is how long a task of a given type ("qmclone", "qmstart",
	// "qmshutdown", "qmstop", "qmpause", "qmsuspend", "qmresume",
	// "qmsnapshot", "qmrollback", "qmdelsnapshot", "qmdestroy", "qmconfig",
	// "qmresize", ...) runs before it finishes. Types not listed use
	// DefaultTaskDelay. Zero is allowed.
	TaskDelays map[string]time.Duration
	// DefaultTaskDelay is the run time of task types missing from
	// TaskDelays; zero means tasks finish as soon as their goroutine runs.
	DefaultTaskDelay time.Duration
	// AgentDelay is how long after a VM starts its guest agent begins to
	// answer; before that agent calls fail with "QEMU guest agent is not
	// running", as on a booting guest.
	AgentDelay time.Duration
	// LockWait is how long a task waits for another task holding the same
	// VM's lock file before it fails with "can't lock file ... got timeout";
	// zero means 10s, as in PVE.
	LockWait time.Duration
	// ResourcesLag makes /cluster/resources serve a cached view refreshed
	// at most this often, like pvestatd's (about 10s on PVE): new VMs show
	// up late and deleted ones linger. Zero means always current.
	ResourcesLag time.Duration
	// GuestCIDR is the IPv4 network guests get their addresses from; ""
	// means "10.77.0.0/16".
	GuestCIDR string
	// Seed seeds the generators of probabilistic faults and of MAC
	// addresses, so runs with the same requests are reproducible.
	Seed int64
	// Dir holds guest home directories and snapshot copies. "" means a
	// temporary directory that Close removes; a given Dir is left in place.
	Dir string
	// JumpAuthorizedKeys may log in to the jump host (Server.JumpHost), in
	// addition to the cloud-init "sshkeys" of every VM that has booted.
	JumpAuthorizedKeys []ssh.PublicKey
	// Logger receives one record per request and task; nil is silent.
	Logger *slog.Logger
}

// Server is a running simulated Proxmox VE cluster. Create it with NewServer
// (or Start in tests) and stop it with Close. All methods are safe for
// concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	pki     *pki
	ln      net.Listener
	http    *http.Server
	url     string
	dir     string
	ownDir  bool
	guestNw netip.Prefix
	tokenID string
	secret  string
	ticketK []byte
	ctx     context.Context // ends at Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // task goroutines and the HTTP server
	reqWG   sync.WaitGroup // API handlers in flight

	mu      sync.Mutex
	c       *cluster
	faults  []*faultState
	faultN  uint64
	closed  bool
	jump    *jumpHost
	guestWG sync.WaitGroup // guest-exec processes
	execs   execTable
}

// NewServer validates cfg, starts the HTTPS API on cfg.Addr and the SSH jump
// host on 127.0.0.1, and returns the running server. The caller must call
// Close. It fails when a node name is invalid, GuestCIDR is not an IPv4
// prefix, Dir cannot be created or the address cannot be bound.
func NewServer(cfg Config) (*Server, error) {
	s, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.listen(); err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := s.startJumpHost(); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// Start is NewServer for tests: it fails tb on error and registers Close
// with tb.Cleanup.
func Start(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	s, err := NewServer(cfg)
	if err != nil {
		tb.Fatalf("start pvesim: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close pvesim: %v", err)
		}
	})
	return s
}

var nodeNameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$`)

func newServer(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.applyDefaults(); err != nil {
		return nil, err
	}
	p, err := newPKI()
	if err != nil {
		return nil, err
	}
	s.pki = p
	if err := s.initDir(); err != nil {
		return nil, err
	}
	s.ticketK = make([]byte, 32)
	_, _ = rand.Read(s.ticketK)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.c = newCluster(s.cfg.Nodes, s.cfg.Seed)
	return s, nil
}

func (s *Server) applyDefaults() error {
	if len(s.cfg.Nodes) == 0 {
		s.cfg.Nodes = []string{"pve1"}
	}
	for _, n := range s.cfg.Nodes {
		if !nodeNameRE.MatchString(n) {
			return fmt.Errorf("check node name %q: invalid syntax", n)
		}
	}
	if s.cfg.LockWait == 0 {
		s.cfg.LockWait = 10 * time.Second
	}
	cidr := s.cfg.GuestCIDR
	if cidr == "" {
		cidr = "10.77.0.0/16"
	}
	pfx, err := netip.ParsePrefix(cidr)
	if err != nil || !pfx.Addr().Is4() || pfx.Bits() > 28 {
		return fmt.Errorf("parse guest cidr %q: need an IPv4 prefix of /28 or wider", cidr)
	}
	s.guestNw = pfx.Masked()
	s.initTokens()
	return nil
}

func (s *Server) initTokens() {
	if s.cfg.Tokens == nil {
		s.tokenID = "root@pam!pvesim"
		s.secret = randomUUID()
		s.cfg.Tokens = map[string]string{s.tokenID: s.secret}
		return
	}
	ids := make([]string, 0, len(s.cfg.Tokens))
	for id := range s.cfg.Tokens {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) > 0 {
		s.tokenID, s.secret = ids[0], s.cfg.Tokens[ids[0]]
	}
}

func (s *Server) initDir() error {
	if s.cfg.Dir != "" {
		s.dir = s.cfg.Dir
		return os.MkdirAll(s.dir, 0o755)
	}
	d, err := os.MkdirTemp("", "pvesim-")
	if err != nil {
		return fmt.Errorf("create sim dir: %w", err)
	}
	s.dir, s.ownDir = d, true
	return nil
}

func (s *Server) listen() error {
	addr := s.cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{s.pki.leaf}, NextProtos: []string{"http/1.1"},
	}
	s.ln = tls.NewListener(ln, tlsConf)
	s.url = "https://" + ln.Addr().String() + "/api2/json"
	s.http = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Second, // pveproxy's keep-alive timeout
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// pveproxy speaks HTTP/1.1 only; an empty map disables HTTP/2.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	s.wg.Go(func() { _ = s.http.Serve(s.ln) })
	return nil
}

// Close stops the API server and the jump host, cancels running tasks,
// stops every guest and removes the temporary directory when Config.Dir was
// "". It waits for all goroutines the server started. Calling it twice is
// safe; the second call returns nil.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	var errs []error
	if s.http != nil {
		errs = append(errs, s.http.Close())
	}
	s.reqWG.Wait()
	s.wg.Wait()
	errs = append(errs, s.stopAllGuests())
	if s.jump != nil {
		errs = append(errs, s.jump.close())
	}
	s.guestWG.Wait()
	if s.ownDir {
		errs = append(errs, os.RemoveAll(s.dir))
	}
	return errors.Join(errs...)
}

// URL is the API base URL, "https://127.0.0.1:<port>/api2/json", ready for
// proxmox.NewClient.
func (s *Server) URL() string { return s.url }

// CACertPEM returns the PEM certificate of the simulator's CA, the
// equivalent of /etc/pve/pve-root-ca.pem.
func (s *Server) CACertPEM() []byte { return slices.Clone(s.pki.caPEM) }

// CAFile writes the CA certificate to <Dir>/pve-root-ca.pem (overwriting
// it) and returns the path, for clients that take a CA file.
func (s *Server) CAFile() (string, error) {
	p := filepath.Join(s.dir, "pve-root-ca.pem")
	if err := os.WriteFile(p, s.pki.caPEM, 0o644); err != nil {
		return "", fmt.Errorf("write ca file: %w", err)
	}
	return p, nil
}

// Fingerprint is the SHA-256 fingerprint of the server's TLS leaf
// certificate as PVE shows it: colon-separated upper-case hex.
func (s *Server) Fingerprint() string { return s.pki.fingerprint() }

// Client returns a new HTTP client that trusts the simulator's CA and
// nothing else. Each call returns a fresh client with its own transport.
func (s *Server) Client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: s.pki.caPool, MinVersion: tls.VersionTLS12}
	tr.ForceAttemptHTTP2 = false
	return &http.Client{Transport: tr}
}

// TokenID is the API token ID of the generated token ("root@pam!pvesim"),
// or the lexically first of Config.Tokens.
func (s *Server) TokenID() string { return s.tokenID }

// TokenSecret is the secret of TokenID.
func (s *Server) TokenSecret() string { return s.secret }

// Nodes returns the node names in configuration order.
func (s *Server) Nodes() []string { return slices.Clone(s.cfg.Nodes) }

// Dir is the directory holding guest homes and snapshot copies.
func (s *Server) Dir() string { return s.dir }

// enter registers an API handler; it reports false once Close has begun.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.reqWG.Add(1)
	return true
}

func (s *Server) mac(data string) []byte {
	m := hmac.New(sha256.New, s.ticketK)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func randomUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
