#!/usr/bin/env bash
# Builds the interop servers that Debian does not ship (sing-box, xray-core,
# mihomo)
# from the Go module proxy at exact versions, once, into a cache outside the
# tree: ${PROXYPOOL_TOOLS_DIR:-/var/cache/proxypool-tools}/<name>-<version>/,
# with ${PROXYPOOL_TOOLS_DIR}/bin/<name> symlinked to it. The builds take
# minutes on 2 cores, so test.sh starts them with --background before go vet
# and calls --wait before the interop tests.
#
#   interop-tools.sh               build what is missing (foreground)
#   interop-tools.sh --background  same, detached, logging to $T/build.log
#   interop-tools.sh --wait        wait (at most 25 min) for a background build
set -euo pipefail

T=${PROXYPOOL_TOOLS_DIR:-/var/cache/proxypool-tools}
LOG=$T/build.log
WAIT_SECONDS=${PROXYPOOL_TOOLS_WAIT:-1500}

# name version package tags extra-ldflags binary-name-from-go-install (or
# "module": built inside a throwaway module, see mihomo)
TOOLS=(
  "sing-box v1.11.15 github.com/sagernet/sing-box/cmd/sing-box with_quic,with_utls,with_reality_server,with_grpc - sing-box"
  # xray 1.8.24 uses go:linkname into the runtime, which Go 1.23+ refuses
  # unless the linker check is off. go install names the binary after the
  # package directory, "main".
  "xray v1.8.24 github.com/xtls/xray-core/main - -checklinkname=0 main"
  # mihomo at the version go.mod pins: internal/clashapi's conformance and
  # dashboard tests run against its real external controller first.
  # "go install pkg@version" asks the proxy for mihomo's version list (to
  # warn of deprecation), which the proxy here refuses; a throwaway module
  # that requires the exact version builds it without asking.
  "mihomo v1.19.20 github.com/metacubex/mihomo - - module"
)

present() { # name version
  [ -x "$T/$1-$2/$1" ] && [ "$(readlink "$T/bin/$1" 2>/dev/null)" = "$T/$1-$2/$1" ]
}

all_present() {
  local line name version
  for line in "${TOOLS[@]}"; do
    read -r name version _ <<<"$line"
    present "$name" "$version" || return 1
  done
}

summary() {
  local line name version out=()
  for line in "${TOOLS[@]}"; do
    read -r name version _ <<<"$line"
    out+=("$name $version")
  done
  local joined
  joined=$(printf ', %s' "${out[@]}")
  echo "interop-tools: ${joined#, } present in $T/bin"
}

build_one() { # name version pkg tags ldflags gobin-name
  local name=$1 version=$2 pkg=$3 tags=$4 ldflags=$5 built=$6
  local dir=$T/$name-$version tmp=$T/.$name-$version.tmp
  if [ ! -x "$dir/$name" ]; then
    rm -rf "$tmp"
    mkdir -p "$tmp"
    local args=(install -trimpath)
    [ "$tags" != - ] && args+=(-tags "$tags")
    [ "$ldflags" != - ] && args+=("-ldflags=$ldflags")
    echo "interop-tools: building $name $version ($pkg)"
    local t0=$SECONDS
    if [ "$built" = module ]; then
      (cd "$tmp" && printf 'module toolbuild\n\ngo 1.26\n' >go.mod &&
        GOWORK=off GOFLAGS=-mod=mod go get "$pkg@$version" &&
        GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 nice -n 10 go build -trimpath -o "$tmp/$name" "$pkg") ||
        { echo "interop-tools: building $name $version failed" >&2; return 1; }
    else
      # Outside any module (cd $T) so the tree's go.mod plays no part; no cgo
      # so the binaries need nothing from the host but the kernel.
      (cd "$T" && GOWORK=off GOFLAGS= CGO_ENABLED=0 GOBIN="$tmp" \
        nice -n 10 go "${args[@]}" "$pkg@$version") ||
        { echo "interop-tools: building $name $version failed" >&2; return 1; }
      mv "$tmp/$built" "$tmp/$name"
    fi
    rm -rf "$dir"
    mv "$tmp" "$dir"
    echo "interop-tools: built $name $version in $((SECONDS - t0))s"
  fi
  mkdir -p "$T/bin"
  ln -sfn "$dir/$name" "$T/bin/$name"
}

build_all() {
  local line rc=0
  for line in "${TOOLS[@]}"; do
    # shellcheck disable=SC2086 # the fields are single words
    build_one $line || rc=1
  done
  return $rc
}

mkdir -p "$T"
case "${1:-}" in
"")
  if all_present; then summary; exit 0; fi
  exec 9>"$T/.lock"
  flock -w "$WAIT_SECONDS" 9 || { echo "interop-tools: another build holds $T/.lock" >&2; exit 1; }
  build_all
  summary
  ;;
--locked) # the detached child of --background: fd 9 holds the lock already
  build_all
  summary
  ;;
--background)
  if all_present; then summary; exit 0; fi
  exec 9>"$T/.lock"
  if ! flock -n 9; then echo "interop-tools: a build is already running (log $LOG)"; exit 0; fi
  # The child inherits fd 9 and with it the lock, so --wait cannot slip in
  # between this script exiting and the build starting.
  setsid nohup "$0" --locked >"$LOG" 2>&1 </dev/null &
  echo "interop-tools: building in the background (pid $!, log $LOG)"
  ;;
--wait)
  if ! all_present; then
    exec 9>"$T/.lock"
    echo "interop-tools: waiting for the build (at most ${WAIT_SECONDS}s, log $LOG)"
    t0=$SECONDS
    if ! flock -w "$WAIT_SECONDS" 9; then
      echo "interop-tools: build still running after ${WAIT_SECONDS}s" >&2
      tail -n 20 "$LOG" >&2 || true
      exit 1
    fi
    if ! all_present; then
      echo "interop-tools: the background build did not produce every tool:" >&2
      tail -n 40 "$LOG" >&2 || true
      exit 1
    fi
    echo "interop-tools: waited $((SECONDS - t0))s"
  fi
  summary
  ;;
*)
  echo "usage: $0 [--background|--wait]" >&2
  exit 2
  ;;
esac
