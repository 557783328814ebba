package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// results maps a benchmark name (without its -GOMAXPROCS suffix) and a unit
// to the values seen, one per result line, in input order.
type results map[string]map[string][]float64

// benchLine matches a result line: name, iterations, then value-unit pairs.
var benchLine = regexp.MustCompile(`^(Benchmark\S+)\s+(\d+)\s+(.+)$`)

// procSuffix is the "-N" that go test appends when GOMAXPROCS > 1.
var procSuffix = regexp.MustCompile(`-\d+$`)

// parse reads go test -bench output and collects every result line; other
// lines are ignored. A result line with an odd value-unit list is an error.
func parse(r io.Reader) (results, error) {
	res := results{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		name := strings.TrimPrefix(procSuffix.ReplaceAllString(m[1], ""), "Benchmark")
		if err := res.addPairs(name, strings.Fields(m[3])); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	return res, nil
}

// addPairs records the value-unit pairs of one line of benchmark name.
func (res results) addPairs(name string, fields []string) error {
	if len(fields)%2 != 0 {
		return fmt.Errorf("%s: odd value/unit list %q", name, fields)
	}
	if res[name] == nil {
		res[name] = map[string][]float64{}
	}
	for i := 0; i < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return fmt.Errorf("%s: value %q: %w", name, fields[i], err)
		}
		res[name][fields[i+1]] = append(res[name][fields[i+1]], v)
	}
	return nil
}

// values returns the values of a benchmark's unit, nil when absent.
func (res results) values(r ref) []float64 {
	return res[r.bench][r.unit]
}

// median returns the median of vs (the mean of the middle two for an even
// count); ok is false for no values.
func median(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Sorted(slices.Values(vs))
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid], true
	}
	return (s[mid-1] + s[mid]) / 2, true
}

// pairedRatio returns the median of the per-round ratios f(sdk[i],
// base[i]) when both sides have one value per round, and f of the medians
// otherwise.
func pairedRatio(sdk, base []float64, f func(s, b float64) float64) (float64, bool) {
	if len(sdk) > 0 && len(sdk) == len(base) {
		rs := make([]float64, len(sdk))
		for i := range sdk {
			rs[i] = f(sdk[i], base[i])
		}
		return median(rs)
	}
	s, ok1 := median(sdk)
	b, ok2 := median(base)
	if !ok1 || !ok2 {
		return 0, false
	}
	return f(s, b), true
}
