package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/agentlab-sdk/agentlab/sshx"
	"golang.org/x/crypto/ssh"
)

// dialFunc opens a TCP connection; nil means the default dialer.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// newTransport builds the SSH guest transport: the CLI's key, the jump host
// when configured (checked when the config was loaded: its host key is
// required), and dial when not nil (the embedded simulator's).
func newTransport(cfg *config, signer ssh.Signer, dial dialFunc, log *slog.Logger) (
	*sshx.Transport, error) {
	tc := sshx.Config{Signer: signer, Dial: dial, Logger: log,
		ConnectTimeout: time.Duration(cfg.SSH.ConnectTimeout)}
	if j := cfg.SSH.Jump; j.Addr != "" {
		user := j.User
		if user == "" {
			user = "root"
		}
		tc.Jump = &sshx.JumpHost{Addr: j.Addr, User: user, HostKey: j.HostKey}
	}
	return sshx.New(tc), nil
}

// loadKey reads the CLI's SSH key, creating it (0600) on first use.
func loadKey(cfg *config) (ssh.Signer, string, error) {
	signer, err := sshx.LoadOrCreateKey(cfg.SSH.Key)
	if err != nil {
		return nil, "", fmt.Errorf("load ssh key %s: %w", cfg.SSH.Key, err)
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	return signer, pub, nil
}
