package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/clashapi"

	"github.com/sirupsen/logrus"
	"gopkg.in/yaml.v3"

	"github.com/proxypool/proxypool/internal/checks"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/geoip/geoiptest"
	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/slo"
	"github.com/proxypool/proxypool/internal/source"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/store/storetest"
	"github.com/proxypool/proxypool/internal/testtool"
	"github.com/proxypool/proxypool/internal/torgen/exits"
	"github.com/proxypool/proxypool/internal/torgen/torrc"
	"github.com/proxypool/proxypool/internal/torops"
	"github.com/proxypool/proxypool/internal/upstream"
)

// wired is every Options value the daemon builds from a config, built the
// way the subcommands build them.
type wired struct {
	e         *env
	pool      pool.Options
	gw        gateway.Options
	listeners map[string]string
	store     store.Options
	probe     probe.Options
	guard     slo.Options
	tor       torops.Options
	refresher *source.Refresher
	checks    checks.Options
	clash     clashapi.Options
}

func wire(t *testing.T, st *store.Store, yml string) *wired {
	t.Helper()
	// Without a probe.geoip of its own a row would load the 25 MB default
	// (tor-geoipdb) twice, 1.6 s: an empty one is the row's default here.
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(yml), &doc); err != nil {
		t.Fatalf("row YAML %q: %v", yml, err)
	}
	if doc == nil {
		doc = map[string]any{}
	}
	pr, _ := doc["probe"].(map[string]any)
	if pr == nil {
		pr = map[string]any{}
	}
	if _, ok := pr["geoip"]; !ok {
		pr["geoip"] = ""
	}
	doc["probe"] = pr
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "proxypool.yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := load(&globals{config: path})
	if err != nil {
		t.Fatalf("loading\n%s\n%v", yml, err)
	}
	listeners, ports := listenerPlan(e)
	pl := &probeLoop{e: e, st: st, trigger: make(chan struct{}, 1)}
	to, err := torOptions(e, st, true)
	if err != nil {
		t.Fatalf("tor options of\n%s\n%v", yml, err)
	}
	return &wired{
		e: e, pool: poolOptions(e, nil, nil), clash: clashOptions(e, nil), gw: gatewayOptions(e, ports), listeners: listeners,
		store: e.storeOptions(nil), probe: e.proberOptions(nil),
		guard: guardOptions(e, st, pl, e.newMetrics(), nil), tor: to,
		refresher: e.refresher(st, nil), checks: e.checksOptions(nil),
	}
}

// group finds a pool group by name.
func (w *wired) group(name string) pool.Group {
	for _, g := range w.pool.Groups {
		if g.Name == name {
			return g
		}
	}
	return pool.Group{}
}

// groupMembersOf is what list --group selects for a group.
func (e *env) groupMembersOf(name string) store.Members { return groupMembers(e)[name] }

// floor is the SLO floor the guard watches for a group.
func (w *wired) floor(name string) slo.Floor {
	for _, g := range w.guard.Groups {
		if g.Name == name {
			return g.Floor
		}
	}
	return slo.Floor{}
}

