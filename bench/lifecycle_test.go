package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
)

// lifecycleOps names the steps of one lifecycle, in order. Each is reported
// as "<op>-ns/op"; ns/op is the whole lifecycle.
var lifecycleOps = []string{"create", "pause", "resume", "snapshot", "restore", "destroy"}

// step is one timed operation of a lifecycle.
type step func(ctx context.Context) error

// lifecycleFunc returns the steps of one fresh lifecycle.
type lifecycleFunc func() []step

// BenchmarkLifecycle runs create (to RUNNING, SSH answering), pause, resume,
// snapshot (disk only), restore (rollback, start, SSH answering again) and
// destroy through the Manager, then the same work with bare go-proxmox
// calls, both against one simulator whose tasks finish at once.
func BenchmarkLifecycle(b *testing.B) {
	w := newWorld(b, worldOptions{})
	bare := newBareClient(b, w)
	b.Run("SDK", func(b *testing.B) { runLifecycle(b, sdkLifecycle(w.m)) })
	b.Run("Bare", func(b *testing.B) { runLifecycle(b, bareLifecycle(bare)) })
}

// runLifecycle runs one untimed warm-up lifecycle (connections, caches),
// then lifecycles until the benchmark time is up, timing each step.
func runLifecycle(b *testing.B, next lifecycleFunc) {
	ctx := context.Background()
	if _, err := runSteps(ctx, next()); err != nil {
		b.Fatal(err)
	}
	sums := make([]time.Duration, len(lifecycleOps))
	n := 0
	for b.Loop() {
		d, err := runSteps(ctx, next())
		if err != nil {
			b.Fatal(err)
		}
		for i := range d {
			sums[i] += d[i]
		}
		n++
	}
	for i, op := range lifecycleOps {
		b.ReportMetric(float64(sums[i].Nanoseconds())/float64(n), op+"-ns/op")
	}
}

// runSteps runs the steps in order and returns how long each took.
func runSteps(ctx context.Context, steps []step) ([]time.Duration, error) {
	out := make([]time.Duration, len(steps))
	for i, s := range steps {
		start := time.Now()
		if err := s(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", lifecycleOps[i], err)
		}
		out[i] = time.Since(start)
	}
	return out, nil
}

// sdkLifecycle drives one sandbox through the Manager, letting it pick the
// VMID as a caller would.
func sdkLifecycle(m *agentlab.Manager) lifecycleFunc {
	return func() []step {
		var sb *agentlab.Sandbox
		return []step{
			func(ctx context.Context) (err error) {
				sb, err = m.Create(ctx, agentlab.CreateRequest{Profile: "bench"})
				return err
			},
			func(ctx context.Context) error { return sb.Pause(ctx) },
			func(ctx context.Context) error { return sb.Resume(ctx) },
			func(ctx context.Context) error { return sb.SaveSnapshot(ctx, "s1", nil) },
			func(ctx context.Context) error { return sb.RestoreSnapshot(ctx, "s1", nil) },
			func(ctx context.Context) error { return sb.Destroy(ctx) },
		}
	}
}

// bareVMIDs hands out the bare client's VMIDs, away from the SDK's range.
var bareVMIDs atomic.Int64

func init() { bareVMIDs.Store(20000) }

// bareLifecycle does the same work with bare calls.
func bareLifecycle(c *bareClient) lifecycleFunc {
	return func() []step {
		var v *bareVM
		vmid := int(bareVMIDs.Add(1))
		return []step{
			func(ctx context.Context) (err error) {
				v, err = c.create(ctx, vmid)
				return err
			},
			func(ctx context.Context) error { return c.pause(ctx, v) },
			func(ctx context.Context) error { return c.resume(ctx, v) },
			func(ctx context.Context) error { return c.snapshot(ctx, v, "s1") },
			func(ctx context.Context) error { return c.restore(ctx, v, "s1") },
			func(ctx context.Context) error { return c.destroy(ctx, v) },
		}
	}
}
