package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // the driver store uses; named here for the bulk load

	"github.com/agentlab-sdk/agentlab"
	"github.com/agentlab-sdk/agentlab/store"
)

// Sizes of BenchmarkScale.
const (
	scaleSandboxes = 10_000
	scaleDestroyed = 2_000 // of which destroyed history
	scaleEvents    = 1_000_000
	replayTail     = 10_000 // events replayed from an ID
)

// BenchmarkScale loads 10,000 sandbox records (8,000 live, 2,000 destroyed
// history) and 1,000,000 events straight into a SQLite file made by
// store.Open, then measures on a Manager over that store and a fake
// hypervisor that lists a VM for every live record in the matching power
// state:
//
//   - reconcile: one Reconcile pass with Apply (it finds nothing to fix);
//   - reap: one Reap pass (no lease has expired);
//   - status: Manager.Status (counts and the ten latest failures);
//   - list: List of RUNNING sandboxes with label team=t3 (400 records);
//   - replay: Events after the ID 10,000 before the last;
//   - replay-vmid: Events of one sandbox (100 events).
//
// "memory" reports the Go heap in use after a GC with the Manager open and
// every pass above run once, and the process's resident set.
func BenchmarkScale(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "scale.db")
	loadStart := time.Now()
	bulkLoad(b, path)
	b.Logf("bulk load of %d sandboxes and %d events: %v", scaleSandboxes, scaleEvents,
		time.Since(loadStart).Round(time.Millisecond))
	st, err := store.Open(ctx, path, nil)
	check(b, err)
	b.Cleanup(func() { _ = st.Close() })
	m := newScaleManager(b, st)
	passes := scalePasses(m)
	for _, p := range passes {
		check(b, p.run(ctx))
	}
	for _, p := range passes {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := p.run(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("memory", func(b *testing.B) {
		for b.Loop() {
			runtime.GC()
		}
		reportMemory(b, m)
	})
}

// scalePass is one measured pass; run checks its result.
type scalePass struct {
	name string
	run  func(ctx context.Context) error
}

func scalePasses(m *agentlab.Manager) []scalePass {
	want := func(what string, got, n int) error {
		if got != n {
			return fmt.Errorf("%s: got %d, want %d", what, got, n)
		}
		return nil
	}
	return []scalePass{
		{"reconcile", func(ctx context.Context) error {
			rep, err := m.Reconcile(ctx, agentlab.ReconcileOptions{Apply: true})
			if err != nil {
				return err
			}
			return want("findings", len(rep.Findings), 0)
		}},
		{"reap", func(ctx context.Context) error {
			rep, err := m.Reap(ctx)
			if err != nil {
				return err
			}
			return want("reaped", len(rep.Destroyed)+len(rep.Stopped), 0)
		}},
		{"status", func(ctx context.Context) error {
			st, err := m.Status(ctx)
			if err != nil {
				return err
			}
			return want("recent failures", len(st.RecentFailures), 10)
		}},
		{"list", func(ctx context.Context) error {
			recs, err := m.List(ctx, agentlab.SandboxFilter{
				States: []agentlab.State{agentlab.StateRunning},
				Labels: map[string]string{"team": "t3"}})
			if err != nil {
				return err
			}
			return want("listed", len(recs), runningInTeam3())
		}},
		{"replay", func(ctx context.Context) error {
			evs, err := m.Events(ctx, agentlab.EventFilter{AfterID: scaleEvents - replayTail})
			if err != nil {
				return err
			}
			return want("replayed", len(evs), replayTail)
		}},
		{"replay-vmid", func(ctx context.Context) error {
			evs, err := m.Events(ctx, agentlab.EventFilter{VMID: 1042})
			if err != nil {
				return err
			}
			return want("replayed", len(evs), scaleEvents/scaleSandboxes)
		}},
	}
}

// reportMemory reports the heap in use and the resident set, keeping m
// reachable until both are read.
func reportMemory(b *testing.B, m *agentlab.Manager) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-inuse-MB")
	if rss, ok := residentMB(); ok {
		b.ReportMetric(rss, "rss-MB")
	}
	runtime.KeepAlive(m)
}

// residentMB reads VmRSS from /proc/self/status.
func residentMB() (float64, bool) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err == nil
		}
	}
	return 0, false
}

// newScaleManager builds a Manager over st and a hypervisor listing the
// live records' VMs. The initial reconcile is skipped: it is measured.
func newScaleManager(b *testing.B, st agentlab.Store) *agentlab.Manager {
	ctx := context.Background()
	recs, err := st.ListSandboxes(ctx, agentlab.SandboxFilter{States: liveStates()})
	check(b, err)
	hv := newListHV(recs)
	profiles, err := agentlab.ParseProfiles("bench.yaml", []byte(benchProfile))
	check(b, err)
	set, err := agentlab.NewProfileSet(profiles...)
	check(b, err)
	m, err := agentlab.New(ctx, agentlab.Config{Store: st, Hypervisor: hv, Profiles: set,
		ReapInterval: -1, IdleInterval: -1, ReconcileInterval: -1,
		SkipInitialReconcile: true, ArtifactDir: b.TempDir()})
	check(b, err)
	b.Cleanup(func() { _ = m.Close(ctx) })
	return m
}

