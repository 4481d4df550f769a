#!/usr/bin/env bash
# make bench-gateway: build loadgen and the orchestrator, then run every
# cell side by side in one go. Needs haproxy (apt-get install haproxy) for
# the HAProxy cells; they are skipped without it.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p bin
go build -o bin/loadgen ./cmd/loadgen
go build -o bin/gateway-bench ./bench/gateway
# the memory cell holds 10,000 tunnels: two sockets each in every proxy
# and in the fleet; root may raise the hard limit too
if [ "$(id -u)" = 0 ]; then ulimit -Hn 1048576 2>/dev/null || true; fi
ulimit -n "$(ulimit -Hn)" || true
exec bin/gateway-bench run -loadgen bin/loadgen "$@"
