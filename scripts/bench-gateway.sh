#!/usr/bin/env bash
# make bench-gateway: the side-by-side gateway benchmark (see bench/gateway/README.md).
exec "$(dirname "$0")/../bench/gateway/run.sh" "$@"
