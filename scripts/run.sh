#!/usr/bin/env bash
# make run: a demo fleet of local upstreams + a judge on 127.0.0.1:18080,
# then the whole proxypool stack in the foreground. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
CONFIG=${PROXYPOOL_CONFIG:-./etc/proxypool/proxypool.yaml}
fleet_pid=
cleanup() { [ -n "$fleet_pid" ] && kill "$fleet_pid" 2>/dev/null && wait "$fleet_pid" 2>/dev/null; true; }
trap cleanup EXIT INT TERM
if [ "${DEMO_FLEET:-1}" != 0 ]; then
  bin/fleet -n "${DEMO_UPSTREAMS:-40}" -bad "${DEMO_BAD:-0.25}" \
    -list var/demo-upstreams.txt -geoip var/demo-geoip -judge 127.0.0.1:18080 &
  fleet_pid=$!
  for _ in $(seq 100); do [ -s var/demo-upstreams.txt ] && [ -s var/demo-geoip ] && break; sleep 0.1; done
  echo "demo: fleet of local upstreams running (pid $fleet_pid); judge at http://127.0.0.1:18080/get"
fi
echo "demo: try  curl -x socks5h://127.0.0.1:8000 http://127.0.0.1:18080/ip"
bin/proxypoold --config "$CONFIG" run &
pp=$!
trap 'kill -TERM $pp 2>/dev/null; wait $pp; cleanup; exit 0' INT TERM
wait $pp