// TestKeysReachTheirOptions proves, key by key, that a value set in the
// config reaches the Options of the component that acts on it (and that
// the default config gives something else, so the row can fail): a key
// parsed and never passed on (the rotate-every bug) fails here. What each
// component then does with the option is proven in its own package (the
// rows of internal/config's keyProofs name both).
func TestKeysReachTheirOptions(t *testing.T) {
	st := storetest.Open(t, store.Options{})
	dir := t.TempDir()
	geo4, geo6 := filepath.Join(dir, "geoip"), filepath.Join(dir, "geoip6")
	// 192.0.2.0/24 is ZZ, 2001:db8::/32 is YY.
	os.WriteFile(geo4, []byte("3221225984,3221226239,ZZ\n"), 0o644)
	os.WriteFile(geo6, []byte("2001:db8::,2001:db8:ffff:ffff:ffff:ffff:ffff:ffff,YY\n"), 0o644)
	fakeTor := filepath.Join(dir, "my-tor")
	os.WriteFile(fakeTor, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	// 192.0.2.0/24 is in AS64500 "Example Hosting" (the shipped table's
	// org word: datacenter), 198.51.100.0/24 in AS64501 "Example Cable".
	asnDB := filepath.Join(dir, "asn.mmdb")
	geoiptest.WriteMMDB(t, asnDB, "GeoLite2-ASN", map[string]map[string]any{
		"192.0.2.0/24":    {"autonomous_system_number": uint32(64500), "autonomous_system_organization": "Example Hosting"},
		"198.51.100.0/24": {"autonomous_system_number": uint32(64501), "autonomous_system_organization": "Example Cable"},
	})
	classes := filepath.Join(dir, "classes.txt")
	os.WriteFile(classes, []byte("mobile AS64501\n"), 0o644)
	quality := func(ip string) func(w *wired) any {
		return func(w *wired) any {
			if w.probe.Quality == nil {
				return upstream.Quality{}
			}
			return w.probe.Quality(ip)
		}
	}
	country := func(ip string) func(w *wired) any {
		return func(w *wired) any {
			if w.probe.Country == nil {
				return ""
			}
			return w.probe.Country(ip)
		}
	}
	const eu = "groups:\n  eu:\n"
	// target is the first probe.targets check wired; speed the speed check.
	target := func(get func(t checks.Target) any) func(w *wired) any {
		return func(w *wired) any {
			if len(w.checks.Targets) == 0 {
				return nil
			}
			return get(w.checks.Targets[0])
		}
	}
	speed := func(get func(s checks.Speed) any) func(w *wired) any {
		return func(w *wired) any {
			if w.checks.Speed == nil {
				return nil
			}
			return get(*w.checks.Speed)
		}
	}
	const shop = "probe: {targets: {shop: {url: 'http://127.90.0.1:22010/', %s}}}"
	const blob = "probe: {speed: {url: 'http://127.90.0.1:22011/blob', %s}}"
	tests := []struct {
		key  string
		yml  string
		got  func(w *wired) any
		want any
	}{
		{"gateway.listen", "gateway: {listen: 127.88.0.1:22000}", func(w *wired) any { return w.listeners[mainListener] }, "127.88.0.1:22000"},
		{"gateway.ports", "groups: {eu: {}}\ngateway: {ports: [{listen: 127.88.0.1:22001, group: eu}]}",
			func(w *wired) any { return []any{w.listeners["port-eu"], w.gw.Ports["port-eu"]} }, []any{"127.88.0.1:22001", "eu"}},
		{"gateway.strategy", "gateway: {strategy: sticky}", func(w *wired) any { return w.pool.Strategy }, "sticky"},
		{"gateway.rotate-every", "gateway: {rotate-every: 7s}", func(w *wired) any { return w.pool.Rotate.Period }, 7 * time.Second},
		{"gateway.max-tries", "gateway: {max-tries: 7}", func(w *wired) any { return w.gw.MaxTries }, 7},
		{"gateway.max-attempts", "gateway: {max-attempts: 9}", func(w *wired) any { return w.gw.MaxAttempts }, 9},
		{"gateway.client-timeout", "gateway: {client-timeout: 7s}", func(w *wired) any { return w.gw.ClientTimeout }, 7 * time.Second},
		{"gateway.upstream-handshake-timeout", "gateway: {upstream-handshake-timeout: 7s}", func(w *wired) any { return w.gw.TryTimeout }, 7 * time.Second},
		{"gateway.dial-timeout", "gateway: {dial-timeout: 7s}", func(w *wired) any { return w.gw.DialTimeout }, 7 * time.Second},
		{"gateway.total-timeout", "gateway: {total-timeout: 17s}", func(w *wired) any { return w.gw.TotalTimeout }, 17 * time.Second},
		{"gateway.idle-timeout", "gateway: {idle-timeout: 7s}", func(w *wired) any { return w.gw.IdleTimeout }, 7 * time.Second},
		{"gateway.max-conns", "gateway: {max-conns: 7, max-conns-per-client: 7}", func(w *wired) any { return w.gw.MaxConns }, 7},
		{"gateway.max-conns-per-client", "gateway: {max-conns-per-client: 7}", func(w *wired) any { return w.gw.MaxConnsPerClient }, 7},
		{"gateway.eject-after", "gateway: {eject-after: 7}", func(w *wired) any { return w.pool.EjectAfter }, 7},
		{"gateway.eject-client-share", "gateway: {eject-client-share: 0.5}", func(w *wired) any { return w.pool.EjectShare }, 0.5},
		{"gateway.eject-client-window", "gateway: {eject-client-window: 7s}", func(w *wired) any { return w.pool.EjectWindow }, 7 * time.Second},
		{"gateway.session-ttl", "gateway: {session-ttl: 7s}", func(w *wired) any { return w.pool.SessionTTL }, 7 * time.Second},
		{"gateway.max-session-ttl", "gateway: {max-session-ttl: 48h}", func(w *wired) any { return w.gw.Usernames.TTL }, 48 * time.Hour},
		{"gateway.max-session-id", "gateway: {max-session-id: 7}", func(w *wired) any { return w.gw.Usernames.SessionID }, 7},
		{"gateway.max-sessions", "gateway: {max-sessions: 7}", func(w *wired) any { return w.pool.MaxSessions }, 7},
		{"gateway.auth-delay-max", "gateway: {auth-delay-max: 7s}", func(w *wired) any { return w.gw.AuthDelayMax }, 7 * time.Second},
		{"gateway.allow-open", "gateway: {allow-open: true}", func(w *wired) any { return w.gw.AllowOpen }, true},
		{"gateway.debug-header", "gateway: {debug-header: true}", func(w *wired) any { return w.gw.InfoHeader }, "X-Proxypool-Upstream"},
		{"gateway.auth.users", "gateway: {auth: {users: [{username: alice, password: pw}]}}", func(w *wired) any { return w.gw.Users }, map[string]string{"alice": "pw"}},

		{"groups.<name>", eu + "    {}", func(w *wired) any { return w.group("eu").Name }, "eu"},
		{"groups.<name>.countries", eu + "    countries: [DE]", func(w *wired) any { return w.group("eu").Countries }, []string{"DE"}},
		{"groups.<name>.exclude-countries", eu + "    exclude-countries: [DE]", func(w *wired) any { return w.group("eu").ExcludeCountries }, []string{"DE"}},
		{"groups.<name>.types", eu + "    types: [vless]", func(w *wired) any { return w.group("eu").Types }, []string{"vless"}},
		{"groups.<name>.sources", eu + "    sources: [a]\nsources: [{name: a, url: 'file:///nonexistent'}]", func(w *wired) any { return w.group("eu").Sources }, []string{"a"}},
		{"groups.<name>.asn", eu + "    asn: [AS64500]", func(w *wired) any { return w.group("eu").ASNs }, []uint32{64500}},
		{"groups.<name>.exclude-asn", eu + "    exclude-asn: [64500]", func(w *wired) any {
			return []any{w.group("eu").ExcludeASNs, w.e.groupMembersOf("eu").ExcludeASNs}
		}, []any{[]uint32{64500}, []uint32{64500}}},
		{"groups.<name>.class", eu + "    class: [mobile]", func(w *wired) any {
			return []any{w.group("eu").Classes, w.e.groupMembersOf("eu").Classes}
		}, []any{[]upstream.Class{upstream.ClassMobile}, []string{"mobile"}}},
		{"groups.<name>.min-throughput", eu + "    min-throughput: 1MiB", func(w *wired) any { return w.group("eu").MinThroughput }, float64(1 << 20)},
		{"groups.<name>.min-healthy", eu + "    min-healthy: 7", func(w *wired) any { return w.floor("eu").MinHealthy }, 7},
		{"groups.<name>.min-exits", eu + "    min-exits: 7", func(w *wired) any { return w.floor("eu").MinExits }, 7},
		{"groups.<name>.tor-instances", eu + "    tor-instances: 7\ntor: {groups: [eu], mode: grouped}", func(w *wired) any { return w.tor.Floors["eu"] }, 7},

		{"probe.judges", "probe: {judges: ['http://127.88.0.1:22002/get']}", func(w *wired) any { return w.probe.Judges }, []string{"http://127.88.0.1:22002/get"}},
		{"probe.timeout", "probe: {timeout: 7s}", func(w *wired) any { return w.probe.Timeout }, 7 * time.Second},
		{"probe.concurrency", "probe: {concurrency: 7}", func(w *wired) any { return w.probe.Concurrency }, 7},
		{"probe.real-ip", "probe: {real-ip: 192.0.2.7}", func(w *wired) any { return w.probe.RealIP }, "192.0.2.7"},
		{"probe.uplink-check", "probe: {uplink-check: false}", func(w *wired) any { return w.probe.UplinkCheck }, false},
		{"probe.target.enabled", "probe: {target: {enabled: true, url: 'http://127.88.0.1:22003/'}}", func(w *wired) any { return w.probe.TargetURL }, "http://127.88.0.1:22003/"},
		{"probe.target.url", "probe: {target: {enabled: true, url: 'http://127.88.0.1:22004/x'}}", func(w *wired) any { return w.probe.TargetURL }, "http://127.88.0.1:22004/x"},
		{"probe.target.status", "probe: {target: {enabled: true, url: 'http://127.88.0.1:22003/', status: 204}}", func(w *wired) any { return w.probe.TargetStatus }, 204},
		{"probe.geoip", fmt.Sprintf("probe: {geoip: %s, geoip6: ''}", geo4), country("192.0.2.7"), "ZZ"},
		{"probe.geoip6", fmt.Sprintf("probe: {geoip: %s, geoip6: %s}", geo4, geo6), country("2001:db8::7"), "YY"},
		{"probe.asn-database", fmt.Sprintf("probe: {asn-database: %s}", asnDB), quality("192.0.2.7"),
			upstream.Quality{ASN: 64500, Org: "Example Hosting", Class: upstream.ClassDatacenter}},
		{"probe.asn-classes", fmt.Sprintf("probe: {asn-database: %s, asn-classes: %s}", asnDB, classes), quality("198.51.100.7"),
			upstream.Quality{ASN: 64501, Org: "Example Cable", Class: upstream.ClassMobile}},
		{"probe.ipv6-judge", "probe: {ipv6-judge: 'http://[::1]:22005/get'}", func(w *wired) any { return w.probe.IPv6Judge }, "http://[::1]:22005/get"},
		{"probe.interval", "probe: {interval: 7m}", func(w *wired) any { return w.store.Policy.Interval }, 7 * time.Minute},
		{"probe.failing-interval", "probe: {failing-interval: 7s}", func(w *wired) any { return w.store.Policy.FailingInterval }, 7 * time.Second},
		{"probe.max-failures", "probe: {max-failures: 7}", func(w *wired) any { return w.store.Policy.MaxFailures }, 7},
		{"probe.dead-backoff-max", "probe: {dead-backoff-max: 7h}", func(w *wired) any { return w.store.Policy.DeadBackoffMax }, 7 * time.Hour},
		{"probe.history", "probe: {history: 7}", func(w *wired) any { return w.store.HistoryPerUpstream }, 7},
		{"probe.targets.<name>", fmt.Sprintf(shop, ""), target(func(t checks.Target) any { return t.Name }), "shop"},
		{"probe.targets.<name>.url", fmt.Sprintf(shop, ""), target(func(t checks.Target) any { return t.URL }), "http://127.90.0.1:22010/"},
		{"probe.targets.<name>.status", fmt.Sprintf(shop, "status: [204, 301]"), target(func(t checks.Target) any { return t.Status }), []int{204, 301}},
		{"probe.targets.<name>.body", fmt.Sprintf(shop, "body: 'pri+ce'"), target(func(t checks.Target) any { return t.Body.String() }), "pri+ce"},
		{"probe.targets.<name>.not-body", fmt.Sprintf(shop, "not-body: '(?i)captcha'"), target(func(t checks.Target) any { return t.NotBody.String() }), "(?i)captcha"},
		{"probe.targets.<name>.max-time", fmt.Sprintf(shop, "max-time: 7s"), target(func(t checks.Target) any { return t.MaxTime }), 7 * time.Second},
		{"probe.targets.<name>.headers", fmt.Sprintf(shop, "headers: {X-A: b}"), target(func(t checks.Target) any { return t.Headers }), map[string]string{"X-A": "b"}},
		{"probe.targets.<name>.interval", fmt.Sprintf(shop, "interval: 7m"), target(func(t checks.Target) any { return t.Interval }), 7 * time.Minute},
		{"probe.targets.<name>.ttl", fmt.Sprintf(shop, "ttl: 7m"), target(func(t checks.Target) any { return t.TTL }), 7 * time.Minute},
		{"probe.targets.<name>.concurrency", fmt.Sprintf(shop, "concurrency: 7"), target(func(t checks.Target) any { return t.Concurrency }), 7},
		{"probe.targets.<name>.budget", fmt.Sprintf(shop, "budget: 7"), target(func(t checks.Target) any { return t.Budget }), 7},
		{"probe.speed.url", fmt.Sprintf(blob, ""), speed(func(s checks.Speed) any { return s.URL }), "http://127.90.0.1:22011/blob"},
		{"probe.speed.size", fmt.Sprintf(blob, "size: 7KiB"), speed(func(s checks.Speed) any { return s.Size }), int64(7 << 10)},
		{"probe.speed.upload", fmt.Sprintf(blob, "upload: 7KiB"), speed(func(s checks.Speed) any { return s.Upload }), int64(7 << 10)},
		{"probe.speed.budget-bytes", fmt.Sprintf(blob, "budget-bytes: 7MiB"), speed(func(s checks.Speed) any { return s.BudgetBytes }), int64(7 << 20)},
		{"probe.speed.concurrency", fmt.Sprintf(blob, "concurrency: 7"), speed(func(s checks.Speed) any { return s.Concurrency }), 7},
		{"probe.speed.interval", fmt.Sprintf(blob, "interval: 7m"), speed(func(s checks.Speed) any { return s.Interval }), 7 * time.Minute},
		{"probe.speed.max-time", fmt.Sprintf(blob, "max-time: 7s"), speed(func(s checks.Speed) any { return s.MaxTime }), 7 * time.Second},
		{"probe.speed.kinds", fmt.Sprintf(blob, "kinds: [vless]"), speed(func(s checks.Speed) any { return s.Kinds }), []string{"vless"}},
		{"probe.speed.sources", fmt.Sprintf(blob, "sources: [a]"), speed(func(s checks.Speed) any { return s.Sources }), []string{"a"}},
		{"groups.<name>.require-targets", eu + "    require-targets: [shop]\n" + fmt.Sprintf(shop, ""), func(w *wired) any { return w.group("eu").RequireTargets }, []string{"shop"}},

		{"sources", "sources: [{name: a, url: 'file:///nonexistent', format: socks4, interval: 7h, timeout: 7s, min-interval: 7m, max-bytes: 7KiB}]",
			func(w *wired) any { return w.refresher.Sources },
			[]source.Source{{Name: "a", URL: "file:///nonexistent", Format: "socks4", Interval: 7 * time.Hour, Timeout: 7 * time.Second, MinInterval: 7 * time.Minute, MaxBytes: 7 << 10}}},
		{"refresh.interval", "refresh: {interval: 7h}\nsources: [{name: a, url: 'file:///nonexistent'}]", func(w *wired) any {
			if len(w.refresher.Sources) == 0 {
				return nil
			}
			return w.refresher.Sources[0].Interval
		}, 7 * time.Hour},
		{"refresh.concurrency", "refresh: {concurrency: 7}", func(w *wired) any { return w.refresher.Fetcher.Concurrency }, 7},

		{"slo.check-interval", "slo: {check-interval: 7s}", func(w *wired) any { return w.guard.CheckInterval }, 7 * time.Second},
		{"slo.min-action-interval", "slo: {min-action-interval: 7s}", func(w *wired) any { return w.guard.MinActionInterval }, 7 * time.Second},
		{"slo.min-healthy", "slo: {min-healthy: 7}", func(w *wired) any { return w.guard.Pool.MinHealthy }, 7},
		{"slo.min-exits", "slo: {min-exits: 7}", func(w *wired) any { return w.guard.Pool.MinExits }, 7},

		{"tor.relays", "tor: {relays: 'file:///srv/relays.csv'}", func(w *wired) any { return w.tor.RelaysURL }, "file:///srv/relays.csv"},
		{"tor.relays-format", "tor: {relays-format: csv}", func(w *wired) any { return w.tor.Relays.(exits.Source).Format }, exits.Format("csv")},
		{"tor.mode", "tor: {mode: single}", func(w *wired) any { return w.tor.Gen.Mode }, exits.Mode("single")},
		{"tor.groups", eu + "    countries: [DE]\ntor: {groups: [eu]}", func(w *wired) any { return w.tor.Gen.Groups },
			[]exits.Group{{Name: "eu", Countries: []string{"DE"}}}},
		{"tor.port-base", "tor: {port-base: 22100}", func(w *wired) any { return w.tor.Gen.PortBase }, 22100},
		{"tor.port-max", "tor: {port-max: 22199}", func(w *wired) any { return w.tor.Gen.PortMax }, 22199},
		{"tor.max-instances", "tor: {max-instances: 7}", func(w *wired) any { return w.tor.Gen.MaxInstances }, 7},
		{"tor.torrc-dir", "tor: {torrc-dir: /srv/torrc}", func(w *wired) any { return w.tor.Gen.TorrcDir }, "/srv/torrc"},
		{"tor.data-dir", "tor: {data-dir: /srv/tordata}", func(w *wired) any { return w.tor.Gen.DataDir }, "/srv/tordata"},
		{"tor.max-circuit-dirtiness", "tor: {max-circuit-dirtiness: 7m}", func(w *wired) any { return w.tor.Gen.MaxCircuitDirtiness }, 7 * time.Minute},
		{"tor.extra-config", "tor: {extra-config: ['NumEntryGuards 7']}", func(w *wired) any { return w.tor.Gen.Extra }, []string{"NumEntryGuards 7"}},
		{"tor.newnym-period", "tor: {newnym-period: 7m}", func(w *wired) any { return w.tor.NewnymPeriod }, 7 * time.Minute},
		{"tor.bootstrap-grace", "tor: {bootstrap-grace: 7s}", func(w *wired) any { return w.tor.BootstrapGrace }, 7 * time.Second},
		{"tor.binary", fmt.Sprintf("tor: {binary: %s}", fakeTor), func(w *wired) any { return w.tor.Gen.Verify }, torrc.TorVerifier{Binary: fakeTor}},

		{"api.clash.group-limit", "api: {clash: {group-limit: 7}}", func(w *wired) any { return w.clash.GroupLimit }, 7},
		{"api.clash.pin-ttl", "api: {clash: {pin-ttl: 7m}}", func(w *wired) any { return w.clash.PinTTL }, 7 * time.Minute},
		{"api.clash.test-url", "api: {clash: {test-url: 'http://127.86.0.1:21003/'}}", func(w *wired) any { return w.clash.TestURL }, "http://127.86.0.1:21003/"},

		{"log.level", "log: {level: debug}", func(w *wired) any { return w.e.log.Level }, logrus.DebugLevel},
		{"log.format", "log: {format: json}", func(w *wired) any { return reflect.TypeOf(w.e.log.Formatter) }, reflect.TypeOf(&logrus.JSONFormatter{})},
	}
	// A row is told apart from the default config, or from its contrast:
	// the same config with the key flipped, where the default alone would
	// not show the key matters.
	contrast := map[string]string{
		"probe.target.enabled": "probe: {target: {enabled: false, url: 'http://127.88.0.1:22003/'}}",
		// the shipped table alone calls "Example Cable" residential
		"probe.asn-classes": fmt.Sprintf("probe: {asn-database: %s}", asnDB),
	}
	def := wire(t, st, "")
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if got := tt.got(wire(t, st, tt.yml)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("with\n%s\nthe option is %#v, want %#v: the key does not reach its component", tt.yml, got, tt.want)
			}
			other := def
			if c, ok := contrast[tt.key]; ok {
				other = wire(t, st, c)
			}
			if reflect.DeepEqual(tt.got(other), tt.want) {
				t.Errorf("the default (or contrast) config gives %#v too: this row cannot fail", tt.want)
			}
		})
	}
}

