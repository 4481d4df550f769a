#!/usr/bin/env bash
# Assertions run INSIDE the booted container (copied to /root/checks.sh by
# nspawn.sh, run with bash -eu). Usage: checks.sh PHASE
#   installed  after `apt install` + `systemctl start proxypool.target` (ends
#              with a reinstall: the postinst's upgrade branch)
#   rebooted   after poweroff + boot
#   tor        after the rebooted checks: torgen makes tor@<port> for us and
#              de (hashed ports), then removes us's (de's left for purge)
#   reload     after the restart under load: `systemctl reload
#              proxypool.target` opens a pinned port and turns on debug
#              logs with the same processes; a broken config fails each
#              unit's reload, keeps the units active and serving, and is
#              named in the journal and proxypoolctl status
#   purged     after `apt purge proxypool`
# E2E_SKIP: comma-separated check names to skip (e.g. while a binary is a stub).
set -euo pipefail
PHASE=${1:?phase}
skip() { [[ ",${E2E_SKIP:-}," == *",$1,"* ]] && echo "--- skip $1"; }
check() { echo "--- check $1"; }
# grep -q in a pipe: reads everything, so pipefail does not see the writer's
# SIGPIPE when the match comes early.
has() { grep -c "$@" >/dev/null; }
UNITS="proxypool.target proxy-gateway.socket proxy-gateway.service proxy-probe.service proxy-refresh.timer proxy-torgen.timer proxy-torgen.path"
nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }

