#!/usr/bin/env bash
# Level 1 of docs/systemd-e2e.md: check the units *as packaged*, without
# systemd as PID 1.
#   test/e2e/verify.sh dist/proxypool_*.deb
# - systemd-analyze verify --root on the extracted .deb: fails on ANY output
#   (unknown keys and bad values are only warnings with rc=0);
# - systemd-analyze security --offline: exposure of every service, failing
#   when the gateway or the probe is above MAX_EXPOSURE (default 2.5);
#   Debian's tor@.service is measured in the same run when tor's .deb can be
#   had (apt-get download tor), for comparison.
set -euo pipefail
DEB=$(readlink -f "${1:?usage: verify.sh proxypool_*.deb}")
MAX_EXPOSURE=${MAX_EXPOSURE:-2.5}
W=$(mktemp -d /tmp/proxypool-verify.XXXXXX)
trap 'rm -rf "$W"' EXIT
start=$(date +%s%N)

V=$W/root
dpkg-deb -x "$DEB" "$V"
cp -an /lib/systemd/system/. "$V/lib/systemd/system/"      # sysinit.target & co. must exist in --root
# Debian's tor: its tor@.service for the comparison, its binary path for verify.
tor_units=()
if (cd "$W" && apt-get download tor >/dev/null 2>&1); then
	dpkg-deb -x "$W"/tor_*.deb "$V"
	tor_units=(tor@9060.service)
fi
# Stubs for binaries of OTHER packages the units reference.
for b in /usr/bin/tor /bin/kill /usr/bin/install; do
	[ -e "$V$b" ] || install -D -m755 /dev/null "$V$b"
done

units=()
for f in "$V"/lib/systemd/system/proxy{pool,-}*; do units+=("$(basename "$f")"); done
out=$(systemd-analyze verify --root="$V" --man=no "${units[@]}" "${tor_units[@]}" 2>&1) || true
if [ -n "$out" ]; then
	echo "$out"
	echo "verify: systemd-analyze verify reported problems in ${units[*]}" >&2
	exit 1
fi
echo "verify: systemd-analyze verify clean for ${#units[@]} units: ${units[*]}"

fail=0
printf '%-26s %s\n' unit exposure
for u in proxy-gateway.service proxy-probe.service proxy-refresh.service proxy-torgen.service "${tor_units[@]}"; do
	score=$(systemd-analyze security --offline=true --root="$V" "$u" 2>/dev/null |
		sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	printf '%-26s %s\n' "$u" "${score:-?}"
	case $u in
	proxy-gateway.service | proxy-probe.service)
		if [ -z "$score" ] || awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN{exit !(s > m)}'; then
			echo "verify: $u exposure ${score:-unknown} is above $MAX_EXPOSURE" >&2
			fail=1
		fi ;;
	esac
done
echo "verify: done in $((($(date +%s%N) - start) / 1000000)) ms"
exit $fail
