#!/usr/bin/env bash
# bench.sh runs the agentlab benchmarks (package ./bench) and prints one
# Markdown table: operation, SDK, baseline, ratio, target, result.
#
# Every comparison runs its SDK side and its baseline next to each other in
# the same process, and the whole set runs ROUNDS times (default 5); the
# table shows medians, and each ratio is the median of the per-round ratios.
# The scale benchmark (10k records, 1M events) runs once. The whole thing
# takes about 5 minutes on 2 cores.
#
# Usage: scripts/bench.sh            table on stdout, progress on stderr
#        ROUNDS=3 scripts/bench.sh   fewer rounds
#        RAW=out.txt scripts/bench.sh  also keep the raw go test output
set -euo pipefail

cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
raw=${RAW:-$tmp/raw.txt}
: >"$raw"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
	"$(free -h | awk '/^Mem:/ {print $2}') RAM, $(go version | cut -d' ' -f3)" >&2
go test -c -o "$tmp/bench.test" ./bench
go build -o "$tmp/benchtable" ./bench/cmd/benchtable

# bench PATTERN BENCHTIME runs the benchmarks matching PATTERN once.
bench() {
	echo "  -bench '$1' -benchtime $2" >&2
	"$tmp/bench.test" -test.run '^$' -test.bench "$1" -test.benchtime "$2" \
		-test.count 1 -test.timeout 30m >>"$raw" 2>&1 || {
		echo "benchmark $1 failed; last output:" >&2
		tail -n 30 "$raw" >&2
		exit 1
	}
}

for r in $(seq 1 "$rounds"); do
	echo "round $r of $rounds" >&2
	bench 'Lifecycle$' 50x
	bench 'Exec$/(Pooled|RawSession)$' 500x
	bench 'Exec$/SSHBinary$' 30x
	bench 'SandboxExec$' 500x
	bench 'ExecLatency$' 1x
	bench 'ExecConcurrent$' 1x
	bench 'Transfer$' 3x
	bench 'ConcurrentCreate$/default$' 1x
	bench 'Events$' 50000x
done
echo "scale (once)" >&2
bench 'Scale$' 5x

"$tmp/benchtable" "$raw"
