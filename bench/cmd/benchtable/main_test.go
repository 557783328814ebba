package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const sample = `goos: linux
BenchmarkLifecycle/SDK-2     20   300 ns/op   120 create-ns/op
BenchmarkLifecycle/Bare-2    20   200 ns/op   100 create-ns/op
--- BENCH: BenchmarkLifecycle/Bare-2
BenchmarkLifecycle/SDK-2     20   500 ns/op   150 create-ns/op
BenchmarkLifecycle/Bare-2    20   250 ns/op   100 create-ns/op
BenchmarkLifecycle/SDK-2     20   330 ns/op   110 create-ns/op
BenchmarkLifecycle/Bare-2    20   300 ns/op   100 create-ns/op
BenchmarkScale/status-2       5   2749562 ns/op   24020 B/op   420 allocs/op
BenchmarkEvents/slow=10-2  5000   3872 ns/op   50744 dropped/slow-sub   17095 p99-ns
PASS
ok  	github.com/agentlab-sdk/agentlab/bench	2.798s
`

func TestParse(t *testing.T) {
	res, err := parse(strings.NewReader(sample))
	require.NoError(t, err)
	require.Equal(t, []float64{120, 150, 110}, res.values(ref{"Lifecycle/SDK", "create-ns/op"}))
	require.Equal(t, []float64{2749562}, res.values(ref{"Scale/status", "ns/op"}))
	require.Equal(t, []float64{17095}, res.values(ref{"Events/slow=10", "p99-ns"}))
	_, err = parse(strings.NewReader("BenchmarkX-2 1 100 ns/op 7\n"))
	require.ErrorContains(t, err, "odd value/unit list")
}

func TestPairedRatio(t *testing.T) {
	for _, c := range []struct {
		name      string
		sdk, base []float64
		want      float64
		ok        bool
	}{
		{"per round", []float64{300, 500, 330}, []float64{200, 250, 300}, 1.5, true},
		{"uneven falls back to medians", []float64{300, 500}, []float64{200}, 2, true},
		{"missing side", []float64{1}, nil, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := pairedRatio(c.sdk, c.base, slower)
			require.Equal(t, c.ok, ok)
			require.InDelta(t, c.want, got, 1e-9)
		})
	}
}

func TestRender(t *testing.T) {
	res, err := parse(strings.NewReader(sample))
	require.NoError(t, err)
	var out strings.Builder
	render(&out, res, []row{
		lifecycleRow("create", "create-ns/op"),
		lifecycleRow("whole lifecycle", "ns/op"),
		limitRow("status", ref{"Scale/status", "ns/op"}, 50e6, true, "< 50 ms"),
		limitRow("absent", ref{"Scale/reap", "ns/op"}, 1e9, true, "< 1 s"),
		limitRow("info", ref{"Scale/status", "allocs/op"}, 0, false, ""),
	})
	lines := strings.Split(out.String(), "\n")
	require.Equal(t, "| lifecycle: create | 120ns | 100ns | 1.20x | ≤ 1.3x | PASS |", lines[2])
	require.Equal(t, "| lifecycle: whole lifecycle | 330ns | 250ns | 1.50x | ≤ 1.3x | FAIL |",
		lines[3])
	require.Equal(t, "| status | 2.75ms | — | — | < 50 ms | PASS |", lines[4])
	require.Equal(t, "| absent | n/a | n/a | n/a | < 1 s | missing |", lines[5])
	require.Equal(t, "| info | 420 | — | — | — | info |", lines[6])
	require.Contains(t, out.String(), "2 of 4 targets met.")
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		v    float64
		unit string
		want string
	}{
		{511890, "pause-ns/op", "512µs"},
		{11180000, "ns/op", "11.2ms"},
		{1.7645e6, "p99-ns", "1.76ms"},
		{1763.2, "p50-µs", "1.76ms"},
		{6.5312, "wall-s", "6.53s"},
		{999, "ns/op", "999ns"},
		{100, "success-%", "100.0%"},
		{4.83, "heap-inuse-MB", "4.8 MB"},
		{236.7, "MB/s", "237 MB/s"},
		{301.2, "sdk-MB/s", "301 MB/s"},
		{0, "collisions", "0"},
		{0.25, "ratio", "0.25 ratio"},
	} {
		require.Equal(t, c.want, format(c.v, c.unit), "%v %s", c.v, c.unit)
	}
}
