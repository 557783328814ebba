package proxmox_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wrongFingerprint is a syntactically valid fingerprint of no certificate.
const wrongFingerprint = "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:" +
	"00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"

func TestTLSTrust(t *testing.T) {
	srv := pvesim.Start(t, pvesim.Config{})
	caFile, err := srv.CAFile()
	require.NoError(t, err)
	lowerNoColons := strings.ToLower(strings.ReplaceAll(srv.Fingerprint(), ":", ""))
	tests := []struct {
		name    string
		mut     func(*proxmox.Config)
		wantErr string
	}{
		{"fingerprint", func(c *proxmox.Config) {}, ""},
		{"fingerprint in lower case without colons",
			func(c *proxmox.Config) { c.Fingerprint = lowerNoColons }, ""},
		{"ca file", func(c *proxmox.Config) { c.Fingerprint, c.CAFile = "", caFile }, ""},
		{"ca file and fingerprint", func(c *proxmox.Config) { c.CAFile = caFile }, ""},
		{"wrong fingerprint", func(c *proxmox.Config) { c.Fingerprint = wrongFingerprint },
			"does not match the pinned"},
		{"ca file with wrong fingerprint", func(c *proxmox.Config) {
			c.CAFile, c.Fingerprint = caFile, wrongFingerprint
		}, "does not match the pinned"},
		{"no trust configured", func(c *proxmox.Config) { c.Fingerprint = "" },
			"certificate"},
		{"wrong fingerprint is not overridden by insecure", func(c *proxmox.Config) {
			c.Fingerprint, c.InsecureSkipVerify = wrongFingerprint, true
		}, "does not match the pinned"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fastConfig(srv)
			tt.mut(&cfg)
			_, err := proxmox.New(testCtx(t), cfg)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), srv.TokenSecret())
			require.False(t, agentlab.IsRetryable(err), "a trust failure is final: %v", err)
		})
	}
}

func TestInsecureSkipVerifyWarns(t *testing.T) {
	srv := pvesim.Start(t, pvesim.Config{})
	var logs syncBuffer
	_, err := proxmox.New(testCtx(t), proxmox.Config{
		URL: srv.URL(), TokenID: srv.TokenID(), TokenSecret: srv.TokenSecret(),
		InsecureSkipVerify: true, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	require.NoError(t, err)
	require.Contains(t, logs.String(), "level=WARN")
	require.Contains(t, logs.String(), "InsecureSkipVerify")
}

func TestTokenSecretNeverLeaks(t *testing.T) {
	srv := startSim(t, pvesim.Config{})
	secret := srv.TokenSecret()

	cfg := fastConfig(srv)
	cfg.TokenSecret = "not-the-secret-" + secret[:8]
	_, err := proxmox.New(testCtx(t), cfg)
	require.Error(t, err, "a wrong secret is refused")
	require.NotContains(t, err.Error(), cfg.TokenSecret)
	require.NotContains(t, fmt.Sprintf("%+v %#v", cfg, cfg), cfg.TokenSecret)

	// A full lifecycle with debug logging on: neither logs nor errors show
	// the secret.
	var logs syncBuffer
	hv := newHV(t, srv, func(c *proxmox.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := testCtx(t)
	srv.InjectFault(pvesim.Fault{Method: "POST", Path: clonePath, DropResponse: true, Count: 1})
	_, err = hv.Provision(ctx, spec(600, agentlab.NetworkNAT))
	require.NoError(t, err)
	require.Contains(t, logs.String(), "adopting vm", "the lost clone answer was reconciled")
	_, err = hv.Status(ctx, 601)
	require.ErrorIs(t, err, agentlab.ErrNotFound)
	require.NotContains(t, err.Error(), secret)
	require.NoError(t, hv.Destroy(ctx, 600))
	require.NotEmpty(t, logs.String())
	require.NotContains(t, logs.String(), secret)
	require.NotContains(t, fmt.Sprintf("%v %+v %s", hv, hv, hv), secret)
}

func TestContextEndsWaits(t *testing.T) {
	srv := startSim(t, pvesim.Config{TaskDelays: map[string]time.Duration{"qmclone": time.Hour}})
	hv := newHV(t, srv, nil)
	ctx, cancel := context.WithCancel(testCtx(t))
	errc := make(chan error, 1)
	go func() {
		_, err := hv.Provision(ctx, spec(700, agentlab.NetworkNAT))
		errc <- err
	}()
	// Cancel once the clone task runs.
	for {
		info, ok := srv.VM(700)
		if ok && info.Lock == "clone" {
			break
		}
		require.NoError(t, ctx.Err())
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	err := <-errc
	require.ErrorIs(t, err, context.Canceled)
}

// syncBuffer is a bytes.Buffer safe for concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
