package bench

import (
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/sshx"
	"github.com/agentlab-sdk/agentlab/sshx/sshtest"
)

// sshWorld is one sshtest server with an sshx Transport and the files the
// ssh binary needs to reach it with the same key.
type sshWorld struct {
	srv     *sshtest.Server
	tr      *sshx.Transport
	ep      agentlab.Endpoint
	signer  ssh.Signer
	sshArgs []string    // /usr/bin/ssh arguments up to and excluding the command
	raw     *ssh.Client // a plain x/crypto/ssh connection, for the floor
}

// newSSHWorld starts an sshtest server on loopback and a Transport for it.
// The ssh binary arguments are filled only when ssh is installed.
func newSSHWorld(tb testing.TB) *sshWorld {
	tb.Helper()
	priv, signer := newKeyPair(tb)
	srv := sshtest.Start(tb, sshtest.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	tr := sshx.New(sshx.Config{Signer: signer})
	tb.Cleanup(func() { _ = tr.Close() })
	port := srv.Addr().(*net.TCPAddr).Port
	w := &sshWorld{srv: srv, tr: tr, signer: signer, ep: agentlab.Endpoint{VMID: 1,
		Host: "127.0.0.1", Port: port, User: "agent", HostKey: sshx.FormatKey(srv.HostKey())}}
	if bin, err := exec.LookPath("ssh"); err == nil {
		w.sshArgs = sshBinaryArgs(tb, bin, priv, srv.HostKey(), port)
	}
	raw, err := ssh.Dial("tcp", srv.Addr().String(), &ssh.ClientConfig{User: "agent",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey())})
	check(tb, err)
	tb.Cleanup(func() { _ = raw.Close() })
	w.raw = raw
	return w
}

// sshBinaryArgs writes the key and known_hosts files and returns the
// command line of one /usr/bin/ssh call, without the remote command. No
// config file, no agent, no multiplexing: one process and one handshake per
// command, as the predecessor ran it.
func sshBinaryArgs(tb testing.TB, bin string, priv ed25519.PrivateKey, hostKey ssh.PublicKey,
	port int) []string {
	tb.Helper()
	dir := tb.TempDir()
	keyFile, knownHosts := filepath.Join(dir, "id"), filepath.Join(dir, "known_hosts")
	block, err := ssh.MarshalPrivateKey(priv, "")
	check(tb, err)
	check(tb, os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600))
	line := "[127.0.0.1]:" + strconv.Itoa(port) + " " + sshx.FormatKey(hostKey) + "\n"
	check(tb, os.WriteFile(knownHosts, []byte(line), 0o600))
	return []string{bin, "-F", "/dev/null", "-i", keyFile, "-p", strconv.Itoa(port),
		"-o", "UserKnownHostsFile=" + knownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ControlMaster=no",
		"-o", "ControlPath=none", "agent@127.0.0.1"}
}

// execPooled runs `true` on the Transport's pooled connection.
func (w *sshWorld) execPooled(ctx context.Context) error {
	res, err := w.tr.Exec(ctx, w.ep, agentlab.ExecRequest{Argv: []string{"true"}})
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("true exited %d", res.ExitCode)
	}
	return err
}

// execRaw runs `true` in a new session of a plain x/crypto/ssh client: the
// floor a pooled exec can reach.
func (w *sshWorld) execRaw(context.Context) error {
	sess, err := w.raw.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	return sess.Run("exec true")
}

// execBinary runs `true` by spawning the ssh binary.
func (w *sshWorld) execBinary(ctx context.Context) error {
	args := append(slices.Clone(w.sshArgs[1:]), "true")
	out, err := exec.CommandContext(ctx, w.sshArgs[0], args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ssh: %w: %s", err, out)
	}
	return nil
}

// execFunc is one way of running `true`.
type execFunc func(ctx context.Context) error

// ways returns the SDK and baseline ways, skipping b when there is no ssh
// binary. Each is run once, untimed, so that the pooled connection exists.
func (w *sshWorld) ways(b *testing.B) map[string]execFunc {
	if w.sshArgs == nil {
		b.Skip("no ssh binary")
	}
	out := map[string]execFunc{"Pooled": w.execPooled, "SSHBinary": w.execBinary,
		"RawSession": w.execRaw}
	for name, f := range out {
		if err := f(context.Background()); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
	}
	return out
}

// BenchmarkExec runs `true` on sshx's pooled connection (Pooled), by
// spawning /usr/bin/ssh per command (SSHBinary), and in a session of a plain
// x/crypto/ssh connection (RawSession, the floor), against one sshtest
// server.
func BenchmarkExec(b *testing.B) {
	w := newSSHWorld(b)
	ways := w.ways(b)
	for _, name := range []string{"Pooled", "SSHBinary", "RawSession"} {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				if err := ways[name](ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkExecLatency runs 1,000 sequential `true` per iteration on the
// pooled connection and reports the 50th and 99th percentile latency.
func BenchmarkExecLatency(b *testing.B) {
	w := newSSHWorld(b)
	ctx := context.Background()
	check(b, w.execPooled(ctx))
	var all []time.Duration
	for b.Loop() {
		for range 1000 {
			start := time.Now()
			if err := w.execPooled(ctx); err != nil {
				b.Fatal(err)
			}
			all = append(all, time.Since(start))
		}
	}
	b.ReportMetric(usec(percentile(all, 50)), "p50-µs")
	b.ReportMetric(usec(percentile(all, 99)), "p99-µs")
}

// BenchmarkExecConcurrent runs `true` from 16 goroutines at once, 25 each
// per iteration, on one pooled connection (Pooled) and with one ssh process
// each (SSHBinary), and reports commands per second.
func BenchmarkExecConcurrent(b *testing.B) {
	const workers, each = 16, 25
	w := newSSHWorld(b)
	ways := w.ways(b)
	for _, name := range []string{"Pooled", "SSHBinary"} {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			var busy time.Duration
			n := 0
			for b.Loop() {
				start := time.Now()
				if err := fanOut(ctx, workers, each, ways[name]); err != nil {
					b.Fatal(err)
				}
				busy += time.Since(start)
				n += workers * each
			}
			b.ReportMetric(float64(n)/busy.Seconds(), "execs/s")
		})
	}
}

// fanOut runs f each times in each of workers goroutines and returns the
// first error.
func fanOut(ctx context.Context, workers, each int, f execFunc) error {
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				if err := f(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// percentile returns the p-th percentile of ds (nearest rank); ds is
// sorted in place.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds))*p/100+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func usec(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// BenchmarkSandboxExec runs `true` in a sandbox of the real path (SQLite,
// pvesim, sshx through the jump host) through Sandbox.Exec, which re-reads
// the record and notes activity first (Sandbox), and through the Transport
// on the same endpoint (Transport), to show what the Manager adds per exec.
func BenchmarkSandboxExec(b *testing.B) {
	w := newWorld(b, worldOptions{})
	ctx := context.Background()
	sb, err := w.m.Create(ctx, agentlab.CreateRequest{Profile: "bench"})
	check(b, err)
	ep, err := sb.Endpoint(ctx)
	check(b, err)
	req := agentlab.ExecRequest{Argv: []string{"true"}}
	ways := map[string]func() error{
		"Sandbox":   func() error { _, err := sb.Exec(ctx, req); return err },
		"Transport": func() error { _, err := w.guest.Exec(ctx, ep, req); return err },
	}
	for _, name := range []string{"Sandbox", "Transport"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if err := ways[name](); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
