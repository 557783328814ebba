package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// ref names one reported quantity: a benchmark and a unit.
type ref struct{ bench, unit string }

// row is one line of the table. A row with a base is a comparison: ratio
// turns the SDK and baseline values into the number checked against the
// target. A row without a base checks the SDK value itself. A row with no
// target is shown for information.
type row struct {
	op        string
	sdk, base ref
	ratio     func(sdk, base float64) float64
	target    float64
	atMost    bool // pass when the checked number is <= target, else >=
	targetTxt string
}

// slower is sdk/base for times: how many times longer the SDK takes.
func slower(s, b float64) float64 { return s / b }

// faster is base/sdk for times: how many times faster the SDK is.
func faster(s, b float64) float64 { return b / s }

// share is sdk/base for rates: the SDK's share of the baseline's rate.
func share(s, b float64) float64 { return s / b }

// lifecycleRow compares one lifecycle step of the SDK with the bare calls.
func lifecycleRow(op, unit string) row {
	return compareRow("lifecycle: "+op, ref{"Lifecycle/SDK", unit}, ref{"Lifecycle/Bare", unit},
		slower, 1.3, true, "≤ 1.3x")
}

// compareRow checks ratio(sdk, base) against target; an empty txt makes it
// informational.
func compareRow(op string, sdk, base ref, ratio func(s, b float64) float64, target float64,
	atMost bool, txt string) row {
	return row{op: op, sdk: sdk, base: base, ratio: ratio, target: target, atMost: atMost,
		targetTxt: txt}
}

// limitRow checks an SDK value against a fixed limit.
func limitRow(op string, sdk ref, limit float64, atMost bool, txt string) row {
	return row{op: op, sdk: sdk, target: limit, atMost: atMost, targetTxt: txt}
}

// Benchmarks the table reads more than once.
var (
	creates  = "ConcurrentCreate/default"
	p99Fresh = ref{"Events/slow=0", "p99-ns"}
)

// rows is the table, in order.
var rows = []row{
	lifecycleRow("create (to ready, SSH answering)", "create-ns/op"),
	lifecycleRow("pause", "pause-ns/op"),
	lifecycleRow("resume", "resume-ns/op"),
	lifecycleRow("snapshot", "snapshot-ns/op"),
	lifecycleRow("restore (to SSH answering)", "restore-ns/op"),
	lifecycleRow("destroy", "destroy-ns/op"),
	lifecycleRow("whole lifecycle", "ns/op"),
	compareRow("exec `true`: pooled vs ssh binary", ref{"Exec/Pooled", "ns/op"},
		ref{"Exec/SSHBinary", "ns/op"}, faster, 20, false, "≥ 20x faster"),
	compareRow("exec `true`: pooled vs raw x/crypto/ssh session (floor)",
		ref{"Exec/Pooled", "ns/op"}, ref{"Exec/RawSession", "ns/op"}, slower, 0, false, ""),
	compareRow("exec `true`: Sandbox.Exec vs its Transport.Exec (real path)",
		ref{"SandboxExec/Sandbox", "ns/op"}, ref{"SandboxExec/Transport", "ns/op"}, slower,
		0, false, ""),
	limitRow("exec p50, 1,000 sequential", ref{"ExecLatency", "p50-µs"}, 0, false, ""),
	limitRow("exec p99, 1,000 sequential", ref{"ExecLatency", "p99-µs"}, 0, false, ""),
	compareRow("exec throughput, 16 concurrent", ref{"ExecConcurrent/Pooled", "execs/s"},
		ref{"ExecConcurrent/SSHBinary", "execs/s"}, share, 0, false, ""),
	compareRow("upload 256 MiB: Upload vs `cat >` pipe", ref{"Transfer/upload", "sdk-MB/s"},
		ref{"Transfer/upload", "pipe-MB/s"}, share, 0.8, false, "≥ 0.8x"),
	compareRow("download 256 MiB: Download vs `cat` pipe", ref{"Transfer/download", "sdk-MB/s"},
		ref{"Transfer/download", "pipe-MB/s"}, share, 0.8, false, "≥ 0.8x"),
	limitRow("100 parallel creates: success", ref{creates, "success-%"}, 100, false, "100%"),
	limitRow("100 parallel creates: VMID collisions", ref{creates, "collisions"}, 0, true, "0"),
	compareRow("100 parallel creates: wall vs ideal (clone limit 4)", ref{creates, "wall-s"},
		ref{creates, "ideal-s"}, slower, 1.5, true, "≤ 1.5x"),
	limitRow("scale: reconcile pass (8k live of 10k)", ref{"Scale/reconcile", "ns/op"},
		1e9, true, "< 1 s"),
	limitRow("scale: reaper scan", ref{"Scale/reap", "ns/op"}, 1e9, true, "< 1 s"),
	limitRow("scale: status", ref{"Scale/status", "ns/op"}, 50e6, true, "< 50 ms"),
	limitRow("scale: list, state + label filter", ref{"Scale/list", "ns/op"},
		50e6, true, "< 50 ms"),
	limitRow("scale: replay 10,000 events from an ID (of 1M)", ref{"Scale/replay", "ns/op"},
		1e9, true, "< 1 s"),
	limitRow("scale: replay one sandbox's events", ref{"Scale/replay-vmid", "ns/op"},
		1e9, true, "< 1 s"),
	limitRow("scale: Manager heap in use after GC", ref{"Scale/memory", "heap-inuse-MB"},
		100, true, "< 100 MB"),
	compareRow("events: publisher p99, 5 of 10 subscribers never read",
		ref{"Events/slow=5", "p99-ns"}, p99Fresh, slower, 1.5, true, "≤ 1.5x of 0 slow"),
	compareRow("events: publisher p99, 10 of 10 subscribers never read",
		ref{"Events/slow=10", "p99-ns"}, p99Fresh, slower, 1.5, true, "≤ 1.5x of 0 slow"),
}

