package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/agentlabtest"
	"github.com/agentlab-sdk/agentlab/store"
)

// subscribers is how many subscriptions BenchmarkEvents opens.
const subscribers = 10

// BenchmarkEvents measures the publisher: each iteration renews a lease
// (one store update, one stored and published event) on a Manager with an
// in-memory store and a fake hypervisor, while 10 subscriptions are open, of
// which 0, 5 or 10 never read. The others drain their channel as fast as
// they can. It reports the renewal's 50th and 99th percentile latency and
// the events each never-reading subscriber dropped.
func BenchmarkEvents(b *testing.B) {
	for _, slow := range []int{0, 5, 10} {
		b.Run(fmt.Sprintf("slow=%d", slow), func(b *testing.B) { runPublish(b, slow) })
	}
}

func runPublish(b *testing.B, slow int) {
	ctx := context.Background()
	m, sb := newEventManager(b)
	subs, stop := subscribe(b, m, slow)
	defer stop()
	for range 1000 { // fill the never-reading subscribers' buffers
		check(b, sb.RenewLease(ctx, time.Hour))
	}
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		if err := sb.RenewLease(ctx, time.Hour); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.ReportMetric(float64(percentile(lat, 50).Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(percentile(lat, 99).Nanoseconds()), "p99-ns")
	if slow > 0 {
		b.ReportMetric(float64(subs[0].Dropped()), "dropped/slow-sub")
	}
}

// newEventManager returns a Manager on a memory store and a fake hypervisor,
// without a guest, and one RUNNING sandbox.
func newEventManager(b *testing.B) (*agentlab.Manager, *agentlab.Sandbox) {
	hv, err := agentlabtest.NewHypervisor(agentlabtest.HypervisorOptions{})
	check(b, err)
	b.Cleanup(func() { _ = hv.Close() })
	m := newManager(b, "", store.NewMemory(nil), hv, nil)
	sb, err := m.Create(context.Background(), agentlab.CreateRequest{Profile: "bench"})
	check(b, err)
	return m, sb
}

// subscribe opens the subscriptions, the first slow of which never read;
// stop closes them all and waits for the readers.
func subscribe(b *testing.B, m *agentlab.Manager, slow int) ([]*agentlab.Subscription, func()) {
	var subs []*agentlab.Subscription
	var wg sync.WaitGroup
	for i := range subscribers {
		s, err := m.Subscribe(agentlab.SubscribeOptions{})
		check(b, err)
		subs = append(subs, s)
		if i >= slow {
			wg.Go(func() {
				for range s.C() {
				}
			})
		}
	}
	return subs, func() {
		for _, s := range subs {
			s.Close()
		}
		wg.Wait()
	}
}
