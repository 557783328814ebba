// Command benchtable reads the output of `go test -bench` for package
// bench (several rounds of it, concatenated) and prints one Markdown table:
// operation, SDK, baseline, ratio, target and whether the target is met.
//
// # Rounds and ratios
//
// A benchmark that appears several times (one line per round) contributes
// one value per round. A ratio is computed per round from the SDK and
// baseline values of that round, which ran next to each other, and the
// table shows the median of those ratios; the SDK and baseline columns show
// the medians of their values. Absolute rows (scale, concurrency) show the
// median value against a fixed limit.
//
// Usage:
//
//	go test -run '^$' -bench . ./bench | benchtable
//	benchtable results.txt
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
)

func main() {
	in := io.Reader(os.Stdin)
	if len(os.Args) > 1 {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtable:", err)
			os.Exit(2)
		}
		defer f.Close()
		in = f
	}
	res, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	render(w, res, rows)
}
