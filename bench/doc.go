// Package bench holds the benchmarks that measure what the agentlab SDK
// adds on top of the work it drives, side by side with the plainest way of
// doing the same work. It has no API: everything is in _test.go files and
// runs only with -bench.
//
// # What is measured
//
//   - BenchmarkLifecycle: create (to ready), pause, resume, snapshot,
//     restore and destroy through the Manager (SQLite store, go-proxmox over
//     HTTPS to proxmox/pvesim with zero task delay, sshx through the
//     simulator's jump host) against the bare go-proxmox calls and one
//     x/crypto/ssh handshake doing the same work on the same simulator.
//   - BenchmarkExec, BenchmarkExecLatency, BenchmarkExecConcurrent: `true`
//     on sshx's pooled connection against one /usr/bin/ssh process per
//     command, on the same sshtest server. BenchmarkSandboxExec shows what
//     Sandbox.Exec adds to the Transport's exec on the real path.
//   - BenchmarkTransfer: 256 MiB up and down through sshx's Upload and
//     Download (one file streams through an exec session) against `cat`
//     piped through one SSH session.
//   - BenchmarkConcurrentCreate: 100 parallel creates with task delays and
//     injected lock timeouts.
//   - BenchmarkScale: reconcile, reaper, status, filtered list and event
//     replay over 10,000 sandboxes and 1,000,000 events in SQLite, and the
//     heap of the Manager holding them.
//   - BenchmarkEvents: the publisher's latency with 10 subscribers, 0, 5 or
//     10 of which never read.
//   - BenchmarkLifecycleBreakdown (a diagnostic, not in the table): the
//     lifecycle's time per layer (store, hypervisor, guest) and its API
//     request count.
//
// # Running
//
// scripts/bench.sh runs them all with the right -benchtime for each and
// prints one table of ratios (bench/cmd/benchtable); docs/benchmarks.md
// explains the choices and reads the numbers. A single benchmark runs with
// the usual flags, for example:
//
//	go test -run '^$' -bench 'Lifecycle' -benchtime 20x ./bench
//
// The tests in this package are quick checks that the SDK and bare paths
// end in the same state; they run in the default go test.
package bench
