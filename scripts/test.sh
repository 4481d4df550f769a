#!/usr/bin/env bash
# make test: what CI runs. Installs missing tools, then vet, all Go tests
# (real SQLite, loopback fleets, a private dbus-daemon, a private Tor network),
# every fuzz target for a bounded time, and the packaged-install levels.
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1
start=$SECONDS
step() { echo; echo "=== [$((SECONDS-start))s] $*"; }

step "dependencies"
scripts/deps.sh

step "interop tools: sing-box, xray, mihomo (built in the background, cached by version)"
scripts/interop-tools.sh --background

step "gofmt + go vet"
bad=$(gofmt -l $(git ls-files '*.go') 2>/dev/null || true)
if [ -n "$bad" ]; then echo "gofmt needed: $bad"; exit 1; fi
go vet ./...

step "go test"
export PROXYPOOL_TORNET=${PROXYPOOL_TORNET:-1}
export PROXYPOOL_INTEROP=${PROXYPOOL_INTEROP:-1}   # test/interop: independent servers (deps.sh)
# The interop level and the Clash API's tests (against real mihomo) wait
# for the tools; everything else runs while they build.
go test -count=1 -timeout 25m $(go list ./... | grep -v -e /test/interop -e /internal/clashbackend) 2>&1 | tee /tmp/proxypool-gotest.log
[ "${PIPESTATUS[0]}" = 0 ] || exit 1
step "go test: the store suite on PostgreSQL (pgtest's throw-away cluster)"
PROXYPOOL_TEST_STORE=postgres go test -count=1 -timeout 10m ./internal/store/ 2>&1 | tee -a /tmp/proxypool-gotest.log
[ "${PIPESTATUS[0]}" = 0 ] || exit 1
scripts/interop-tools.sh --wait
step "go test: Clash API against real mihomo, metacubexd in Chromium"
go test -count=1 -timeout 10m -v ./internal/clashbackend/ 2>&1 | tee /tmp/proxypool-clash.log | grep -E '^(ok|FAIL|---|\s+dashboard_test|\s+large_test)' || true
grep -E '^(ok|FAIL)' /tmp/proxypool-clash.log >>/tmp/proxypool-gotest.log || true
grep -q '^ok' /tmp/proxypool-clash.log || { tail -n 100 /tmp/proxypool-clash.log; exit 1; }
step "go test: interop level (independent servers of every kind)"
rc=0; go test -count=1 -timeout 10m -v ./test/interop/ >/tmp/proxypool-interop.log 2>&1 || rc=$?
grep -E '^(ok|FAIL)' /tmp/proxypool-interop.log >>/tmp/proxypool-gotest.log || true
if [ "$rc" != 0 ]; then tail -n 200 /tmp/proxypool-interop.log; exit 1; fi
grep -A60 -E '^\s*kind +\|' /tmp/proxypool-interop.log | head -n 60 || true
tail -n 1 /tmp/proxypool-interop.log

step "fuzz (${FUZZTIME:-10s} per target)"
FUZZTIME=${FUZZTIME:-10s} scripts/fuzz.sh

if [ -f nfpm.yaml ]; then
  step "package: build .deb, lintian, systemd-analyze verify/security"
  make --no-print-directory deb
  if [ -x test/e2e/verify.sh ]; then test/e2e/verify.sh dist/proxypool_*.deb; fi
  if [ "${PROXYPOOL_E2E:-1}" != 0 ] && [ "$(id -u)" = 0 ] && [ -x test/e2e/nspawn.sh ]; then
    step "e2e: real systemd in systemd-nspawn"
    test/e2e/nspawn.sh dist/proxypool_*.deb
  fi
fi

step "done in $((SECONDS-start))s"
pass=$(grep -c '^ok ' /tmp/proxypool-gotest.log || true)
fail=$(grep -c '^FAIL' /tmp/proxypool-gotest.log || true)
echo "go packages: $pass passed, $fail failed"