// render writes the table and a one-line summary.
func render(w io.Writer, res results, rows []row) {
	fmt.Fprintln(w, "| operation | SDK | baseline | ratio | target | result |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|---|")
	met, checked := 0, 0
	for _, r := range rows {
		cells, verdict := r.cells(res)
		if verdict == "PASS" || verdict == "FAIL" || verdict == "missing" {
			checked++
			if verdict == "PASS" {
				met++
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", r.op, strings.Join(cells, " | "), verdict)
	}
	fmt.Fprintf(w, "\n%d of %d targets met.\n", met, checked)
}

// cells returns the SDK, baseline, ratio and target cells and the verdict.
func (r row) cells(res results) ([]string, string) {
	sdkVals := res.values(r.sdk)
	sdk, ok := median(sdkVals)
	if !ok {
		return []string{"n/a", "n/a", "n/a", r.targetOr()}, r.missing()
	}
	out := []string{format(sdk, r.sdk.unit), "—", "—", r.targetOr()}
	checked := sdk
	if r.base.bench != "" {
		baseVals := res.values(r.base)
		base, ok := median(baseVals)
		ratio, ok2 := pairedRatio(sdkVals, baseVals, r.ratio)
		if !ok || !ok2 {
			out[1], out[2] = "n/a", "n/a"
			return out, r.missing()
		}
		out[1], out[2] = format(base, r.base.unit), fmt.Sprintf("%.2fx", ratio)
		checked = ratio
	}
	if r.targetTxt == "" {
		return out, "info"
	}
	if (r.atMost && checked <= r.target) || (!r.atMost && checked >= r.target) {
		return out, "PASS"
	}
	return out, "FAIL"
}

func (r row) targetOr() string {
	if r.targetTxt == "" {
		return "—"
	}
	return r.targetTxt
}

func (r row) missing() string {
	if r.targetTxt == "" {
		return "info"
	}
	return "missing"
}

// format renders a value in its unit: times as durations, rates and sizes
// with their unit, counts as integers.
func format(v float64, unit string) string {
	switch {
	case strings.HasSuffix(unit, "ns/op"), strings.HasSuffix(unit, "-ns"):
		return duration(time.Duration(v))
	case strings.HasSuffix(unit, "-µs"):
		return duration(time.Duration(v * 1e3))
	case strings.HasSuffix(unit, "-s"):
		return duration(time.Duration(v * 1e9))
	case unit == "success-%":
		return fmt.Sprintf("%.1f%%", v)
	case strings.HasSuffix(unit, "-MB"):
		return fmt.Sprintf("%.1f MB", v)
	case strings.HasSuffix(unit, "MB/s"):
		return fmt.Sprintf("%.0f MB/s", v)
	case unit == "execs/s":
		return fmt.Sprintf("%.0f %s", v, unit)
	case v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g %s", v, unit)
}

// duration renders d with three significant digits in the largest unit
// that keeps it at or above one.
func duration(d time.Duration) string {
	units := []struct {
		size time.Duration
		name string
	}{{time.Second, "s"}, {time.Millisecond, "ms"}, {time.Microsecond, "µs"}}
	for _, u := range units {
		if d >= u.size {
			return sig3(float64(d)/float64(u.size)) + u.name
		}
	}
	return sig3(float64(d)) + "ns"
}

// sig3 formats v (>= 1, or 0) with three significant digits.
func sig3(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
