package sshx

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
)

// conn is one pooled SSH connection and its lazily opened SFTP client.
type conn struct {
	client *ssh.Client
	key    string        // identity of the endpoint it was dialled for
	dead   chan struct{} // closed when the connection ended
	broken atomic.Bool   // set when a caller saw it fail

	sftpMu sync.Mutex
	sftp   *sftp.Client
}

// usable reports whether c may serve a call for the endpoint identity key.
func (c *conn) usable(key string) bool {
	if c.key != key || c.broken.Load() {
		return false
	}
	select {
	case <-c.dead:
		return false
	default:
		return true
	}
}

// close shuts the connection; calls in flight on it fail.
func (c *conn) close() {
	c.broken.Store(true)
	c.client.Close()
}

// sftpClient returns the connection's SFTP client, opening it on first use.
func (c *conn) sftpClient() (*sftp.Client, error) {
	c.sftpMu.Lock()
	defer c.sftpMu.Unlock()
	if c.sftp != nil {
		return c.sftp, nil
	}
	sc, err := sftp.NewClient(c.client, sftp.UseConcurrentWrites(true))
	if err != nil {
		return nil, fmt.Errorf("open sftp: %w", err)
	}
	c.sftp = sc
	return sc, nil
}

// newSession opens a session, giving up when ctx ends; a session that
// arrives after that is closed.
func (c *conn) newSession(ctx context.Context) (*ssh.Session, error) {
	type result struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan result)
	go func() {
		s, err := c.client.NewSession()
		select {
		case ch <- result{s, err}:
		case <-ctx.Done():
			if s != nil {
				s.Close()
			}
		}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-ctx.Done():
		return nil, ctxErr(ctx.Err())
	}
}

// slot holds the pooled connection of one VMID (or of the jump host).
// sem serialises dialling so concurrent callers share one dial.
type slot struct {
	sem     chan struct{}
	mu      sync.Mutex
	c       *conn
	dropped bool
}

func newSlot() *slot { return &slot{sem: make(chan struct{}, 1)} }

// get returns a usable connection for key, dialling when there is none.
func (s *slot) get(ctx context.Context, key string,
	dial func(context.Context) (*conn, error)) (*conn, error) {
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer func() { <-s.sem }()
	s.mu.Lock()
	old, dropped := s.c, s.dropped
	s.mu.Unlock()
	if dropped {
		return nil, fmt.Errorf("connection dropped: %w", agentlab.ErrClosed)
	}
	if old != nil && old.usable(key) {
		return old, nil
	}
	if old != nil {
		old.close()
	}
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	return s.store(c)
}

// acquire takes the dial token, giving up when ctx ends.
func (s *slot) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctxErr(ctx.Err())
	}
}

// store installs c unless the slot was dropped meanwhile.
func (s *slot) store(c *conn) (*conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped {
		c.close()
		return nil, fmt.Errorf("connection dropped: %w", agentlab.ErrClosed)
	}
	s.c = c
	return c, nil
}

// closeConn marks the slot dropped and closes its connection.
func (s *slot) closeConn() {
	s.mu.Lock()
	c := s.c
	s.c, s.dropped = nil, true
	s.mu.Unlock()
	if c != nil {
		c.close()
	}
}

// slotFor returns the slot of vmid, creating it.
func (t *Transport) slotFor(vmid int) (*slot, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, fmt.Errorf("sshx transport: %w", agentlab.ErrClosed)
	}
	s := t.slots[vmid]
	if s == nil {
		s = newSlot()
		t.slots[vmid] = s
	}
	return s, nil
}

// conn returns the pooled connection to ep's guest, dialling if needed.
func (t *Transport) conn(ctx context.Context, ep agentlab.Endpoint) (*conn, error) {
	s, err := t.slotFor(ep.VMID)
	if err != nil {
		return nil, err
	}
	pin := t.pinFor(ep)
	key := fmt.Sprintf("%s|%s|%s", guestAddr(ep), ep.User, pin)
	return s.get(ctx, key, func(ctx context.Context) (*conn, error) {
		return t.dialGuest(ctx, ep, pin, key)
	})
}

// session opens a session on ep's pooled connection. When that fails on an
// existing connection, the connection is redialled once: nothing was sent.
func (t *Transport) session(ctx context.Context, ep agentlab.Endpoint) (*ssh.Session, error) {
	c, err := t.conn(ctx, ep)
	if err != nil {
		return nil, err
	}
	sess, err := c.newSession(ctx)
	if err == nil || ctx.Err() != nil {
		return sess, err
	}
	t.log.Debug("redial after session failure", "vmid", ep.VMID, "err", err)
	c.close()
	if c, err = t.conn(ctx, ep); err != nil {
		return nil, err
	}
	sess, err = c.newSession(ctx)
	if err != nil {
		return nil, fmt.Errorf("open session: %w: %w", agentlab.ErrUnreachable, err)
	}
	return sess, nil
}

// sftp returns the SFTP client of ep's pooled connection, redialling once
// as session does.
func (t *Transport) sftp(ctx context.Context, ep agentlab.Endpoint) (*sftp.Client, error) {
	c, err := t.conn(ctx, ep)
	if err != nil {
		return nil, err
	}
	sc, err := c.sftpClient()
	if err == nil {
		return sc, nil
	}
	c.close()
	if c, err = t.conn(ctx, ep); err != nil {
		return nil, err
	}
	return c.sftpClient()
}

// track wraps a fresh client in a conn and starts its watcher and
// keepalive goroutines. It fails after Close.
func (t *Transport) track(client *ssh.Client, key string) (*conn, error) {
	c := &conn{client: client, key: key, dead: make(chan struct{})}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		client.Close()
		return nil, fmt.Errorf("sshx transport: %w", agentlab.ErrClosed)
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		c.watch()
	}()
	if t.cfg.KeepAlive > 0 {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			keepAlive(c, t.cfg.KeepAlive)
		}()
	}
	return c, nil
}

// watch waits for the connection to end, then marks c dead and closes its
// SFTP client.
func (c *conn) watch() {
	_ = c.client.Wait()
	c.broken.Store(true)
	c.sftpMu.Lock()
	if c.sftp != nil {
		c.sftp.Close()
	}
	c.sftpMu.Unlock()
	close(c.dead)
}

// keepAlive sends a keepalive request every interval and closes c when one
// fails or gets no answer within the interval.
func keepAlive(c *conn, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-c.dead:
			return
		case <-tick.C:
		}
		stall := time.AfterFunc(interval, c.close)
		_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
		stall.Stop()
		if err != nil {
			c.close()
			return
		}
	}
}