// TestDaemonKeysTakeEffect proves the keys the subcommands use themselves,
// outside any Options: `proxypoold gateway` opens its store at database,
// listens on gateway.listen and gateway.ports, serves its metrics on
// metrics.gateway-listen only while metrics.enabled; the probe serves
// metrics.listen and prunes what was dead longer than probe.delete-after;
// the timer's `refresh --due` holds a source to its interval; torgen
// refuses tor.runner process.
func TestDaemonKeysTakeEffect(t *testing.T) {
	for _, tt := range []struct {
		name    string
		metrics string // the metrics section
		served  bool
	}{
		{"gateway.listen", "metrics: {enabled: true, gateway-listen: 127.88.0.1:22012}", true},
		{"metrics.enabled", "metrics: {enabled: false, gateway-listen: 127.88.0.1:22012}", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			db := filepath.Join(dir, "state", "pp.db")
			cfg := fmt.Sprintf("database: %s\nprobe: {geoip: ''}\ngroups: {eu: {}}\nlog: {level: error}\n"+
				"gateway: {listen: 127.88.0.1:22010, ports: [{listen: 127.88.0.1:22011, group: eu}]}\n%s\n", db, tt.metrics)
			path := filepath.Join(dir, "proxypool.yaml")
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			testtool.Go(t, "proxypoold gateway", func(ctx context.Context) error {
				return runGateway(ctx, &globals{config: path, stdout: io.Discard, stderr: io.Discard}, nil)
			})
			for _, addr := range []string{"127.88.0.1:22010", "127.88.0.1:22011"} {
				if err := socksGreeting(addr); err != nil {
					t.Fatalf("gateway.listen / gateway.ports %s: %v", addr, err)
				}
			}
			if _, err := os.Stat(db); err != nil {
				t.Errorf("database: %v", err)
			}
			resp, err := http.Get("http://127.88.0.1:22012/metrics")
			if err == nil {
				resp.Body.Close()
			}
			switch {
			case tt.served && (err != nil || resp.StatusCode != http.StatusOK):
				t.Errorf("metrics.gateway-listen: GET /metrics: %v %v", err, resp)
			case !tt.served && err == nil:
				t.Errorf("metrics.enabled false, but metrics.gateway-listen answered %s", resp.Status)
			}
		})
	}

	t.Run("metrics.listen", func(t *testing.T) {
		w := wire(t, storetest.Open(t, store.Options{}), "metrics: {listen: 127.88.0.1:22013}\nlog: {level: error}")
		st := storetest.Open(t, store.Options{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		pl := &probeLoop{e: w.e, st: st, trigger: make(chan struct{}, 1)}
		startObservers(ctx, w.e, st, pl, w.e.newMetrics(), nil, nil)
		var resp *http.Response
		var err error
		for range 50 {
			if resp, err = http.Get("http://127.88.0.1:22013/metrics"); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics on metrics.listen: %v %v", err, resp)
		}
		resp.Body.Close()
	})

	t.Run("tor.runner", func(t *testing.T) {
		// The one-shot unit runs tor under systemd only: a process runner
		// it would start would die with it.
		dir := t.TempDir()
		path := filepath.Join(dir, "proxypool.yaml")
		cfg := fmt.Sprintf("database: %s/pp.db\nprobe: {geoip: ''}\nlog: {level: error}\ntor: {enabled: true, runner: process, torrc-dir: %s}\n", dir, dir)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		err := runTorgen(context.Background(), &globals{config: path, stdout: io.Discard, stderr: io.Discard}, nil)
		if err == nil || !strings.Contains(err.Error(), "tor.runner process only works inside `proxypoold run`") {
			t.Errorf("proxypoold torgen with tor.runner process: %v", err)
		}
	})

	t.Run("sources", func(t *testing.T) {
		// the timer's `refresh --due` holds a source to its interval; the
		// operator's --force does not
		dir := t.TempDir()
		list := filepath.Join(dir, "list.txt")
		os.WriteFile(list, []byte("socks5://192.0.2.1:1080\n"), 0o644)
		path := filepath.Join(dir, "proxypool.yaml")
		cfg := fmt.Sprintf("database: %s/pp.db\nprobe: {geoip: ''}\nlog: {level: error}\n"+
			"sources: [{name: a, url: 'file://%s', interval: 1h, min-interval: 1s}]\n", dir, list)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		refresh := func(args ...string) string {
			var out strings.Builder
			if err := runRefresh(context.Background(), &globals{config: path, stdout: &out, stderr: io.Discard}, args); err != nil {
				t.Fatalf("proxypoold refresh %v: %v", args, err)
			}
			return out.String()
		}
		steps := []struct {
			args []string
			line string // the list grows by one before each step
			want string // in the summary table
		}{
			{[]string{"--due"}, "", "1      0      0       0"},
			{[]string{"--due"}, "socks5://192.0.2.2:1080\n", "not modified"},
			{[]string{"--force"}, "socks5://192.0.2.3:1080\n", "2      1      0       0"},
		}
		for i, st := range steps {
			if st.line != "" {
				f, _ := os.OpenFile(list, os.O_APPEND|os.O_WRONLY, 0)
				f.WriteString(st.line)
				f.Close()
			}
			if out := refresh(st.args...); !strings.Contains(out, st.want) {
				t.Errorf("step %d, refresh %v:\n%s\nwant %q", i+1, st.args, out, st.want)
			}
		}
	})

	t.Run("probe.delete-after", func(t *testing.T) {
		u := upstream.MustNew(map[string]any{"type": "socks5", "server": "192.0.2.9", "port": 1080})
		for _, tt := range []struct {
			yml  string
			kept bool
		}{
			{"probe: {max-failures: 1, delete-after: 1h}\nlog: {level: error}", false},
			{"probe: {max-failures: 1, delete-after: 3h}\nlog: {level: error}", true},
		} {
			w := wire(t, storetest.Open(t, store.Options{}), tt.yml+"\ndatabase: "+filepath.Join(t.TempDir(), "pp.db"))
			ctx, cancel := context.WithCancel(context.Background())
			st, err := w.e.openStore(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Add(ctx, "manual", u); err != nil {
				t.Fatal(err)
			}
			// last healthy 2h ago, dead since
			lastOK := time.Now().Add(-2 * time.Hour)
			st.Submit(upstream.CheckResult{ID: u.ID, At: lastOK, OK: true, ExitIP: "192.0.2.9", Anonymity: upstream.AnonElite})
			st.Submit(upstream.CheckResult{ID: u.ID, At: lastOK.Add(time.Millisecond), Cause: upstream.CauseRefused})
			if err := st.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			pruned := make(chan struct{})
			go func() { (&probeLoop{e: w.e, st: st}).prune(ctx); close(pruned) }()
			// the first prune runs at once: wait for it to delete, or
			// 300ms for a row that must stay
			for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				_, err = st.Get(ctx, u.ID)
				if err != nil || tt.kept && time.Now().After(deadline.Add(-2700*time.Millisecond)) || time.Now().After(deadline) {
					break
				}
			}
			cancel()
			<-pruned
			st.Close()
			if kept := err == nil; kept != tt.kept {
				t.Errorf("%s: an upstream dead for 2h kept %v (%v), want %v", tt.yml, kept, err, tt.kept)
			}
		}
	})
}

// socksGreeting checks that addr answers a SOCKS5 greeting, retrying while
// the gateway starts.
func socksGreeting(addr string) error {
	var err error
	for range 100 {
		var c net.Conn
		if c, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			c.Write([]byte{5, 1, 0})
			b := make([]byte, 2)
			_, err = io.ReadFull(c, b)
			c.Close()
			if err == nil && (b[0] != 5 || b[1] != 0) {
				err = fmt.Errorf("greeting answered % x, want 05 00", b)
			}
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}
