package bench

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/proxmox/pvesim"
)

// BenchmarkLifecycleBreakdown is a diagnostic, not part of the table: it
// runs the lifecycle of BenchmarkLifecycle with the Manager's Store,
// Hypervisor and Guest wrapped in timers, and the simulator counting API
// requests, and reports per operation the time spent in each layer and the
// number of store writes, store reads and API requests. Whatever is left of
// an operation's time is the Manager's own work.
func BenchmarkLifecycleBreakdown(b *testing.B) {
	reqs := &reqCounter{}
	w := newWorld(b, worldOptions{sim: pvesim.Config{Logger: slog.New(reqs)}})
	st := &timedStore{Store: w.store}
	hv := &timedHV{Hypervisor: w.hv}
	g := &timedGuest{Guest: w.guest}
	m := newManager(b, w.pubKey, st, hv, g)
	bare := newBareClient(b, w)
	layers := []*meter{&st.write, &st.read, &hv.meter, &g.meter, &reqs.meter}
	b.Run("SDK", func(b *testing.B) { runBreakdown(b, sdkLifecycle(m), layers) })
	b.Run("Bare", func(b *testing.B) { runBreakdown(b, bareLifecycle(bare), layers) })
}

// runBreakdown runs lifecycles and reports each step's share of each layer.
func runBreakdown(b *testing.B, next lifecycleFunc, layers []*meter) {
	ctx := context.Background()
	if _, err := runSteps(ctx, next()); err != nil {
		b.Fatal(err)
	}
	type acc struct{ n, ns [5]int64 }
	sums := make([]acc, len(lifecycleOps))
	iters := 0
	for b.Loop() {
		for i, s := range next() {
			before := snapshotMeters(layers)
			if err := s(ctx); err != nil {
				b.Fatalf("%s: %v", lifecycleOps[i], err)
			}
			after := snapshotMeters(layers)
			for l := range layers {
				sums[i].n[l] += after[l].n - before[l].n
				sums[i].ns[l] += after[l].ns - before[l].ns
			}
		}
		iters++
	}
	names := []string{"store-write", "store-read", "hv", "guest", "api-req"}
	for i, op := range lifecycleOps {
		for l, name := range names {
			b.ReportMetric(float64(sums[i].n[l])/float64(iters), op+"-"+name+"/op")
			if name != "api-req" {
				b.ReportMetric(float64(sums[i].ns[l])/float64(iters), op+"-"+name+"-ns/op")
			}
		}
	}
}

// meter counts calls and their total time.
type meter struct{ n, ns atomic.Int64 }

func (m *meter) since(start time.Time) {
	m.n.Add(1)
	m.ns.Add(int64(time.Since(start)))
}

type meterValue struct{ n, ns int64 }

func snapshotMeters(ms []*meter) []meterValue {
	out := make([]meterValue, len(ms))
	for i, m := range ms {
		out[i] = meterValue{m.n.Load(), m.ns.Load()}
	}
	return out
}

// reqCounter is a slog handler that counts the simulator's "api request"
// records.
type reqCounter struct{ meter }

func (c *reqCounter) Enabled(context.Context, slog.Level) bool { return true }

func (c *reqCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "api request" {
		c.n.Add(1)
	}
	return nil
}

func (c *reqCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *reqCounter) WithGroup(string) slog.Handler      { return c }

// timedStore times the Store calls the lifecycle makes.
type timedStore struct {
	agentlab.Store
	write, read meter
}

func (s *timedStore) CreateSandbox(ctx context.Context, rec *agentlab.SandboxRecord) error {
	defer s.write.since(time.Now())
	return s.Store.CreateSandbox(ctx, rec)
}

func (s *timedStore) UpdateSandbox(ctx context.Context, vmid int,
	fn func(*agentlab.SandboxRecord) error) (agentlab.SandboxRecord, error) {
	defer s.write.since(time.Now())
	return s.Store.UpdateSandbox(ctx, vmid, fn)
}

func (s *timedStore) UpdateSandboxEvents(ctx context.Context, vmid int,
	fn func(*agentlab.SandboxRecord) ([]agentlab.Event, error)) (
	agentlab.SandboxRecord, []agentlab.Event, error) {
	defer s.write.since(time.Now())
	return s.Store.UpdateSandboxEvents(ctx, vmid, fn)
}

func (s *timedStore) AppendEvent(ctx context.Context, ev *agentlab.Event) error {
	defer s.write.since(time.Now())
	return s.Store.AppendEvent(ctx, ev)
}

func (s *timedStore) GetSandbox(ctx context.Context, vmid int) (agentlab.SandboxRecord, error) {
	defer s.read.since(time.Now())
	return s.Store.GetSandbox(ctx, vmid)
}

func (s *timedStore) ListSandboxes(ctx context.Context,
	f agentlab.SandboxFilter) ([]agentlab.SandboxRecord, error) {
	defer s.read.since(time.Now())
	return s.Store.ListSandboxes(ctx, f)
}

// timedHV times every Hypervisor call.
type timedHV struct {
	agentlab.Hypervisor
	meter
}

func (h *timedHV) Provision(ctx context.Context, spec agentlab.ProvisionSpec) (agentlab.VM, error) {
	defer h.since(time.Now())
	return h.Hypervisor.Provision(ctx, spec)
}

func (h *timedHV) Start(ctx context.Context, vmid int) error {
	defer h.since(time.Now())
	return h.Hypervisor.Start(ctx, vmid)
}

func (h *timedHV) Stop(ctx context.Context, vmid int, o agentlab.StopOptions) error {
	defer h.since(time.Now())
	return h.Hypervisor.Stop(ctx, vmid, o)
}

func (h *timedHV) Suspend(ctx context.Context, vmid int) error {
	defer h.since(time.Now())
	return h.Hypervisor.Suspend(ctx, vmid)
}

func (h *timedHV) Resume(ctx context.Context, vmid int) error {
	defer h.since(time.Now())
	return h.Hypervisor.Resume(ctx, vmid)
}

func (h *timedHV) Destroy(ctx context.Context, vmid int) error {
	defer h.since(time.Now())
	return h.Hypervisor.Destroy(ctx, vmid)
}

func (h *timedHV) Status(ctx context.Context, vmid int) (agentlab.VM, error) {
	defer h.since(time.Now())
	return h.Hypervisor.Status(ctx, vmid)
}

func (h *timedHV) GuestInfo(ctx context.Context, vmid int) (agentlab.GuestInfo, error) {
	defer h.since(time.Now())
	return h.Hypervisor.GuestInfo(ctx, vmid)
}

func (h *timedHV) Snapshot(ctx context.Context, vmid int, spec agentlab.SnapshotSpec) error {
	defer h.since(time.Now())
	return h.Hypervisor.Snapshot(ctx, vmid, spec)
}

func (h *timedHV) Rollback(ctx context.Context, vmid int, name string) error {
	defer h.since(time.Now())
	return h.Hypervisor.Rollback(ctx, vmid, name)
}

// timedGuest times WaitReady, the only Guest call of the lifecycle.
type timedGuest struct {
	agentlab.Guest
	meter
}

func (g *timedGuest) WaitReady(ctx context.Context, ep agentlab.Endpoint) error {
	defer g.since(time.Now())
	return g.Guest.WaitReady(ctx, ep)
}
