#!/usr/bin/env bash
# The full level of docs/systemd-e2e.md: boot Debian (the host's codename)
# with systemd as PID 1 in systemd-nspawn, with no network, apt install the
# .deb, start proxypool.target, and check what an operator would:
#   installed  units active, proxypoolctl as root and as nobody, bus policy, logs
#   restart    `systemctl restart proxy-gateway` under a request loop refuses nothing
#   reload     `systemctl reload proxypool.target` applies an edited config
#              (a port, the log level) and refuses a broken one
#   rebooted   poweroff + boot brings the target back with the state intact
#   tor        proxy-torgen.service makes tor@<port>.service instances from
#              a recorded relay list (test/e2e/testdata), then removes one;
#              the other must go with the purge
#   purged     `apt purge` leaves nothing behind
# Usage (root): test/e2e/nspawn.sh dist/proxypool_*.deb
#   E2E_CHECKS  extra bash run inside the container after the "installed" checks
#   E2E_SKIP    check names of test/e2e/checks.sh to skip (comma-separated)
#   E2E_DIR     work dir (default /tmp/proxypool-e2e)
#   E2E_CACHE   dir caching the base rootfs between runs ("" disables;
#               default /var/cache/proxypool-e2e)
#   E2E_FLEET   the fleet binary (cmd/fleet: a local judge on 127.0.0.1:18080
#               and good SOCKS5/SOCKS4/HTTP upstreams); default bin/fleet
#               (make build), built when missing. A test tool: copied into
#               the rootfs, never packaged.
set -euo pipefail
DEB=$(readlink -f "${1:?usage: nspawn.sh proxypool_*.deb}")
TARGET=proxypool.target
HERE=$(cd "$(dirname "$0")" && pwd)
W=${E2E_DIR:-/tmp/proxypool-e2e}
CACHE=${E2E_CACHE-/var/cache/proxypool-e2e}
CT=pp$$
export DEBIAN_FRONTEND=noninteractive
[ "$(id -u)" = 0 ] || { echo "nspawn.sh: needs root" >&2; exit 1; }
[ -f "$DEB" ] || { echo "nspawn.sh: no .deb at $1 (make deb)" >&2; exit 1; }
t0=$SECONDS
phase() { echo "=== [$((SECONDS - t0))s] $*"; }

if ! command -v systemd-nspawn >/dev/null || ! command -v mmdebstrap >/dev/null; then
	apt-get update -qq && apt-get install -y -qq systemd-container mmdebstrap >/dev/null
fi
phase "tools ready"

CODENAME=$(. /etc/os-release; echo "$VERSION_CODENAME")
MIRROR=$(for f in /etc/apt/sources.list.d/*.sources; do [ -f "$f" ] && cat "$f" && echo; done | awk -v c="$CODENAME" 'BEGIN{RS="";FS="\n"}
  {u="";s=""; for(i=1;i<=NF;i++){ if($i~/^URIs:/){u=$i;sub(/^URIs:[ \t]*/,"",u);sub(/[ \t].*/,"",u)} if($i~/^Suites:/)s=" "$i" " }
   if(u!="" && s~(" "c" ")) print u}' | head -n1)
[ -n "$MIRROR" ] || MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v c="$CODENAME" '$1=="deb" && $3==c {print $2; exit}')
# The .deb's Depends, first alternative of each, pre-installed: the container has no network.
DEPS=$(dpkg-deb -f "$DEB" Depends | sed -E 's/\([^)]*\)//g; s/\|[^,]*//g; s/[[:space:]]//g')
INCLUDE="systemd,systemd-sysv,dbus,curl,util-linux${DEPS:+,$DEPS}"

rm -rf "$W"; mkdir -p "$W/root"
key=$(echo "$CODENAME $MIRROR $INCLUDE" | sha256sum | cut -c1-16)
if [ -n "$CACHE" ] && [ -f "$CACHE/rootfs-$key.tar" ]; then
	tar -C "$W/root" -xf "$CACHE/rootfs-$key.tar"
	phase "rootfs from cache ($CACHE/rootfs-$key.tar)"
else
	mmdebstrap --quiet --variant=minbase --include="$INCLUDE" "$CODENAME" "$W/root" \
		"deb $MIRROR $CODENAME main" "deb $MIRROR $CODENAME-updates main"
	if [ -n "$CACHE" ]; then
		mkdir -p "$CACHE" && rm -f "$CACHE"/rootfs-*.tar && tar -C "$W/root" -cf "$CACHE/rootfs-$key.tar" .
	fi
	phase "rootfs built"
fi
# Debian tor's default instance listens on 9050: not ours, not wanted here.
systemctl --root="$W/root" mask tor@default.service >/dev/null 2>&1 || true
cp "$DEB" "$W/root/root/proxypool.deb"
cp "$HERE/checks.sh" "$W/root/root/checks.sh"
# The recorded relay list the "tor" checks give proxy-torgen.service.
install -D -m644 "$HERE/testdata/relays-torstatus-2017-04.csv" "$W/root/srv/e2e-tor/relays.csv"

# The fleet runs as its own unit, enabled, so it is back after the reboot
# with the same addresses (127.10.<i>.1:10800) and the pool stays valid.
FLEET=${E2E_FLEET:-$HERE/../../bin/fleet}
if [ ! -x "$FLEET" ]; then
	(cd "$HERE/../.." && go build -trimpath -o bin/fleet ./cmd/fleet)
