#!/usr/bin/env bash
# make bench-probe: one full pass over 10,000 loopback upstreams (30 % bad,
# a quarter each reset/garbage/refused/black hole, 50-200 ms latency, 2 s
# timeout, concurrency 1024), the fleet in a child process.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PROBE_BENCH_N=${PROBE_BENCH_N:-10000} go test -run '^$' -bench '^BenchmarkProbePass$' -benchtime 1x -count "${COUNT:-1}" ./internal/probe/
