package sshx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/agentlab-sdk/agentlab"
)

// guestAddr is ep's "host:port".
func guestAddr(ep agentlab.Endpoint) string {
	port := ep.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(ep.Host, strconv.Itoa(port))
}

// pinFor returns the host key to enforce for ep: the pinned one, else one
// learned on first use since the last Drop, else "".
func (t *Transport) pinFor(ep agentlab.Endpoint) string {
	if ep.HostKey != "" {
		return ep.HostKey
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.learned[ep.VMID]
}

// learn remembers a key accepted on first use for vmid.
func (t *Transport) learn(vmid int, key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.learned[vmid] = key
}

// dialGuest connects and authenticates to ep's guest, directly or through
// the jump host, within ctx and Config.ConnectTimeout.
func (t *Transport) dialGuest(ctx context.Context, ep agentlab.Endpoint,
	pin, key string) (*conn, error) {
	if ep.Host == "" {
		return nil, fmt.Errorf("connect vm %d: empty host: %w", ep.VMID, agentlab.ErrInvalidArgument)
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, t.cfg.ConnectTimeout)
	defer cancel()
	hk, err := t.hostKeyCheck(ep, pin)
	if err != nil {
		return nil, fmt.Errorf("connect vm %d: %w", ep.VMID, err)
	}
	cc := &ssh.ClientConfig{
		User:              ep.User,
		HostKeyCallback:   hk.callback,
		HostKeyAlgorithms: hk.algorithms,
	}
	addr := guestAddr(ep)
	t.log.Debug("dial guest", "vmid", ep.VMID, "addr", addr, "jump", t.cfg.Jump != nil)
	client, err := t.connect(ctx, addr, cc, nil, t.rawGuest)
	if err != nil {
		err = t.connectTimeout(parent, ctx, err)
		return nil, fmt.Errorf("connect vm %d at %s: %w", ep.VMID, addr, err)
	}
	if hk.learned != "" {
		t.learn(ep.VMID, hk.learned)
	}
	return t.track(client, key)
}

// connectTimeout marks err unreachable when Config.ConnectTimeout, not the
// caller's ctx (parent), ended the attempt.
func (t *Transport) connectTimeout(parent, ctx context.Context, err error) error {
	if parent.Err() == nil && ctx.Err() != nil {
		return fmt.Errorf("%w: no answer within %v: %w", agentlab.ErrUnreachable,
			t.cfg.ConnectTimeout, err)
	}
	return err
}

// rawGuest opens the byte stream to a guest: a TCP conn, or a direct-tcpip
// channel through the jump host.
func (t *Transport) rawGuest(ctx context.Context, addr string) (net.Conn, error) {
	if t.cfg.Jump == nil {
		return t.dialTCP(ctx, addr)
	}
	return t.dialViaJump(ctx, addr)
}

// dialTCP dials addr with Config.Dial.
func (t *Transport) dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	return t.cfg.Dial(ctx, "tcp", addr)
}

// connect dials with raw, then runs the SSH handshake, both bounded by ctx
// (the conn is closed when ctx ends, since x/crypto/ssh ignores contexts).
// signer, when not nil, replaces the Transport's auth. Errors match
// agentlab.ErrUnreachable unless they are about trust or ctx.
func (t *Transport) connect(ctx context.Context, addr string, cc *ssh.ClientConfig,
	signer ssh.Signer, raw func(context.Context, string) (net.Conn, error)) (*ssh.Client, error) {
	auth, done, err := t.authMethods(ctx, signer)
	if err != nil {
		return nil, err
	}
	defer done()
	cc.Auth = auth
	nc, err := raw(ctx, addr)
	if err != nil {
		return nil, classify(ctx, fmt.Errorf("dial: %w", err))
	}
	client, err := handshake(ctx, nc, addr, cc)
	if err != nil {
		return nil, classify(ctx, err)
	}
	return client, nil
}

// handshake runs the SSH client handshake on nc, closing nc when ctx ends.
func handshake(ctx context.Context, nc net.Conn, addr string,
	cc *ssh.ClientConfig) (*ssh.Client, error) {
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, cc)
	if !stop() {
		if err == nil {
			sc.Close()
		}
		nc.Close()
		return nil, fmt.Errorf("handshake: %w", ctx.Err())
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

// classify adds agentlab.ErrUnreachable to dial and handshake failures,
// except trust failures and the caller's own ctx ending.
func classify(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, agentlab.ErrHostKeyMismatch), errors.Is(err, ErrHostKeyNotPinned):
		return err
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return ctxErr(err)
	case ctx.Err() != nil:
		return fmt.Errorf("%w: %w", ctxErr(ctx.Err()), err)
	}
	return fmt.Errorf("%w: %w", agentlab.ErrUnreachable, err)
}

// authMethods returns the client auth: signer, Config.Signer, or the agent
// at $SSH_AUTH_SOCK. done releases the agent connection.
func (t *Transport) authMethods(ctx context.Context,
	signer ssh.Signer) ([]ssh.AuthMethod, func(), error) {
	if signer == nil {
		signer = t.cfg.Signer
	}
	if signer != nil {
		return []ssh.AuthMethod{ssh.PublicKeys(signer)}, func() {}, nil
	}
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, nil, fmt.Errorf("no client key: Config.Signer is nil and SSH_AUTH_SOCK is unset: %w",
			agentlab.ErrInvalidArgument)
	}
	var d net.Dialer
	ac, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, nil, fmt.Errorf("connect ssh-agent: %w", err)
	}
	signers := agent.NewClient(ac).Signers
	return []ssh.AuthMethod{ssh.PublicKeysCallback(signers)}, func() { ac.Close() }, nil
}

// jumpConn returns the shared connection to the jump host.
func (t *Transport) jumpConn(ctx context.Context) (*conn, error) {
	j := t.cfg.Jump
	key := j.Addr + "|" + j.User + "|" + j.HostKey
	return t.jump.get(ctx, key, func(ctx context.Context) (*conn, error) {
		if j.HostKey == "" {
			return nil, fmt.Errorf("jump host %s: no pinned host key: %w",
				j.Addr, agentlab.ErrInvalidArgument)
		}
		pk, err := parseKey(j.HostKey)
		if err != nil {
			return nil, fmt.Errorf("jump host %s: %w", j.Addr, err)
		}
		cc := &ssh.ClientConfig{
			User:              j.User,
			HostKeyCallback:   pinnedCallback(pk),
			HostKeyAlgorithms: algorithmsFor(pk),
		}
		client, err := t.connect(ctx, j.Addr, cc, j.Signer, t.dialTCP)
		if err != nil {
			return nil, fmt.Errorf("jump host %s: %w", j.Addr, err)
		}
		return t.track(client, key)
	})
}

// dialViaJump opens a direct-tcpip channel to addr through the jump host,
// redialling the jump host once when its connection turns out dead.
func (t *Transport) dialViaJump(ctx context.Context, addr string) (net.Conn, error) {
	for attempt := 0; ; attempt++ {
		jc, err := t.jumpConn(ctx)
		if err != nil {
			return nil, err
		}
		nc, err := jc.client.DialContext(ctx, "tcp", addr)
		if err == nil {
			return nc, nil
		}
		var oce *ssh.OpenChannelError
		if attempt > 0 || errors.As(err, &oce) || ctx.Err() != nil {
			return nil, fmt.Errorf("via jump host: %w", err)
		}
		jc.close()
	}
}