fi
install -D -m755 "$FLEET" "$W/root/usr/local/lib/proxypool-e2e/fleet"
cat >"$W/root/etc/systemd/system/e2e-fleet.service" <<'EOF'
[Unit]
Description=e2e: local judge and upstream fleet (test tool, not packaged)
Before=proxypool.target proxy-probe.service

[Service]
ExecStart=/usr/local/lib/proxypool-e2e/fleet -n 8 -bad 0 -port 10800 -judge 127.0.0.1:18080 -list /srv/e2e-fleet/list.txt -geoip /srv/e2e-fleet/geoip

[Install]
WantedBy=multi-user.target
EOF
systemctl --root="$W/root" enable e2e-fleet.service >/dev/null 2>&1
phase "fleet installed in the rootfs"

NSPAWN=; LEADER=
ct() { nsenter -t "$LEADER" -a -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
	DEBIAN_FRONTEND=noninteractive E2E_SKIP="${E2E_SKIP:-}" "$@"; }
boot() {
	for h in systemd unified; do mkdir -p "/sys/fs/cgroup/$h/$CT"; done   # own cgroup: nspawn --keep-unit nests in it
	sh -c 'for h in systemd unified; do echo $$ > /sys/fs/cgroup/$h/'"$CT"'/cgroup.procs; done
	  exec systemd-nspawn --quiet --register=no --keep-unit --private-network -M '"$CT"' -D "$1" -b --console=pipe' \
		sh "$W/root" >>"$W/nspawn.log" 2>&1 </dev/null &
	NSPAWN=$!; LEADER=
	local s=
	for _ in $(seq 600); do
		LEADER=$(pgrep -P "$NSPAWN" | head -n1 || true)
		if [ -n "$LEADER" ]; then
			s=$(ct systemctl is-system-running 2>/dev/null || true)
			case $s in running | degraded) break ;; esac
		fi
		sleep 0.1
	done
	phase "booted: ${s:-?}"
	case $s in running | degraded) ;; *) return 1 ;; esac
	[ "$s" = running ] || ct systemctl --failed --no-pager || true
}
poweroff() {
	[ -n "$LEADER" ] && ct systemctl poweroff 2>/dev/null || kill "$NSPAWN" 2>/dev/null || true
	for _ in $(seq 150); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.2; done
	kill -9 "$NSPAWN" 2>/dev/null || true
	wait "$NSPAWN" 2>/dev/null || true
	LEADER=
	for h in systemd unified; do find "/sys/fs/cgroup/$h/$CT" -depth -type d -exec rmdir {} + 2>/dev/null || true; done
}
cleanup() {
	rc=$?; set +e
	if [ $rc != 0 ]; then
		echo "=== container journal (last 300 lines)"
		journalctl --root="$W/root" --no-pager -n 300 || true
	fi
	[ -z "$NSPAWN" ] || poweroff
	echo "=== [$((SECONDS - t0))s] nspawn e2e $([ $rc = 0 ] && echo ok || echo FAILED)"
	exit $rc
}
trap cleanup EXIT

boot
ct apt-get install -y -q /root/proxypool.deb
phase "installed"
# The packaged config with the container's overrides: the fleet's judge and
# geoip, no sources, no pinned ports, no tor (the container has no network).
ct sh -c 'cat >/etc/proxypool/proxypool.yaml' <<'EOF'
# e2e overrides (test/e2e/nspawn.sh)
database: /var/lib/proxypool/proxypool.db
sources: []
probe:
  judges: [http://127.0.0.1:18080/get]
  interval: 1m
  failing-interval: 20s
  geoip: /srv/e2e-fleet/geoip
  geoip6: ""
gateway:
  listen: 127.0.0.1:8000
  ports: []
groups: {}
tor:
  enabled: false
EOF
ct systemctl start "$TARGET"
ct bash /root/checks.sh installed
[ -z "${E2E_CHECKS:-}" ] || ct bash -euxc "$E2E_CHECKS"
phase "installed checks ok"

# Restart the gateway while clients keep connecting: the socket stays
# with systemd, so no connection may be refused (curl exit 7).
ct bash -euc '
	: >/tmp/rc
	( for i in $(seq 300); do curl -s -o /dev/null --max-time 5 -x http://127.0.0.1:8000 http://127.0.0.1:18080/ip; echo $? >>/tmp/rc; done ) &
	loop=$!
	sleep 0.5; systemctl restart proxy-gateway.service; sleep 0.5; systemctl restart proxy-gateway.service
	wait $loop
	refused=$(grep -cx 7 /tmp/rc || true); total=$(wc -l </tmp/rc)
	echo "restart under load: $total requests, $refused refused, other curl codes: $(grep -vx 0 /tmp/rc | grep -vx 7 | sort | uniq -c | tr "\n" " ")"
	[ "$refused" = 0 ]
	systemctl is-active --quiet proxy-gateway.service'
phase "restart under load ok"
ct bash /root/checks.sh reload
phase "reload checks ok"

poweroff
phase "powered off"
boot
ct bash /root/checks.sh rebooted
phase "rebooted checks ok"

# torgen under the real unit: groups us, de become tor@<port>.service (hashed ports).
ct bash /root/checks.sh tor
phase "tor checks ok"

ct apt-get purge -y -q proxypool
ct bash /root/checks.sh purged
phase "purged checks ok"
echo "1 passed, 0 failed"
