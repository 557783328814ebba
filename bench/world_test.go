package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
	"github.com/agentlab-sdk/agentlab/sshx"
	"github.com/agentlab-sdk/agentlab/store"
)

// Fixed facts of every simulated world.
const (
	templateVMID = 9000
	guestCIDR    = "10.77.0.0/16"
	owner        = "agentlab"

	// pollInterval is the task poll interval of both the SDK and the bare
	// client, so that neither waits longer for a task than the other.
	pollInterval = time.Millisecond
)

// benchProfile is the profile every benchmark creates from: the default
// network mode (nat) and no "clean" snapshot, so that create is clone,
// configure, firewall, start and ready, and the snapshot is measured on its
// own.
const benchProfile = `name: bench
template_vmid: 9000
behavior:
  clean_snapshot: false
`

// worldOptions tunes newWorld. The zero value is the lifecycle world:
// tasks finish at once, the SDK's default clone limit and fast retries.
type worldOptions struct {
	sim        pvesim.Config
	cloneLimit int           // proxmox.Config.CloneConcurrency; 0 = default
	poll       time.Duration // task poll interval; 0 = pollInterval
	retryMin   time.Duration // 0 = 5 ms
	retryMax   time.Duration // 0 = 50 ms
	httpClient *http.Client  // proxmox.Config.HTTPClient
}

// world is the whole real path: a SQLite file, go-proxmox over HTTPS to the
// simulator, and SSH to the guests through the simulator's jump host.
type world struct {
	sim    *pvesim.Server
	hv     *proxmox.Hypervisor
	store  *store.SQLite
	guest  *sshx.Transport
	m      *agentlab.Manager
	signer ssh.Signer
	pubKey string // the signer's key in authorized_keys format
}

// newWorld starts a simulator with one template and builds a Manager on it.
// Everything is closed by tb's cleanup.
func newWorld(tb testing.TB, o worldOptions) *world {
	tb.Helper()
	ctx := context.Background()
	signer := newSigner(tb)
	o.sim.JumpAuthorizedKeys = append(o.sim.JumpAuthorizedKeys, signer.PublicKey())
	w := &world{signer: signer, pubKey: string(ssh.MarshalAuthorizedKey(signer.PublicKey()))}
	w.sim = pvesim.Start(tb, o.sim)
	check(tb, w.sim.AddTemplate(w.sim.Nodes()[0], templateVMID, "tmpl-agent", nil))
	w.hv = newHypervisor(tb, w.sim, o)
	st, err := store.Open(ctx, filepath.Join(tb.TempDir(), "agentlab.db"), nil)
	check(tb, err)
	tb.Cleanup(func() { _ = st.Close() })
	w.store = st
	w.guest = newJumpTransport(w.sim, signer)
	tb.Cleanup(func() { _ = w.guest.Close() })
	w.m = newManager(tb, w.pubKey, st, w.hv, w.guest)
	return w
}

// newHypervisor connects the proxmox adapter to sim; tb's cleanup closes
// its idle connections.
func newHypervisor(tb testing.TB, sim *pvesim.Server, o worldOptions) *proxmox.Hypervisor {
	tb.Helper()
	hv, err := proxmox.New(context.Background(), proxmox.Config{
		URL: sim.URL(), TokenID: sim.TokenID(), TokenSecret: sim.TokenSecret(),
		Fingerprint: sim.Fingerprint(), GuestCIDR: netip.MustParsePrefix(guestCIDR),
		CloneConcurrency: o.cloneLimit, PollInterval: orDur(o.poll, pollInterval),
		RetryMin: orDur(o.retryMin, 5*time.Millisecond),
		RetryMax: orDur(o.retryMax, 50*time.Millisecond), HTTPClient: o.httpClient,
	})
	check(tb, err)
	tb.Cleanup(func() { _ = hv.Close() })
	return hv
}

// newJumpTransport returns an sshx Transport reaching guests through sim's
// jump host.
func newJumpTransport(sim *pvesim.Server, signer ssh.Signer) *sshx.Transport {
	addr, jumpKey, jumpUser := sim.JumpHost()
	return sshx.New(sshx.Config{Signer: signer, Jump: &sshx.JumpHost{Addr: addr,
		User: jumpUser, HostKey: sshx.FormatKey(jumpKey)}})
}

// newManager builds a Manager over st, hv and g (which may be nil) that
// authorizes pubKey (unless empty) in its guests, with the background loops
// off.
func newManager(tb testing.TB, pubKey string, st agentlab.Store, hv agentlab.Hypervisor,
	g agentlab.Guest) *agentlab.Manager {
	tb.Helper()
	profiles, err := agentlab.ParseProfiles("bench.yaml", []byte(benchProfile))
	check(tb, err)
	set, err := agentlab.NewProfileSet(profiles...)
	check(tb, err)
	var keys []string
	if pubKey != "" {
		keys = []string{pubKey}
	}
	m, err := agentlab.New(context.Background(), agentlab.Config{
		Store: st, Hypervisor: hv, Guest: g, Profiles: set,
		SSHPublicKeys: keys, ArtifactDir: tb.TempDir(),
		ReapInterval: -1, IdleInterval: -1, ReconcileInterval: -1,
	})
	check(tb, err)
	tb.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

// newSigner returns a fresh ed25519 client key.
func newSigner(tb testing.TB) ssh.Signer {
	tb.Helper()
	_, s := newKeyPair(tb)
	return s
}

// newKeyPair returns a fresh ed25519 private key and its signer.
func newKeyPair(tb testing.TB) (ed25519.PrivateKey, ssh.Signer) {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	check(tb, err)
	signer, err := ssh.NewSignerFromKey(priv)
	check(tb, err)
	return priv, signer
}

func orDur(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// check fails tb on a non-nil error.
func check(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
