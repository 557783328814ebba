package pvesim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab/sshx/sshtest"
)

// guest is the simulated operating system of a VM: an SSH server on a
// loopback port while the VM runs, a home directory and a host key.
type guest struct {
	vmid   int
	signer ssh.Signer
	ip     netip.Addr
	base   string // <Dir>/vm-<id>
	home   string // <base>/home

	mu   sync.Mutex // guards srv and addr
	srv  *sshtest.Server
	addr string
}

// newGuest creates a VM's guest, with s.mu held: host key, IP address and
// an empty home directory.
func (s *Server) newGuest(v *vm) (*guest, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate host key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("wrap host key: %w", err)
	}
	g := &guest{vmid: v.id, signer: signer, base: filepath.Join(s.dir, "vm-"+strconv.Itoa(v.id))}
	g.home = filepath.Join(g.base, "home")
	if err := os.RemoveAll(g.base); err != nil {
		return nil, fmt.Errorf("clear guest dir: %w", err)
	}
	if err := os.MkdirAll(g.home, 0o755); err != nil {
		return nil, fmt.Errorf("create guest home: %w", err)
	}
	g.ip, err = s.allocIP(v.id)
	if err != nil {
		return nil, err
	}
	s.c.ips[g.ip.String()] = v.id
	return g, nil
}

