package sshx_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/sshx"
	"github.com/agentlab-sdk/agentlab/sshx/sshtest"
)

// BenchmarkExecPooled runs `true` on the pooled connection.
func BenchmarkExecPooled(b *testing.B) {
	e := newEnv(b, nil)
	ctx := ctxTimeout(b, time.Hour)
	req := agentlab.ExecRequest{Argv: []string{"true"}}
	_, err := e.tr.Exec(ctx, e.ep, req) // dial outside the timed loop
	require.NoError(b, err)
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.tr.Exec(ctx, e.ep, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExecSSHBinary runs `true` by spawning /usr/bin/ssh per command
// against the same kind of server, for comparison with BenchmarkExecPooled.
func BenchmarkExecSSHBinary(b *testing.B) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		b.Skip("no ssh binary")
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(b, err)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(b, err)
	srv := sshtest.Start(b, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	dir := b.TempDir()
	keyFile, knownHosts := filepath.Join(dir, "id"), filepath.Join(dir, "known_hosts")
	block, err := ssh.MarshalPrivateKey(priv, "")
	require.NoError(b, err)
	require.NoError(b, os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600))
	port := srv.Addr().(*net.TCPAddr).Port
	line := "[127.0.0.1]:" + strconv.Itoa(port) + " " + sshx.FormatKey(srv.HostKey()) + "\n"
	require.NoError(b, os.WriteFile(knownHosts, []byte(line), 0o600))
	args := []string{"-F", "/dev/null", "-i", keyFile, "-p", strconv.Itoa(port),
		"-o", "UserKnownHostsFile=" + knownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "agent@127.0.0.1", "true"}
	if out, err := exec.Command(sshBin, args...).CombinedOutput(); err != nil {
		b.Fatalf("ssh: %v: %s", err, out)
	}
	b.ResetTimer()
	for b.Loop() {
		if out, err := exec.Command(sshBin, args...).CombinedOutput(); err != nil {
			b.Fatalf("ssh: %v: %s", err, out)
		}
	}
}
