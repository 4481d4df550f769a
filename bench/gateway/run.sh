#!/usr/bin/env bash
# make bench-gateway: build loadgen and the orchestrator, then run every
# cell side by side in one go. Needs haproxy (apt-get install haproxy) for
# the HAProxy cells; they are skipped without it.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p bin
go build -o bin/loadgen ./cmd/loadgen
go build -o bin/gateway-bench ./bench/gateway
ulimit -n "$(ulimit -Hn)" || true
exec bin/gateway-bench run -loadgen bin/loadgen "$@"