# Healthy upstreams the probe reports (states.healthy of status --json).
healthy() { proxypoolctl status --json 2>/dev/null | tr -d ' \n' | grep -o '"healthy":[0-9]*' | head -n1 | cut -d: -f2; }
MIN_HEALTHY=${E2E_MIN_HEALTHY:-4}
wait_healthy() {
	local n=0
	for _ in $(seq 240); do
		n=$(healthy || true); n=${n:-0}
		[ "$n" -ge "$1" ] && { echo "healthy upstreams: $n"; return 0; }
		sleep 0.5
	done
	proxypoolctl status || true
	journalctl -u proxy-probe.service --no-pager -n 40 || true
	echo "only $n healthy upstreams after 120 s (want >= $1)"
	return 1
}
# via PROXY: 10 requests through the gateway to the judge; every one must
# succeed and the judge must see at least 3 distinct exits (rotation).
via() {
	local ok=0 i out origins=""
	for _ in $(seq 30); do   # the gateway picks the imported pool up within seconds
		curl -sf --max-time 10 -x "$1" http://127.0.0.1:18080/ip >/dev/null && break
		sleep 0.5
	done
	for i in $(seq 10); do
		out=$(curl -sS -f --max-time 10 -x "$1" http://127.0.0.1:18080/ip) || { echo "request $i via $1 failed"; exit 1; }
		origins="$origins $(tr -d ' \n' <<<"$out" | sed -n 's/.*"origin":"\([^"]*\)".*/\1/p')"
		ok=$((ok + 1))
	done
	local distinct
	distinct=$(tr ' ' '\n' <<<"$origins" | grep . | sort -u | wc -l)
	echo "via $1: $ok/10 ok, $distinct distinct exits:$(tr ' ' '\n' <<<"$origins" | grep . | sort | uniq -c | tr -s ' \n' ' ')"
	[ "$distinct" -ge 3 ] || { echo "no rotation via $1"; exit 1; }
}

wait_active() {
	for _ in $(seq 100); do systemctl is-active --quiet "$@" && return 0; sleep 0.1; done
	systemctl --no-pager status "$@" || true
	return 1
}

case $PHASE in
reload)
	CFG=/etc/proxypool/proxypool.yaml
	cp "$CFG" /tmp/proxypool.yaml.orig
	gw=$(systemctl show -P MainPID proxy-gateway.service); pr=$(systemctl show -P MainPID proxy-probe.service)
	check reload-applies
	! timeout 2 bash -c '</dev/tcp/127.0.0.1/8010' 2>/dev/null || { echo "127.0.0.1:8010 answers before the reload"; exit 1; }
	sed -i 's/^  ports: \[\]$/  ports:\n    - {listen: "127.0.0.1:8010"}/' "$CFG"
	printf 'log:\n  level: debug\n' >>"$CFG"
	systemctl reload proxypool.target
	curl -sS -f --max-time 10 -x socks5h://127.0.0.1:8010 http://127.0.0.1:18080/ip >/dev/null
	[ "$(systemctl show -P MainPID proxy-gateway.service)" = "$gw" ] || { echo "the gateway restarted on reload"; exit 1; }
	[ "$(systemctl show -P MainPID proxy-probe.service)" = "$pr" ] || { echo "the probe restarted on reload"; exit 1; }
	for u in proxy-gateway proxy-probe; do
		journalctl -u $u.service --no-pager | has 'config reloaded' || { journalctl -u $u.service --no-pager -n 20; echo "$u did not log its reload"; exit 1; }
	done
	proxypoolctl status | grep '^reload: ' | tee /tmp/reloads
	[ "$(grep -c ': applied$' /tmp/reloads)" = 2 ] || { echo "status does not show both reloads applied"; exit 1; }

	check reload-broken
	sed -i 's/^  listen: 127.0.0.1:8000$/  listen: 127.0.0.1:8000\n  strategyy: sticky/' "$CFG"
	line=$(grep -n strategyy "$CFG" | cut -d: -f1)
	if systemctl reload proxy-gateway.service; then echo "systemctl reload of a broken config succeeded"; exit 1; fi
	# The target's own reload job succeeds whatever its units' did
	# (systemd 252): its exit status cannot carry theirs.
	rc=0; systemctl reload proxypool.target || rc=$?
	echo "systemctl reload proxypool.target with a broken config: exit $rc"
	if systemctl reload proxy-probe.service; then echo "systemctl reload of the probe with a broken config succeeded"; exit 1; fi
	systemctl is-active --quiet proxy-gateway.service proxy-probe.service
	curl -sS -f --max-time 10 -x socks5h://127.0.0.1:8000 http://127.0.0.1:18080/ip >/dev/null
	curl -sS -f --max-time 10 -x socks5h://127.0.0.1:8010 http://127.0.0.1:18080/ip >/dev/null
	journalctl -u proxy-gateway.service --no-pager | has "$CFG:$line: gateway.strategyy" ||
		{ journalctl -u proxy-gateway.service --no-pager -n 20; echo "the journal does not name $CFG:$line: gateway.strategyy"; exit 1; }
	proxypoolctl status | grep "^reload: gateway .*FAILED.*$CFG:$line: gateway.strategyy"

	check reload-restores
	cp /tmp/proxypool.yaml.orig "$CFG"
	systemctl reload proxypool.target
	! timeout 2 bash -c '</dev/tcp/127.0.0.1/8010' 2>/dev/null || { echo "127.0.0.1:8010 still answers after its port was removed"; exit 1; }
	curl -sS -f --max-time 10 -x socks5h://127.0.0.1:8000 http://127.0.0.1:18080/ip >/dev/null
	;;
installed | rebooted)
	check units-active
	# The gateway is socket-activated: the first connection starts it.
	timeout 5 bash -c '</dev/tcp/127.0.0.1/8000' || true
	wait_active $UNITS
	systemctl is-enabled proxypool.target

	check verify-in-container
	rc=0
	out=$(systemd-analyze verify --man=no /lib/systemd/system/proxypool.target /lib/systemd/system/proxy-*.{service,socket,timer} 2>&1) || rc=$?
	[ -z "$out" ] && [ $rc = 0 ] || { echo "systemd-analyze verify (rc=$rc): $out"; exit 1; }

	check status-root
	proxypoolctl status

	check status-unprivileged
	nobody proxypoolctl status

	check add-denied-unprivileged
	if out=$(nobody proxypoolctl add socks5://127.0.0.1:1 2>&1); then
		echo "unprivileged add succeeded: $out"; exit 1
	fi
	grep -qi "permission denied" <<<"$out" || { echo "unhelpful denial: $out"; exit 1; }

	check bus-policy
	busctl introspect org.proxypool.ProxyPool1 /org/proxypool/ProxyPool1 org.proxypool.ProxyPool1.Manager >/dev/null
	if nobody busctl call org.proxypool.ProxyPool1 /org/proxypool/ProxyPool1 \
		org.proxypool.ProxyPool1.Manager Refresh 2>/dev/null; then
		echo "bus policy let nobody call Refresh"; exit 1
	fi

	check status-json-unprivileged
	nobody proxypoolctl status --json | has '"states"'

	check torgen-disabled
	# tor.enabled false: the oneshot has nothing to do and must succeed.
	systemctl start proxy-torgen.service
	journalctl -u proxy-torgen.service --no-pager -n 3 -o cat | has 'nothing to do'

	if [ "$PHASE" = installed ]; then
		check torgen-sandbox
		# What internal/units does for a new instance, run inside
		# proxy-torgen.service's own sandbox: adduser _tor-<port>, its
		# home in /var/lib/tor-instances, /etc/tor/instances/<port>/torrc,
		# /etc/tor/torrc.<port>, and the systemd manager on the bus.
		d=/run/systemd/system/proxy-torgen.service.d
		mkdir -p $d
		cat >$d/e2e.conf <<-'EOF'
			[Service]
			ExecStart=
			ExecStart=/bin/sh -ec 'adduser --quiet --system --disabled-password --home /var/lib/tor-instances/9999 --no-create-home --shell /bin/false --group --force-badname _tor-9999; mkdir -p /var/lib/tor-instances/9999 /etc/tor/instances/9999; chown _tor-9999:_tor-9999 /var/lib/tor-instances/9999; chmod 02700 /var/lib/tor-instances/9999; echo "# e2e" >/etc/tor/instances/9999/torrc.tmp; mv /etc/tor/instances/9999/torrc.tmp /etc/tor/instances/9999/torrc; echo "# e2e" >/etc/tor/torrc.9999; busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager GetUnit s proxypool.target'
		EOF
		systemctl daemon-reload
		rc=0; systemctl start proxy-torgen.service || rc=$?
		journalctl -u proxy-torgen.service --no-pager -n 8 -o cat
		rm -rf $d; systemctl daemon-reload
		getent passwd _tor-9999 >/dev/null || rc=1
		deluser --quiet --system _tor-9999 >/dev/null 2>&1 || true
		rm -rf /var/lib/tor-instances/9999 /etc/tor/instances/9999 /etc/tor/torrc.9999
		rmdir /etc/tor/instances 2>/dev/null || true
		[ $rc = 0 ] || { echo "torgen's sandbox does not allow creating a tor instance"; exit 1; }
	fi

	check state-dir
	test -d /var/lib/proxypool
	[ "$(stat -c %U /var/lib/proxypool)" = proxypool ]

	check structured-log
	# Under journald the daemon logs native fields (COMPONENT=gateway …).
	for _ in $(seq 50); do
		journalctl -u proxy-gateway.service -o verbose --no-pager | has '^ *COMPONENT=gateway$' && break
		sleep 0.2
	done
	journalctl -u proxy-gateway.service -o verbose --no-pager | has '^ *COMPONENT=gateway$' ||
		{ journalctl -u proxy-gateway.service -o verbose --no-pager | tail -40; echo "no COMPONENT=gateway field"; exit 1; }

	skip traffic || {
		if [ "$PHASE" = installed ]; then
			check import
			# The fleet (e2e-fleet.service, made by nspawn.sh) writes its list
			# once every member listens.
			for _ in $(seq 100); do [ -s /srv/e2e-fleet/list.txt ] && break; sleep 0.1; done
			proxypoolctl import /srv/e2e-fleet/list.txt
		fi
		check healthy
		wait_healthy "$MIN_HEALTHY"
		proxypoolctl status
		check traffic
		via socks5h://127.0.0.1:8000
		via http://127.0.0.1:8000
		if [ "$PHASE" = installed ]; then
			check upgrade
			# Reinstalling runs the upgrade branch of the postinst: what ran
			# keeps running (probe restarted), and a unit the target wants
			# but that was not running (as proxy-torgen.path after an upgrade
			# from a version without it) is started.
			systemctl stop proxy-torgen.path
			apt-get install -y -q --reinstall /root/proxypool.deb >/dev/null
			wait_active $UNITS
			wait_healthy "$MIN_HEALTHY"
		fi
	}
	;;
tor)
	# proxy-torgen.service (the packaged unit, its sandbox) turns a recorded
	# relay file into Debian's tor@<port>.service instances: tor.mode
	# country, groups us and de -> one port each, hashed from the group
	# (read back from the torrc headers). No network here, so tor never
	# bootstraps; the instances are active and their SocksPort listens.
	# Dropping us stops and removes us's instance and leaves de's alone;
	# de's stays for the purge checks.
	CONF=/etc/proxypool/proxypool.yaml
	RELAYS=/srv/e2e-tor/relays.csv   # copied in by nspawn.sh (testdata/)
	portof() { # $1: group; the port of its country-mode torrc
		grep -l -x "# proxypool-torgen key: country/$1" /etc/tor/torrc.* | sed -n 's|^/etc/tor/torrc\.||p'
	}
	cp $CONF /root/proxypool.yaml.orig
	with_tor() { # $1: the tor.groups flow list
		{ sed '/^tor:/,$d' /root/proxypool.yaml.orig
		  cat <<-EOF
			tor:
			  enabled: true
			  relays: $RELAYS
			  relays-format: csv
			  mode: country
			  groups: $1
		EOF
		} >$CONF
		sed -i 's/^groups: {}$/groups:\n  us:\n    countries: [US]\n  de:\n    countries: [DE]/' $CONF
	}
	torgen() {
		local rc=0
		systemctl start proxy-torgen.service || rc=$?
		journalctl -u proxy-torgen.service --no-pager -n 12 -o cat
		[ $rc = 0 ] || { systemctl --no-pager status proxy-torgen.service || true; echo "proxy-torgen.service failed"; exit 1; }
	}
	listens() { timeout 2 bash -c "</dev/tcp/127.0.0.1/$1" 2>/dev/null; }
	wait_listen() { # no ss/netstat in a minbase system: bash's /dev/tcp connects
		for _ in $(seq 100); do listens "$1" && return 0; sleep 0.1; done
		journalctl -u "tor@$1.service" --no-pager -n 30; echo "nothing listens on 127.0.0.1:$1"; return 1
	}

	check tor-instances-created
	test -s $RELAYS
	with_tor '[us, de]'
	has -x '  us:' $CONF
	torgen
	PORT=$(portof us) DEPORT=$(portof de)
	[ -n "$PORT" ] && [ -n "$DEPORT" ] || { ls -la /etc/tor; echo "no generated torrc for us ($PORT) or de ($DEPORT)"; exit 1; }
	UNIT=tor@$PORT.service DEUNIT=tor@$DEPORT.service
	test -f /etc/tor/torrc.$PORT || { ls -la /etc/tor; echo "no /etc/tor/torrc.$PORT"; exit 1; }
	cat /etc/tor/torrc.$PORT
	has -x 'ExitNodes {us}' /etc/tor/torrc.$PORT
	has -x 'StrictNodes 1' /etc/tor/torrc.$PORT
	has -x 'ExitNodes {de}' /etc/tor/torrc.$DEPORT
	has -x "%include /etc/tor/torrc.$PORT" /etc/tor/instances/$PORT/torrc
	has -x "%include /etc/tor/torrc.$DEPORT" /etc/tor/instances/$DEPORT/torrc
	getent passwd _tor-$PORT _tor-$DEPORT
	[ "$(stat -c %U /var/lib/tor-instances/$PORT)" = _tor-$PORT ]

	check tor-instances-running
	wait_active $UNIT $DEUNIT
	systemctl is-enabled $UNIT $DEUNIT
	wait_listen $PORT
	wait_listen $DEPORT
	# tor@ runs the instance as its own user, reading our torrc through the include.
	[ "$(ps -o uid= -p "$(systemctl show -P MainPID $UNIT)" | tr -d ' ')" = "$(id -u _tor-$PORT)" ]

	check tor-upstreams-listed
	out=$(proxypoolctl list --source tor)
	echo "$out"
	has "127.0.0.1:$PORT " <<<"$out" || { echo "proxypoolctl list --source tor does not show port $PORT"; exit 1; }
	has "127.0.0.1:$DEPORT " <<<"$out" || { echo "proxypoolctl list --source tor does not show port $DEPORT"; exit 1; }
	proxypoolctl list --group us | has "127.0.0.1:$PORT "

	check tor-rerun-unchanged
	pid=$(systemctl show -P MainPID $UNIT)
	torgen
	[ "$(systemctl show -P MainPID $UNIT)" = "$pid" ] || { echo "$UNIT restarted though nothing changed"; exit 1; }

	check tor-instance-removed
	depid=$(systemctl show -P MainPID $DEUNIT)
	with_tor '[de]'
	torgen
	for _ in $(seq 100); do systemctl is-active --quiet $UNIT || break; sleep 0.1; done
	! systemctl is-active --quiet $UNIT || { echo "$UNIT still active"; exit 1; }
	[ "$(systemctl is-enabled $UNIT 2>/dev/null || true)" != enabled ] || { echo "$UNIT still enabled"; exit 1; }
	[ ! -e /etc/tor/torrc.$PORT ] || { echo "/etc/tor/torrc.$PORT left behind"; exit 1; }
	[ ! -e /etc/tor/instances/$PORT ] || { echo "/etc/tor/instances/$PORT left behind"; exit 1; }
	! listens $PORT || { echo "127.0.0.1:$PORT still listens"; exit 1; }
	out=$(proxypoolctl list --source tor)
	echo "$out"
	! has "127.0.0.1:$PORT " <<<"$out" || { echo "port $PORT still listed as a tor upstream"; exit 1; }
	# de keeps its port and its process.
	has -x 'ExitNodes {de}' /etc/tor/torrc.$DEPORT
	[ "$(systemctl show -P MainPID $DEUNIT)" = "$depid" ] || { echo "$DEUNIT restarted by an unrelated change"; exit 1; }
	has "127.0.0.1:$DEPORT " <<<"$out"

	check tor-control-newnym
	# torgen gives each instance a loopback control port (SOCKS port +
	# 10000) with a password from the store: the probe (user proxypool,
	# which may not read tor@'s cookie) sends NEWNYM through it.
	has -x "ControlPort 127.0.0.1:$((DEPORT + 10000))" /etc/tor/torrc.$DEPORT
	has '^HashedControlPassword 16:' /etc/tor/torrc.$DEPORT
	! has Cookie /etc/tor/torrc.$DEPORT
	wait_listen $((DEPORT + 10000))
	systemctl restart proxy-probe.service   # it reads tor.enabled at start
	proxypoolctl tor newnym $DEPORT
	journalctl -u tor@$DEPORT.service --no-pager -o cat -n 20 | has 'NEWNYM\|New control connection'

	check tor-slo-scale-up
	# tor.mode grouped, us with a floor of one healthy upstream. No network
	# here: us stays below its floor, so after tor.bootstrap-grace the
	# probe's SLO guard raises us's budget in the store and rewrites
	# torgen.request; proxy-torgen.path starts proxy-torgen.service, which
	# brings up a second us instance. de (a floor too) keeps one.
	with_tor '[us, de]'
	sed -i 's/^  mode: country$/  mode: grouped\n  max-instances: 4\n  bootstrap-grace: 3s/' $CONF
	# types [tor]: the e2e fleet's US proxies are healthy and must not fill us's floor
	sed -i 's/^    countries: \[US\]$/    countries: [US]\n    types: [tor]\n    min-healthy: 1/; s/^    countries: \[DE\]$/    countries: [DE]\n    min-healthy: 1/' $CONF
	printf 'slo:\n  check-interval: 1s\n  min-action-interval: 2s\n  min-healthy: 0\n' >>$CONF
	cat $CONF | sed -n '/^groups:/,$p'
	torgen
	us_instances() { proxypoolctl list --source tor --group us 2>/dev/null | grep -c '127.0.0.1:' || true; }
	[ "$(us_instances)" = 1 ] || { proxypoolctl list --source tor; echo "grouped us starts with $(us_instances) instances, want 1 (its floor)"; exit 1; }
	systemctl restart proxy-probe.service
	since=$(date +%s)
	for _ in $(seq 120); do [ "$(us_instances)" -ge 2 ] && break; sleep 0.5; done
	journalctl -u proxy-probe.service --no-pager -o cat --since "@$since" | grep -i 'floor\|tor' | tail -n 12 || true
	journalctl -u proxy-torgen.service --no-pager -o cat --since "@$since" | tail -n 6 || true
	[ "$(us_instances)" = 2 ] || { proxypoolctl list --source tor; echo "us has $(us_instances) instances 60 s after falling below its floor, want 2"; exit 1; }
	journalctl -u proxy-probe.service --no-pager -o cat --since "@$since" | has 'asked proxy-torgen for instance 2'
	proxypoolctl status | has -i 'us'
	echo "us scaled to 2 instances in $(( $(date +%s) - since )) s"

	# tor.groups [] is refused (torgen.ErrNoExits) rather than removing
	# every instance, so de's instance stays: the purge must clean it up.
	;;
purged)
	check nothing-left
	left=""
	for p in /var/lib/proxypool /var/lib/tor-instances /etc/proxypool /usr/bin/proxypoold /usr/bin/proxypoolctl \
		/usr/share/dbus-1/system.d/org.proxypool.ProxyPool1.conf /usr/lib/sysusers.d/proxypool.conf \
		/lib/systemd/system/proxypool.target /var/lib/systemd/deb-systemd-helper-enabled/proxypool.target.dsh-also; do
		[ ! -e "$p" ] || left="$left $p"
	done
	left="$left $(find /etc/systemd/system /lib/systemd/system \( -name 'proxy-*' -o -name 'proxypool*' \) -printf '%p ' 2>/dev/null || true)"
	left="$left $(find /etc/tor -maxdepth 1 -name 'torrc.[0-9]*' -printf '%p ' 2>/dev/null || true)"
	[ -z "${left// /}" ] || { echo "left behind:$left"; exit 1; }
	! pgrep -u proxypool >/dev/null 2>&1 || { echo "processes of proxypool still run"; exit 1; }
	# "not-found inactive" entries are only names other units mention (the
	# e2e fleet is ordered Before= the target); anything else is left over.
	! systemctl list-units --all --no-legend --plain 'proxy*' | grep -v ' not-found inactive ' | has . ||
		{ systemctl list-units --all 'proxy*'; exit 1; }
	! dpkg -s proxypool >/dev/null 2>&1 || { echo "dpkg still knows proxypool"; exit 1; }
	# The tor@<port> instances torgen made (the "tor" phase leaves one).
	! pgrep -x tor >/dev/null || { ps -o user,pid,args -C tor; echo "a tor process still runs"; exit 1; }
	! getent passwd | has '^_tor-' || { getent passwd | grep '^_tor-'; echo "instance users left"; exit 1; }
	left=$(find /etc/systemd/system -name 'tor@[0-9]*.service' -printf '%p ' 2>/dev/null || true)
	[ -z "$left" ] || { echo "tor@ links left: $left"; exit 1; }
	;;
esac
echo "=== checks $PHASE ok"
