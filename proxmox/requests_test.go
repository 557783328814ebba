package proxmox_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
	px "github.com/luthermonson/go-proxmox"
	"github.com/stretchr/testify/require"
)

// reqLog is a slog handler that records the simulator's "api request"
// records as "METHOD /path".
type reqLog struct {
	mu   sync.Mutex
	reqs []string
}

func (l *reqLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *reqLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *reqLog) WithGroup(string) slog.Handler            { return l }

func (l *reqLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "api request" {
		return nil
	}
	var method, path string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "method":
			method = a.Value.String()
		case "path":
			path = a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, method+" "+path)
	return nil
}

// take returns the requests recorded since the last take.
func (l *reqLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.reqs
	l.reqs = nil
	return out
}

// splitPolls separates task status polls, whose number depends on timing,
// from the other requests, and counts the distinct tasks polled.
func splitPolls(reqs []string) (other []string, tasks int) {
	seen := map[string]bool{}
	for _, r := range reqs {
		if strings.Contains(r, "/tasks/") && strings.HasSuffix(r, "/status") {
			if !seen[r] {
				seen[r] = true
				tasks++
			}
			continue
		}
		other = append(other, r)
	}
	return other, tasks
}

// TestRequestCounts guards the number of API requests a create and a destroy
// make (task polls apart, which depend on timing; the tasks polled are
// counted). The numbers are the ones measured when the reads were cut; a
// change that raises them should be deliberate.
func TestRequestCounts(t *testing.T) {
	log := &reqLog{}
	srv := startSim(t, pvesim.Config{Logger: slog.New(log)})
	enableDatacenterFirewall(t, srv)
	hv := newHV(t, srv, nil)
	ctx := testCtx(t)

	steps := []struct {
		name      string
		run       func() error
		max       int // requests other than task polls
		tasks     int // tasks polled
		forbidden []string
	}{
		// /nodes, the vm list, template status and config, the storage
		// list, clone, config, resize, firewall options, 7 rules, read back,
		// datacenter firewall.
		{"first create", func() error {
			_, err := hv.Provision(ctx, spec(600, agentlab.NetworkNAT))
			return err
		}, 18, 3, []string{"GET /nodes/pve1/qemu/600/config"}},
		// The template, storage list and datacenter firewall are cached.
		{"second create", func() error {
			_, err := hv.Provision(ctx, spec(601, agentlab.NetworkNAT))
			return err
		}, 12, 3, []string{"/qemu/9000/config", "/cluster/", "/qemu/601/status/current",
			"GET /nodes/pve1/qemu/601/config", "/firewall/ipset"}},
		{"start", func() error { return hv.Start(ctx, 601) }, 1, 1, nil},
		// stop and delete, no status read.
		{"destroy running", func() error { return hv.Destroy(ctx, 601) }, 2, 2,
			[]string{"/status/current"}},
	}
	log.take()
	for _, st := range steps {
		require.NoError(t, st.run(), st.name)
		reqs := log.take()
		other, tasks := splitPolls(reqs)
		require.LessOrEqual(t, len(other), st.max, "%s made %d requests:\n%s", st.name,
			len(other), strings.Join(other, "\n"))
		require.Equal(t, st.tasks, tasks, "%s: tasks polled", st.name)
		for _, f := range st.forbidden {
			for _, r := range other {
				require.NotContains(t, r, f, "%s", st.name)
			}
		}
	}
}

// TestFailedProvisionDropsCache checks that a failed Provision forgets the
// cached template, so the next one reads it again.
func TestFailedProvisionDropsCache(t *testing.T) {
	log := &reqLog{}
	srv := startSim(t, pvesim.Config{Logger: slog.New(log)})
	hv := newHV(t, srv, nil)
	ctx := testCtx(t)
	_, err := hv.Provision(ctx, spec(610, agentlab.NetworkOff))
	require.NoError(t, err)
	_, err = hv.Provision(ctx, spec(610, agentlab.NetworkOff))
	require.ErrorIs(t, err, agentlab.ErrVMIDConflict)
	log.take()
	_, err = hv.Provision(ctx, spec(611, agentlab.NetworkOff))
	require.NoError(t, err)
	require.Contains(t, log.take(), "GET /nodes/pve1/qemu/9000/config",
		"the template is read again after a failure")
}

// TestNegativeCacheTTLReadsEveryTime checks that CacheTTL < 0 turns the
// cache off.
func TestNegativeCacheTTLReadsEveryTime(t *testing.T) {
	log := &reqLog{}
	srv := startSim(t, pvesim.Config{Logger: slog.New(log)})
	enableDatacenterFirewall(t, srv)
	hv := newHV(t, srv, func(c *proxmox.Config) { c.CacheTTL = -1 })
	ctx := testCtx(t)
	for _, id := range []int{620, 621} {
		log.take()
		_, err := hv.Provision(ctx, spec(id, agentlab.NetworkOff))
		require.NoError(t, err)
		reqs := log.take()
		require.Contains(t, reqs, "GET /nodes/pve1/qemu/9000/config", "vm %d", id)
		require.Contains(t, reqs, "GET /cluster/firewall/options", "vm %d", id)
	}
}

