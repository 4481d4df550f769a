#!/usr/bin/env bash
# Installs what the tests need when it is missing (CI starts on a fresh
# Debian machine as root). Quiet when everything is there already.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have tor            || need+=(tor)
[ -f /usr/share/tor/geoip ] || need+=(tor-geoipdb)
have dbus-daemon    || need+=(dbus-daemon)
have dbus-send      || need+=(dbus-bin)
have haproxy        || need+=(haproxy)
have curl           || need+=(curl)
have gcc            || need+=(gcc)
have setpriv        || need+=(util-linux)
have systemd-analyze || need+=(systemd)
have lintian        || need+=(lintian)
have promtool       || need+=(prometheus)   # promtool checks the shipped alert rules
if [ "${PROXYPOOL_E2E:-1}" != 0 ]; then
  have systemd-nspawn || need+=(systemd-container)
  have mmdebstrap     || need+=(mmdebstrap)
fi
# The interop level (test/interop): independent servers of every upstream
# kind, from Debian. Their packages would start a service on a default port
# at install time, so the install below runs under a policy-rc.d that
# forbids it.
interop=()
have ss-server      || interop+=(shadowsocks-libev)
have trojan         || interop+=(trojan)
have v2ray          || interop+=(v2ray)
[ -x /usr/sbin/danted ] || interop+=(dante-server)
have microsocks     || interop+=(microsocks)
[ -x /usr/sbin/squid ]  || interop+=(squid)
have tinyproxy      || interop+=(tinyproxy)
have openssl        || interop+=(openssl)   # squid's htpasswd line (openssl passwd -apr1)
# The PostgreSQL store's tests (internal/store/pgtest) run a throw-away
# cluster from Debian's server programs; the package's own cluster must not
# start either.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || interop+=(postgresql)
need+=("${interop[@]}")
# Real clients through the mixed port (test/clients): headless Chromium,
# proxychains4, and Debian's python3 with requests + PySocks (socks5h://).
have chromium       || need+=(chromium)
have proxychains4   || need+=(proxychains4)
/usr/bin/python3 -c 'import requests' 2>/dev/null || need+=(python3-requests)
/usr/bin/python3 -c 'import socks' 2>/dev/null    || need+=(python3-socks)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing ${need[*]} and not root: install them, or run as root" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  policy=/usr/sbin/policy-rc.d made_policy=
  if [ ${#interop[@]} -gt 0 ] && [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# proxypool deps.sh: no service starts during the install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ -z "$made_policy" ] || rm -f "$policy"
fi
# nfpm builds the .deb; pinned (newer versions pull modules the proxy refuses).
if ! have nfpm && [ ! -x "$(go env GOPATH)/bin/nfpm" ]; then
  echo "deps: installing nfpm v2.45.0"
  go install github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.0
fi