// bulkLoad creates the schema with store.Open, then inserts the rows in two
// transactions with prepared statements on a connection of its own.
func bulkLoad(b *testing.B, path string) {
	st, err := store.Open(context.Background(), path, nil)
	check(b, err)
	check(b, st.Close())
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous=OFF")
	check(b, err)
	defer db.Close()
	now := time.Now()
	check(b, insertAll(db, insertSandbox, scaleSandboxes, func(i int) []any {
		return sandboxRow(i, now)
	}))
	check(b, insertAll(db, insertEvent, scaleEvents, func(i int) []any {
		return eventRow(i, now)
	}))
}

const insertSandbox = `INSERT INTO sandboxes (vmid, name, profile, state, node, ip,
	network_mode, labels, login_user, on_expiry, lease_expires, last_activity, owner,
	created_at, updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`

const insertEvent = `INSERT INTO events (ts, kind, vmid, msg, data, schema_version)
	VALUES (?, ?, ?, ?, ?, 1)`

// insertAll runs query n times in one transaction.
func insertAll(db *sql.DB, query string, n int, args func(i int) []any) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	stmt, err := tx.Prepare(query)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for i := range n {
		if _, err := stmt.Exec(args(i)...); err != nil {
			return fmt.Errorf("insert row %d: %w", i, err)
		}
	}
	return tx.Commit()
}

// scaleState spreads the sandboxes: the last 2,000 are destroyed history,
// the others RUNNING, READY, STOPPED and SUSPENDED in the ratio 5:1:1:1.
func scaleState(i int) agentlab.State {
	if i >= scaleSandboxes-scaleDestroyed {
		return agentlab.StateDestroyed
	}
	return []agentlab.State{agentlab.StateRunning, agentlab.StateRunning,
		agentlab.StateRunning, agentlab.StateRunning, agentlab.StateRunning,
		agentlab.StateReady, agentlab.StateStopped, agentlab.StateSuspended}[i%8]
}

// runningInTeam3 counts the RUNNING sandboxes labelled team=t3.
func runningInTeam3() int {
	n := 0
	for i := range scaleSandboxes {
		if scaleState(i) == agentlab.StateRunning && i%10 == 3 {
			n++
		}
	}
	return n
}

// sandboxRow is sandbox i: VMID 1000+i, four profiles, ten teams, a lease
// an hour or more away (none for every fourth), an address when it runs.
func sandboxRow(i int, now time.Time) []any {
	state := scaleState(i)
	ip := ""
	if state == agentlab.StateRunning || state == agentlab.StateReady {
		ip = fmt.Sprintf("10.77.%d.%d", i/250, i%250+2)
	}
	var lease any
	if i%4 != 0 && state != agentlab.StateDestroyed {
		lease = now.Add(time.Hour + time.Duration(i)*time.Second).UnixNano()
	}
	labels := fmt.Sprintf(`{"team":"t%d","env":"ci"}`, i%10)
	created := now.Add(-time.Duration(scaleSandboxes-i) * time.Minute).UnixNano()
	return []any{1000 + i, fmt.Sprintf("sb-%d", i), fmt.Sprintf("p%d", i%4), string(state),
		"pve1", ip, "nat", labels, "agent", "destroy", lease, now.UnixNano(), owner,
		created, created}
}

// eventKinds is the mix of event kinds: one in a thousand is a failure.
var eventKinds = []string{agentlab.EventSandboxState, agentlab.EventSandboxState,
	agentlab.EventSandboxState, agentlab.EventSandboxReady, agentlab.EventSandboxSSHReady,
	agentlab.EventLeaseRenewed, agentlab.EventJobLog, agentlab.EventSandboxPauseDone}

// eventRow is event i, for sandbox 1000+i%10000.
func eventRow(i int, now time.Time) []any {
	kind, msg := eventKinds[i%len(eventKinds)], ""
	data, _ := json.Marshal(map[string]any{"from_state": "BOOTING", "to_state": "READY",
		"duration_ms": i % 5000})
	if i%1000 == 999 {
		kind, msg = agentlab.EventSandboxProvisionFail, "provision: clone: simulated failure"
		data = []byte(`{"error":"provision: clone: simulated failure"}`)
	}
	ts := now.Add(-time.Duration(scaleEvents-i) * time.Second).UnixNano()
	return []any{ts, kind, 1000 + i%scaleSandboxes, msg, string(data)}
}

// listHV is a read-only hypervisor for the scale benchmark: it reports one
// VM per live record, in the record's power state, and nothing else.
type listHV struct {
	agentlab.Hypervisor // nil: any other call panics, and none is expected
	vms                 map[int]agentlab.VM
	list                []agentlab.VM
}

func newListHV(recs []agentlab.SandboxRecord) *listHV {
	h := &listHV{vms: make(map[int]agentlab.VM, len(recs))}
	for _, r := range recs {
		p := agentlab.PowerRunning
		switch r.State {
		case agentlab.StateStopped:
			p = agentlab.PowerStopped
		case agentlab.StateSuspended:
			p = agentlab.PowerPaused
		}
		vm := agentlab.VM{VMID: r.VMID, Node: "pve1", Name: r.Name, Power: p, Owner: owner}
		h.vms[r.VMID] = vm
		h.list = append(h.list, vm)
	}
	return h
}

// List returns every VM.
func (h *listHV) List(context.Context, string) ([]agentlab.VM, error) {
	return append([]agentlab.VM(nil), h.list...), nil
}

// Status returns the VM or ErrNotFound.
func (h *listHV) Status(_ context.Context, vmid int) (agentlab.VM, error) {
	vm, ok := h.vms[vmid]
	if !ok {
		return vm, fmt.Errorf("vm %d: %w", vmid, agentlab.ErrNotFound)
	}
	return vm, nil
}