// TestDisabledDatacenterFirewallWarnsFromCache checks that a datacenter
// firewall found off still gives every Provision its warning when the answer
// comes from the cache.
func TestDisabledDatacenterFirewallWarnsFromCache(t *testing.T) {
	log := &reqLog{}
	srv := startSim(t, pvesim.Config{Logger: slog.New(log)})
	hv := newHV(t, srv, nil)
	ctx := testCtx(t)
	for i, id := range []int{625, 626} {
		log.take()
		vm, err := hv.Provision(ctx, spec(id, agentlab.NetworkNAT))
		require.NoError(t, err)
		require.Len(t, vm.Warnings, 1, "vm %d", id)
		require.Contains(t, vm.Warnings[0], "datacenter firewall is disabled")
		read := slices.Contains(log.take(), "GET /cluster/firewall/options")
		require.Equal(t, i == 0, read, "vm %d: read only the first time", id)
	}
}

// TestNet0IsWrittenWhateverTheTemplateHas checks that a template NIC without
// the firewall flag still gives the clone firewall=1, keeps the template's
// VLAN tag and does not reuse the template's MAC.
func TestNet0IsWrittenWhateverTheTemplateHas(t *testing.T) {
	const tmpl = 9200
	srv := startSim(t, pvesim.Config{})
	require.NoError(t, srv.AddTemplate("pve1", tmpl, "nofw", map[string]string{
		"net0": "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,tag=20"}))
	hv := newHV(t, srv, nil)
	for _, id := range []int{630, 631} { // the second from the cached template
		sp := spec(id, agentlab.NetworkNAT)
		sp.Template = tmpl
		_, err := hv.Provision(testCtx(t), sp)
		require.NoError(t, err)
		info, ok := srv.VM(id)
		require.True(t, ok)
		net0 := info.Config["net0"]
		require.Contains(t, net0, "firewall=1")
		require.Contains(t, net0, "tag=20")
		require.Contains(t, net0, "bridge=vmbr0")
		require.NotContains(t, net0, "BC:24:11:AA:BB:CC", "the template's MAC is not reused")
	}
}

// TestFirewallRepairsWhatTheTemplateHad checks the fallback of the firewall
// fast path: a template with rules and the allowlist IP set of its own.
func TestFirewallRepairsWhatTheTemplateHad(t *testing.T) {
	srv := startSim(t, pvesim.Config{})
	ctx := testCtx(t)
	tmpl := rawClient(srv).NodeRef(srv.Nodes()[0]).VirtualMachineRef(templateID)
	require.NoError(t, tmpl.NewFirewallRule(ctx, &px.FirewallRule{Type: "out",
		Action: "ACCEPT", Enable: 1, Comment: "template allows all"}))
	require.NoError(t, tmpl.NewFirewallIPSet(ctx,
		px.FirewallIPSetCreationOption{Name: proxmox.AllowIPSet}))
	require.NoError(t, tmpl.NewFirewallIPSetEntry(ctx, proxmox.AllowIPSet,
		px.FirewallIPSetEntryCreationOption{CIDR: "192.0.2.99"}))
	hv := newHV(t, srv, nil)

	sp := spec(640, agentlab.NetworkAllowlist)
	sp.Network.Allowlist = []string{"203.0.113.7"}
	_, err := hv.Provision(ctx, sp)
	require.NoError(t, err)
	info, _ := srv.VM(640)
	require.Len(t, info.Firewall.Rules, 2)
	for _, r := range info.Firewall.Rules {
		require.NotEqual(t, "template allows all", r.Comment)
	}
	set := info.Firewall.IPSets[proxmox.AllowIPSet]
	require.Len(t, set, 1)
	require.Equal(t, "203.0.113.7", set[0].CIDR)
}

// slotWatch is a slog handler that closes retrying when the Hypervisor logs
// its first clone retry.
type slotWatch struct {
	once     sync.Once
	retrying chan struct{}
}

func (w *slotWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *slotWatch) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *slotWatch) WithGroup(string) slog.Handler            { return w }

func (w *slotWatch) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "proxmox: retrying clone" {
		w.once.Do(func() { close(w.retrying) })
	}
	return nil
}

// TestCloneSlotFreeDuringBackoff checks that a clone backing off from lock
// contention does not hold the node's only clone slot: another Provision
// completes while the first is still retrying.
func TestCloneSlotFreeDuringBackoff(t *testing.T) {
	srv := startSim(t, pvesim.Config{})
	remove := srv.InjectFault(pvesim.Fault{Method: "POST", Path: clonePath, VMID: 650,
		Status: 500, Message: "VM is locked (clone)"})
	t.Cleanup(remove)
	watch := &slotWatch{retrying: make(chan struct{})}
	hv := newHV(t, srv, func(c *proxmox.Config) {
		c.CloneConcurrency = 1
		c.RetryMin, c.RetryMax = 100*time.Millisecond, 200*time.Millisecond
		c.Logger = slog.New(watch)
	})
	ctx := testCtx(t)

	first := make(chan error, 1)
	go func() {
		_, err := hv.Provision(ctx, spec(650, agentlab.NetworkOff))
		first <- err
	}()
	<-watch.retrying
	_, err := hv.Provision(ctx, spec(651, agentlab.NetworkOff))
	require.NoError(t, err, "the second clone got the slot while the first backed off")
	select {
	case err := <-first:
		t.Fatalf("the first Provision ended while its clone was refused: %v", err)
	default:
	}
	remove()
	require.NoError(t, <-first)
	require.ElementsMatch(t, []int{650, 651}, ownedVMs(t, srv))
}