// allocIP picks a stable address for vmid in GuestCIDR, skipping the
// network address and .1 (the gateway).
func (s *Server) allocIP(vmid int) (netip.Addr, error) {
	bits := 32 - s.guestNw.Bits()
	size := uint32(1) << bits
	usable := size - 3
	base := ipUint(s.guestNw.Addr())
	for i := range usable {
		host := (uint32(vmid)+i)%usable + 2
		a := uintIP(base + host)
		if _, used := s.c.ips[a.String()]; !used {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("allocate guest ip: %s is full", s.guestNw)
}

func ipUint(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func uintIP(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// staticIP returns the address of "ip=a.b.c.d/n" in ipconfig0, if any.
func staticIP(ipconfig string) (netip.Addr, bool) {
	for _, kv := range propList(ipconfig) {
		if kv[0] == "ip" && kv[1] != "dhcp" {
			p, err := netip.ParsePrefix(kv[1])
			if err == nil && p.Addr().Is4() {
				return p.Addr(), true
			}
		}
	}
	return netip.Addr{}, false
}

// guestKeys decodes the VM's cloud-init sshkeys.
func guestKeys(conf map[string]string) []ssh.PublicKey {
	dec, err := url.PathUnescape(conf["sshkeys"])
	if err != nil {
		return nil
	}
	keys, _ := decodeSSHKeys(dec)
	return keys
}

// guestStartFn prepares a guest boot with s.mu held (cloud-init: keys,
// user, a static ipconfig0 address inside GuestCIDR) and returns the SSH
// server start.
func (s *Server) guestStartFn(v *vm) func() {
	g := v.guest
	if g == nil {
		return nil
	}
	if ip, ok := staticIP(v.conf["ipconfig0"]); ok && ip != g.ip && s.guestNw.Contains(ip) {
		if owner, used := s.c.ips[ip.String()]; !used || owner == v.id {
			delete(s.c.ips, g.ip.String())
			g.ip = ip
			s.c.ips[ip.String()] = v.id
		}
	}
	keys, user := guestKeys(v.conf), v.conf["ciuser"]
	s.refreshJumpKeysLocked(keys)
	return func() {
		if err := g.start(s, keys, user); err != nil {
			s.log.Warn("start guest", "vmid", g.vmid, "err", err)
		}
	}
}

func (g *guest) start(s *Server, keys []ssh.PublicKey, user string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.srv != nil {
		g.srv.SetAuthorizedKeys(keys...)
		return nil
	}
	srv, err := sshtest.NewServer(sshtest.Config{
		HostKey: g.signer, AuthorizedKeys: keys, User: user, Dir: g.home,
		Logger: s.log.With("vmid", g.vmid),
	})
	if err != nil {
		return fmt.Errorf("create ssh server: %w", err)
	}
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("listen ssh: %w", err)
	}
	g.srv, g.addr = srv, addr.String()
	return nil
}

// guestStopFn returns the shutdown of v's guest SSH server.
func (s *Server) guestStopFn(v *vm) func() {
	g := v.guest
	if g == nil {
		return nil
	}
	return func() { _ = g.stop() }
}

func (g *guest) stop() error {
	g.mu.Lock()
	srv := g.srv
	g.srv, g.addr = nil, ""
	g.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Close(); err != nil {
		return fmt.Errorf("stop guest %d: %w", g.vmid, err)
	}
	return nil
}

// guestPauseFn returns the drop of v's guest connections; the paused VM
// refuses new ones through the dialer.
func (s *Server) guestPauseFn(v *vm) func() {
	g := v.guest
	if g == nil {
		return nil
	}
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.srv != nil {
			g.srv.CloseConns()
		}
	}
}

// removeGuest stops a destroyed VM's guest and deletes its files.
func (s *Server) removeGuest(g *guest) {
	if err := g.stop(); err != nil {
		s.log.Warn("stop guest", "vmid", g.vmid, "err", err)
	}
	if err := os.RemoveAll(g.base); err != nil {
		s.log.Warn("remove guest dir", "vmid", g.vmid, "err", err)
	}
}

func (s *Server) stopAllGuests() error {
	s.mu.Lock()
	var gs []*guest
	for _, v := range s.c.vms {
		if v.guest != nil {
			gs = append(gs, v.guest)
		}
	}
	s.mu.Unlock()
	var errs []error
	for _, g := range gs {
		errs = append(errs, g.stop())
	}
	return errors.Join(errs...)
}

// Dialer returns a dial function that reaches guests by their IP address
// (as reported by the guest agent): port 22 of a running VM connects to its
// SSH server. A stopped, paused or unknown guest fails with "no route to
// host", another port with "connection refused", and addresses outside
// GuestCIDR with "network is unreachable". Safe for concurrent use.
func (s *Server) Dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	return s.dialGuest
}

func (s *Server) dialGuest(ctx context.Context, network, addr string) (net.Conn, error) {
	target, err := s.guestAddr(network, addr)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", target)
}

// guestAddr resolves a guest address to its SSH server's loopback address.
func (s *Server) guestAddr(network, addr string) (string, error) {
	if !strings.HasPrefix(network, "tcp") {
		return "", fmt.Errorf("network %s: %w", network, syscall.EPROTONOSUPPORT)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("parse address %s: %w", addr, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !s.guestNw.Contains(ip) {
		return "", fmt.Errorf("connect %s: %w", addr, syscall.ENETUNREACH)
	}
	s.mu.Lock()
	var g *guest
	if v := s.c.vms[s.c.ips[ip.String()]]; v != nil && v.run == stRunning {
		g = v.guest
	}
	s.mu.Unlock()
	if g == nil {
		return "", fmt.Errorf("connect %s: %w", addr, syscall.EHOSTUNREACH)
	}
	g.mu.Lock()
	target := g.addr
	g.mu.Unlock()
	if port != "22" || target == "" {
		return "", fmt.Errorf("connect %s: %w", addr, syscall.ECONNREFUSED)
	}
	return target, nil
}

// jumpHost is an SSH server standing in for the PVE node: its direct-tcpip
// channels go through the guest dialer.
type jumpHost struct {
	srv  *sshtest.Server
	addr string
	keys map[string]ssh.PublicKey
}

func (s *Server) startJumpHost() error {
	dir := filepath.Join(s.dir, "jump")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create jump host dir: %w", err)
	}
	srv, err := sshtest.NewServer(sshtest.Config{
		AuthorizedKeys: s.cfg.JumpAuthorizedKeys, User: "root", Dir: dir,
		Dial: s.dialGuest, Logger: s.log.With("component", "jump_host"),
	})
	if err != nil {
		return fmt.Errorf("create jump host: %w", err)
	}
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("listen jump host: %w", err)
	}
	j := &jumpHost{srv: srv, addr: addr.String(), keys: map[string]ssh.PublicKey{}}
	for _, k := range s.cfg.JumpAuthorizedKeys {
		j.keys[string(k.Marshal())] = k
	}
	s.mu.Lock()
	s.jump = j
	s.mu.Unlock()
	return nil
}

func (j *jumpHost) close() error { return j.srv.Close() }

// refreshJumpKeysLocked lets keys of a booting guest log in to the jump
// host, with s.mu held.
func (s *Server) refreshJumpKeysLocked(keys []ssh.PublicKey) {
	j := s.jump
	if j == nil {
		return
	}
	added := false
	for _, k := range keys {
		if _, ok := j.keys[string(k.Marshal())]; !ok {
			j.keys[string(k.Marshal())] = k
			added = true
		}
	}
	if !added {
		return
	}
	all := make([]ssh.PublicKey, 0, len(j.keys))
	for _, k := range j.keys {
		all = append(all, k)
	}
	j.srv.SetAuthorizedKeys(all...)
}

// JumpHost returns the address, host key and login user ("root") of an SSH
// server on 127.0.0.1 that stands in for the PVE node. Its direct-tcpip
// channels (ssh -J) reach guests as Dialer does. It accepts
// Config.JumpAuthorizedKeys and the cloud-init keys of every VM that has
// booted.
func (s *Server) JumpHost() (addr string, hostKey ssh.PublicKey, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.jump == nil {
		return "", nil, ""
	}
	return s.jump.addr, s.jump.srv.HostKey(), "root"
}

// copyTree copies the directory tree src to dst (created), keeping modes
// and symlinks.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		return copyEntry(p, filepath.Join(dst, rel), d)
	})
}

func copyEntry(src, dst string, d fs.DirEntry) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	switch {
	case d.IsDir():
		return os.MkdirAll(dst, info.Mode().Perm()|0o700)
	case info.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case info.Mode().IsRegular():
		return copyFile(src, dst, info.Mode().Perm())
	}
	return nil // sockets, fifos and devices are not copied
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// replaceTree makes dst an exact copy of src.
func replaceTree(src, dst string) error {
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("clear %s: %w", dst, err)
	}
	if err := copyTree(src, dst); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}
