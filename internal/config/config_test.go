package config

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const shipped = "../../etc/proxypool/proxypool.yaml"

// comparable drops what Parse records about the file itself.
func comparable(c *Config) *Config {
	cp := *c
	cp.File, cp.pos = "", nil
	return &cp
}

func TestShippedConfig(t *testing.T) {
	got, err := Load(shipped)
	if err != nil {
		t.Fatal(err)
	}
	// The shipped file documents the defaults; it differs on purpose only
	// where the development stack needs it.
	want := Default()
	want.Database = "./var/proxypool.db"
	want.Sources = []Source{{
		Name: "demo", URL: "file://./var/demo-upstreams.txt", Format: "auto",
		Interval: time.Hour, MinInterval: 10 * time.Minute, Timeout: 30 * time.Second, MaxBytes: 64 << 20,
	}}
	want.Probe.Judges = []string{"http://127.0.0.1:18080/get"}
	want.Probe.GeoIP, want.Probe.GeoIP6 = "./var/demo-geoip", ""
	want.Gateway.Auth.Users = []User{}
	want.Gateway.Ports = []Port{
		{Listen: "127.0.0.1:8001", Group: "us", Strategy: "round-robin"},
		{Listen: "127.0.0.1:8002", Group: "nonus", Strategy: "round-robin"},
	}
	want.Groups = map[string]Group{
		"us": {Countries: []string{"US"}, ExcludeCountries: []string{}, Types: []string{}, Sources: []string{},
			ASN: []ASN{}, ExcludeASN: []ASN{}, Class: []string{}, RequireTargets: []string{}},
		"nonus": {ExcludeCountries: []string{"US", "UA", "CH"}},
	}
	want.Tor.Groups = []string{}
	want.Tor.ExtraConfig = []string{}
	// the development stack checks its demo judge as a target
	want.Probe.Targets = map[string]TargetCheck{"demo": {URL: "http://127.0.0.1:18080/get", Status: []int{200},
		NotBody: "(?i)captcha", MaxTime: 10 * time.Second, Headers: map[string]string{}, Interval: 10 * time.Minute,
		TTL: 30 * time.Minute, Concurrency: 16}}
	want.Probe.Speed.Kinds, want.Probe.Speed.Sources = []string{}, []string{}
	if g, w := comparable(got), comparable(want); !reflect.DeepEqual(g, w) {
		t.Errorf("shipped config\n%+v\nwant\n%+v", g, w)
	}
	if p, ok := got.Sources[0].FilePath(); !ok || p != "./var/demo-upstreams.txt" {
		t.Errorf("FilePath = %q, %v", p, ok)
	}
	if got.Pos("gateway.ports[1].group") == got.File {
		t.Errorf("Pos did not find gateway.ports[1].group")
	}
}

func TestEmptyFileIsDefault(t *testing.T) {
	for _, in := range []string{"", "# only a comment\n", "---\n", "~\n"} {
		c, err := Parse([]byte(in), "t.yaml")
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if !reflect.DeepEqual(comparable(c), comparable(Default())) {
			t.Errorf("%q: got %+v, want Default()", in, c)
		}
	}
}

func TestParse(t *testing.T) {
	// head is what both documents below share; the first adds a stray anchor
	// key at line 17.
	const head = `
refresh: {interval: 2h}
sources:
  - {name: a, url: "file:///srv/a.txt"}
  - {name: b, url: "https://t.me/s/chan", interval: 3h, max-bytes: 512KiB, format: socks5}
  - {name: c, url: "http://127.0.0.1/x", max-bytes: 1000}
probe:
  judges: http://127.0.0.1:1/headers
  real-ip: 203.0.113.7
gateway:
  listen: "0.0.0.0:8000"
  strategy: sticky
  auth: {users: [{username: alice, password: pw}]}
  ports:
    - {listen: "127.0.0.1:8001", group: eu, strategy: random}
    - {listen: "127.0.0.1:8002", group: eu}
    - {listen: "127.0.0.1:8003", upstream: abc123}
`
	c, err := Parse([]byte(head[1:]+`base: &base {types: [SOCKS5, vless]}
groups:
  eu: {countries: [de, Fr], min-healthy: 5}
  any: ~
tor: {enabled: yes, mode: grouped, groups: [eu], relays: "control://127.0.0.1:9051", runner: process}
log: {level: DEBUG}
`), "t.yaml")
	if err == nil || !strings.Contains(err.Error(), "t.yaml:17: base: unknown key") {
		t.Fatalf("want the stray anchor key rejected, got %v", err)
	}
	c, err = Parse([]byte(head[1:]+`groups:
  eu: &eu {countries: [de, Fr], min-healthy: 5, types: [SOCKS5, vless]}
  eu2: *eu
  any: ~
tor: {enabled: yes, mode: grouped, groups: [eu], relays: "control://127.0.0.1:9051", runner: process}
log: {level: DEBUG}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Sources[0].Interval; got != 2*time.Hour {
		t.Errorf("sources[0].interval = %v, want refresh.interval 2h", got)
	}
	if got := c.Sources[1]; got.Interval != 3*time.Hour || got.MaxBytes != 512<<10 || got.Format != "socks5" || got.Timeout != 30*time.Second {
		t.Errorf("sources[1] = %+v", got)
	}
	if got := c.Sources[2].MaxBytes; got != 1000 {
		t.Errorf("sources[2].max-bytes = %v", got)
	}
	if p, ok := c.Sources[0].FilePath(); !ok || p != "/srv/a.txt" {
		t.Errorf("FilePath = %q %v", p, ok)
	}
	if _, ok := c.Sources[1].FilePath(); ok {
		t.Error("https source has a file path")
	}
	if !reflect.DeepEqual(c.Probe.Judges, []string{"http://127.0.0.1:1/headers"}) {
		t.Errorf("judges = %q", c.Probe.Judges)
	}
	if got := []string{c.Gateway.Ports[0].Strategy, c.Gateway.Ports[1].Strategy}; !reflect.DeepEqual(got, []string{"random", "sticky"}) {
		t.Errorf("port strategies = %q", got)
	}
	eu := c.Groups["eu"]
	if !reflect.DeepEqual(eu.Countries, []string{"DE", "FR"}) || !reflect.DeepEqual(eu.Types, []string{"socks5", "vless"}) || eu.MinHealthy != 5 {
		t.Errorf("groups.eu = %+v", eu)
	}
	if _, ok := c.Groups["eu2"]; !ok {
		t.Error("alias group eu2 missing")
	}
	if _, ok := c.Groups["any"]; !ok {
		t.Error("empty group 'any' missing")
	}
	if !c.Tor.Enabled || c.Tor.Runner != "process" {
		t.Errorf("tor = %+v", c.Tor)
	}
	if c.Log.Level != "debug" {
		t.Errorf("log.level = %q, want lower-cased", c.Log.Level)
	}
	if got := c.UsedPorts(); !reflect.DeepEqual(got, []int{8000, 8001, 8002, 8003, 9090, 9464, 9465}) {
		t.Errorf("UsedPorts = %v", got)
	}
	if got := c.Pos("groups.eu.countries"); got != "t.yaml:18" {
		t.Errorf("Pos = %q", got)
	}
	if p := c.Policy(); p.MaxFailures != 3 || p.Interval != 5*time.Minute || p.FailingInterval != time.Minute {
		t.Errorf("Policy = %+v", p)
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // exact prefix of the first error line: file:line: key: problem
	}{
		{"postgres URL without a database", "database: postgres://pp@db.example\n", `t.yaml:1: database: names no database (postgres://user@host/db)`},
		{"unparsable postgres URL", "database: \"postgres://pp:%zz@db/x\"\n", `t.yaml:1: database: is not a valid URL`},
		{"bad duration", "probe:\n  interval: 5x\n", `t.yaml:2: probe.interval: "5x" is not a duration (use 30s, 5m)`},
		{"bare number duration", "probe:\n  timeout: 30\n", `t.yaml:2: probe.timeout: "30" is not a duration`},
		{"unknown key suggests", "gateway:\n  listen: 127.0.0.1:8000\n  strategi: random\n", `t.yaml:3: gateway.strategi: unknown key (did you mean "strategy"?)`},
		{"underscore key suggests", "gateway:\n  max_tries: 2\n", `t.yaml:2: gateway.max_tries: unknown key (did you mean "max-tries"?)`},
		{"unknown section lists keys", "probes:\n  x: 1\n", `t.yaml:1: probes: unknown key (did you mean "probe"?)`},
		{"unknown far key lists valid", "metrics:\n  zzzzzz: 1\n", `t.yaml:2: metrics.zzzzzz: unknown key; valid keys here: enabled, gateway-listen, listen`},
		{"duplicate key", "log:\n  level: info\n  level: debug\n", `t.yaml:3: log.level: duplicate key (first at line 2)`},
		{"duplicate group", "groups:\n  us: {}\n  us: {}\n", `t.yaml:3: groups.us: duplicate name (first at line 2)`},
		{"syntax", "gateway:\n  listen: [\n", `t.yaml:2: YAML syntax:`},
		{"tab", "gateway:\n\tlisten: x\n", `t.yaml:2: YAML syntax:`},
		// yaml.v3's parser stage counts lines from 0, its scanner from 1:
		// each of these names the line that is wrong
		{"list item in a mapping", "log:\n  level: info\n- x\n", `t.yaml:3: YAML syntax: did not find expected key`},
		{"mapping under-indented", "log:\n  level: info\n format: text\n", `t.yaml:3: YAML syntax: did not find expected key`},
		{"mapping after a list", "- a\nlog: {}\n", `t.yaml:2: YAML syntax: did not find expected '-' indicator`},
		{"unclosed flow list", "log: {}\nprobe:\n  judges: [a, b\nmetrics: {}\n", `t.yaml:3: YAML syntax: did not find expected ',' or ']'`},
		{"undefined tag on line 1", "log: !a!b x\n", `t.yaml:1: YAML syntax: found undefined tag handle`},
		{"scanner error stays", "log: x\nprobe: y\n  z: 1\n", `t.yaml:3: YAML syntax: mapping values are not allowed in this context`},
		{"end of input is the last line", "log:\n  level: [\n", `t.yaml:2: YAML syntax: did not find expected node content`},
		{"top level list", "- a\n- b\n", `t.yaml:1: expected a mapping of keys`},
		{"section is scalar", "probe: fast\n", `t.yaml:1: probe: expected a mapping of keys`},
		{"second document", "log: {level: info}\n---\nlog: {level: debug}\n", `t.yaml:2: a second YAML document`},
		{"int is text", "probe:\n  concurrency: lots\n", `t.yaml:2: probe.concurrency: "lots" is not a whole number`},
		{"bool is text", "metrics:\n  enabled: maybe\n", `t.yaml:2: metrics.enabled: "maybe" is not true or false`},
		{"string is list", "database: [a]\n", `t.yaml:1: database: expected a string, got a list`},
		{"list is mapping", "probe:\n  judges: {a: b}\n", `t.yaml:2: probe.judges: expected a list, got a mapping`},
		{"empty list item", "tor:\n  extra-config:\n    -\n", `t.yaml:3: tor.extra-config[0]: empty list item`},
		{"bad size", "sources:\n  - {name: a, url: 'file:///a', max-bytes: 64XB}\n", `t.yaml:2: sources[0].max-bytes: "64XB" is not a size`},
		{"zero duration", "probe:\n  interval: 0s\n", `t.yaml:2: probe.interval: must be more than 0`},
		{"negative duration", "gateway:\n  rotate-every: -1s\n", `t.yaml:2: gateway.rotate-every: must not be negative`},
		{"session ttl over its cap", "gateway:\n  session-ttl: 2h\n  max-session-ttl: 1h\n", `t.yaml:2: gateway.session-ttl: 2h0m0s is longer than gateway.max-session-ttl (1h0m0s)`},
		{"zero session id cap", "gateway:\n  max-session-id: 0\n", `t.yaml:2: gateway.max-session-id: 0 is less than 1`},
		{"negative auth delay", "gateway:\n  auth-delay-max: -1s\n", `t.yaml:2: gateway.auth-delay-max: must not be negative`},
		{"negative retire-after", "refresh:\n  retire-after: -1h\n", `t.yaml:2: refresh.retire-after: must not be negative`},
		{"zero concurrency", "probe:\n  concurrency: 0\n", `t.yaml:2: probe.concurrency: 0 is less than 1`},
		{"share not a number", "gateway:\n  eject-client-share: lots\n", `t.yaml:2: gateway.eject-client-share: "lots" is not a number (use 0.1 or 10%)`},
		{"share above 1", "gateway:\n  eject-client-share: 150%\n", `t.yaml:2: gateway.eject-client-share: must be a share of the pool above 0 and at most 1`},
		{"share zero", "gateway:\n  eject-client-share: 0\n", `t.yaml:2: gateway.eject-client-share: must be a share`},
		{"share NaN", "gateway:\n  eject-client-share: .nan\n", `t.yaml:2: gateway.eject-client-share: ".nan" is not a number`},
		{"zero eject window", "gateway:\n  eject-client-window: 0s\n", `t.yaml:2: gateway.eject-client-window: must be more than 0`},
		{"strategy enum", "gateway:\n  strategy: fastest\n", `t.yaml:2: gateway.strategy: "fastest" is not one of round-robin, random, least-latency, sticky`},
		{"listen not host:port", "gateway:\n  listen: \"8000\"\n", `t.yaml:2: gateway.listen: "8000" is not host:port`},
		{"listen bad port", "metrics:\n  listen: 127.0.0.1:99999\n", `t.yaml:2: metrics.listen: "127.0.0.1:99999": port must be 1-65535`},
		{"open gateway", "gateway:\n  listen: 0.0.0.0:8000\n", `t.yaml:2: gateway.listen: 0.0.0.0:8000 is reachable from other hosts and gateway.auth has no users`},
		{"open pinned port", "groups: {us: {}}\ngateway:\n  ports:\n    - {listen: ':8001', group: us}\n", `t.yaml:4: gateway.ports[0].listen: :8001 is reachable from other hosts`},
		{"listen collision", "gateway:\n  listen: 127.0.0.1:8000\nmetrics:\n  listen: 0.0.0.0:8000\n", `t.yaml:4: metrics.listen: 0.0.0.0:8000 collides with gateway.listen`},
		{"port unknown group", "groups:\n  us: {countries: [US]}\ngateway:\n  ports:\n    - listen: 127.0.0.1:8001\n      group: eu\n", `t.yaml:6: gateway.ports[0].group: no group "eu" in groups (have: us)`},
		{"port group and upstream", "groups: {us: {}}\ngateway:\n  ports:\n    - {listen: 127.0.0.1:8001, group: us, upstream: x}\n", `t.yaml:4: gateway.ports[0]: set group or upstream, not both`},
		{"port missing listen", "gateway:\n  ports:\n    - {strategy: random}\n", `t.yaml:3: gateway.ports[0].listen: missing`},
		{"port bad strategy", "gateway:\n  ports:\n    - {listen: 127.0.0.1:8001, strategy: x}\n", `t.yaml:3: gateway.ports[0].strategy: "x" is not one of`},
		{"tor unknown group", "tor:\n  groups: [us]\n", `t.yaml:2: tor.groups[0]: no group "us" in groups (there are none)`},
		{"tor grouped without groups", "tor:\n  enabled: true\n  mode: grouped\n", `t.yaml:3: tor.mode: grouped needs tor.groups to name at least one group`},
		{"tor port range", "tor:\n  port-base: 9100\n  port-max: 9000\n", `t.yaml:3: tor.port-max: 9000 must be between tor.port-base (9100) and 65535`},
		{"tor instances exceed range", "tor:\n  port-base: 9060\n  port-max: 9061\n", `t.yaml:3: tor.port-max: 64 instances must fit in the 2 ports`},
		{"tor instances zero", "tor:\n  max-instances: 0\n", `t.yaml:2: tor.max-instances: 0 is less than 1`},
		{"group tor instances negative", "groups:\n  us:\n    tor-instances: -1\n", `t.yaml:3: groups.us.tor-instances: -1 is less than 0`},
		{"tor bad relays scheme", "tor:\n  relays: ftp://x/y\n", `t.yaml:2: tor.relays: unsupported scheme "ftp"`},
		{"tor bad control", "tor:\n  relays: control://nowhere\n", `t.yaml:2: tor.relays: "nowhere" is not host:port`},
		{"tor extra newline", "tor:\n  extra-config:\n    - |\n      A 1\n      B 2\n", `t.yaml:3: tor.extra-config[0]: one torrc line per item`},
		{"tor runner", "tor: {runner: docker}\n", `t.yaml:1: tor.runner: "docker" is not one of systemd, process, auto`},
		{"country code", "groups:\n  us:\n    countries: [USA]\n", `t.yaml:3: groups.us.countries[0]: "USA" is not a two-letter country code`},
		{"exclude country code", "groups:\n  x:\n    exclude-countries:\n      - US\n      - \"1\"\n", `t.yaml:5: groups.x.exclude-countries[1]: "1" is not a two-letter country code`},
		{"group type", "groups:\n  x: {types: [socks6]}\n", `t.yaml:2: groups.x.types[0]: "socks6" is not one of http, socks4, socks5`},
		{"group name", "groups:\n  non-us: {}\n", `t.yaml:2: groups.non-us: group names may hold letters, digits and '_' only`},
		{"source name missing", "sources:\n  - url: file:///a\n", `t.yaml:2: sources[0].name: missing`},
		{"source duplicate name", "sources:\n  - {name: a, url: 'file:///a'}\n  - {name: a, url: 'file:///b'}\n", `t.yaml:3: sources[1].name: "a" is already the name of sources[0] (line 2)`},
		{"source scheme", "sources:\n  - {name: a, url: 'ftp://x/y'}\n", `t.yaml:2: sources[0].url: unsupported scheme "ftp": use file, http or https`},
		{"source bare path", "sources:\n  - {name: a, url: /srv/x.txt}\n", `t.yaml:2: sources[0].url: "/srv/x.txt" has no scheme: use file:///srv/x.txt`},
		{"source file host", "sources:\n  - {name: a, url: 'file://srv/x.txt'}\n", `t.yaml:2: sources[0].url: "file://srv/x.txt": use file:///absolute/path`},
		{"source http no host", "sources:\n  - {name: a, url: 'http:///x'}\n", `t.yaml:2: sources[0].url: "http:///x" has no host`},
		{"source format", "sources:\n  - {name: a, url: 'file:///a', format: csv}\n", `t.yaml:2: sources[0].format: "csv" is not one of auto, links`},
		{"source zero interval", "sources:\n  - name: a\n    url: file:///a\n    interval: 0s\n", `t.yaml:4: sources[0].interval: must be more than 0`},
		{"judge not url", "probe:\n  judges: [127.0.0.1:18080]\n", `t.yaml:2: probe.judges[0]: "127.0.0.1:18080" is not an http:// or https:// URL`},
		{"no judges", "probe:\n  judges: []\n", `t.yaml:2: probe.judges: needs at least one judge URL`},
		{"group asn", "groups:\n  x:\n    asn: [13335, ASx]\n", `t.yaml:3: groups.x.asn[1]: "ASx" is not an AS number (use 13335 or AS13335)`},
		{"group asn zero", "groups:\n  x: {exclude-asn: [0]}\n", `t.yaml:2: groups.x.exclude-asn[0]: "0" is not an AS number`},
		{"group class", "groups:\n  x: {class: [hosting]}\n", `t.yaml:2: groups.x.class[0]: "hosting" is not one of datacenter, residential, mobile`},
		{"group min-throughput", "groups:\n  x: {min-throughput: fast}\n", `t.yaml:2: groups.x.min-throughput: "fast" is not a size`},
		{"ipv6 judge not url", "probe:\n  ipv6-judge: '[::1]:80'\n", `t.yaml:2: probe.ipv6-judge: "[::1]:80" is not an http:// or https:// URL`},
		{"asn database not mmdb", "probe:\n  asn-database: /srv/asn.csv\n", `t.yaml:2: probe.asn-database: "/srv/asn.csv" is not a MaxMind .mmdb file`},
		{"real ip", "probe:\n  real-ip: me\n", `t.yaml:2: probe.real-ip: "me" is not an IP address`},
		{"target without url", "probe:\n  target: {enabled: true}\n", `t.yaml:2: probe.target.url: missing`},
		{"target status", "probe:\n  target:\n    status: 999\n", `t.yaml:3: probe.target.status: 999 is not an HTTP status`},
		{"user without password", "gateway:\n  auth:\n    users:\n      - {username: a}\n", `t.yaml:4: gateway.auth.users[0].password: missing`},
		{"duplicate user", "gateway:\n  auth:\n    users:\n      - {username: a, password: b}\n      - {username: a, password: c}\n", `t.yaml:5: gateway.auth.users[1].username: "a" is already gateway.auth.users[0]`},
		{"log level", "log:\n  level: loud\n", `t.yaml:2: log.level: "loud" is not one of trace, debug, info, warn, warning, error`},
		{"log format", "log:\n  format: xml\n", `t.yaml:2: log.format: "xml" is not one of auto, text, json`},
		{"slo", "slo:\n  min-healthy: -1\n", `t.yaml:2: slo.min-healthy: -1 is less than 0`},
		{"empty database", "database: \"\"\n", `t.yaml:1: database: must name the SQLite file`},
		{"complex key", "? [a]\n: b\n", `t.yaml:1: keys must be plain names`},
		{"merge key", "gateway:\n  <<: {listen: 127.0.0.1:1}\n", `t.yaml:2: gateway.<<: unknown key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in), "t.yaml")
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			if c != nil {
				t.Error("a config came back with the error")
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error\n  %s\nwant prefix\n  %s", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error %T is not a *config.Error", err)
			}
		})
	}
}

func TestAllProblemsReported(t *testing.T) {
	_, err := Parse([]byte("probe:\n  interval: 0s\n  timeout: -1s\ngateway:\n  strategy: x\n"), "t.yaml")
	if err == nil {
		t.Fatal("no error")
	}
	want := "t.yaml:2: probe.interval: must be more than 0 (a duration like 30s, 5m)\n" +
		"t.yaml:3: probe.timeout: must be more than 0 (a duration like 30s, 5m)\n" +
		`t.yaml:5: gateway.strategy: "x" is not one of round-robin, random, least-latency, sticky, weighted`
	if err.Error() != want {
		t.Errorf("error\n%s\nwant\n%s", err, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "proxypool.yaml")
	if err := os.WriteFile(p, []byte("gateway:\n  strategy: nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.HasPrefix(err.Error(), p+":2: gateway.strategy: ") {
		t.Errorf("Load error = %v, want it to start with the path", err)
	}
	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file error = %v", err)
	}
}

// TestDatabaseURLFromEnv: PROXYPOOL_DATABASE_URL replaces the config's
// database (a PostgreSQL password stays out of the file); anything but a
// postgres:// URL there is refused without echoing it.
func TestDatabaseURLFromEnv(t *testing.T) {
	p := filepath.Join(t.TempDir(), "proxypool.yaml")
	if err := os.WriteFile(p, []byte("database: /var/lib/x/pool.db\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		env, want, wantErr string
	}{
		{"", "/var/lib/x/pool.db", ""},
		{"postgres://pp:secret@db.example:5432/pool?sslmode=require", "postgres://pp:secret@db.example:5432/pool?sslmode=require", ""},
		{"/srv/other.db", "", DatabaseEnvVar + ": must be a postgres:// URL"},
		{"postgres://pp:secret@db.example", "", DatabaseEnvVar + ": names no database"},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			t.Setenv(DatabaseEnvVar, tt.env)
			c, err := Load(p)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "secret") {
					t.Fatalf("Load = %v, want %q (and no password)", err, tt.wantErr)
				}
				return
			}
			if err != nil || c.Database != tt.want {
				t.Fatalf("Load: database %q, %v; want %q", c.Database, err, tt.want)
			}
		})
	}
}

func TestPath(t *testing.T) {
	t.Setenv(EnvVar, "")
	if got := Path(""); got != DefaultPath {
		t.Errorf("Path(\"\") = %q", got)
	}
	t.Setenv(EnvVar, "/tmp/env.yaml")
	if got := Path(""); got != "/tmp/env.yaml" {
		t.Errorf("with env: %q", got)
	}
	if got := Path("./flag.yaml"); got != "./flag.yaml" {
		t.Errorf("flag wins: %q", got)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"0": 0, "65536": 65536, "64MiB": 64 << 20, "64 mib": 64 << 20, "512KiB": 512 << 10,
		"1GB": 1e9, "1gib": 1 << 30, "10k": 10000, "2_048": 2048, "7B": 7,
	} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5MiB", "1TiB", "99999999999999GiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q): no error", in)
		}
	}
	if s := ByteSize(64 << 20).String(); s != "64MiB" {
		t.Errorf("String = %q", s)
	}
}

func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile(shipped); err == nil {
		f.Add(string(b))
	}
	for _, s := range []string{
		"", "a: b", "gateway: {ports: [{listen: ':1', group: x}]}", "groups: {a: &a {countries: [us]}, b: *a}",
		"sources: [{name: a, url: 'file://./x'}]", "tor: {relays: 'control://[::1]:9051'}", "? [a]\n: b",
		"x: &a [*a]", "probe: {judges: [*x]}", "- - -", "sources: [~, ~]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Parse([]byte(in), "f.yaml")
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse(%q) = %v, %v: want exactly one", in, c, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "f.yaml") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

// TestEjectClientShare: the per-client ejection budget reads as a
// fraction or a percentage, and defaults to a tenth of the pool a minute.
func TestEjectClientShare(t *testing.T) {
	for _, tt := range []struct {
		in     string
		share  float64
		window time.Duration
	}{
		{"", 0.1, time.Minute},
		{"gateway: {eject-client-share: 0.25}\n", 0.25, time.Minute},
		{"gateway: {eject-client-share: 5%, eject-client-window: 30s}\n", 0.05, 30 * time.Second},
		{"gateway: {eject-client-share: 1}\n", 1, time.Minute},
	} {
		c, err := Parse([]byte(tt.in), "t.yaml")
		if err != nil {
			t.Fatalf("%q: %v", tt.in, err)
		}
		if g := c.Gateway; math.Abs(g.EjectClientShare-tt.share) > 1e-9 || g.EjectClientWindow != tt.window {
			t.Errorf("%q: share %v window %v, want %v %v", tt.in, g.EjectClientShare, g.EjectClientWindow, tt.share, tt.window)
		}
	}
}

// TestDerivedDefaults: a default that depends on another key follows the
// value the user set for that key, so one key alone never fails on a key
// the user never wrote.
func TestDerivedDefaults(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want func(*Config) bool
		what string
	}{
		{"tor: {port-base: 26600}\n", func(c *Config) bool { return c.Tor.PortMax == 26600+9999-9060 }, "tor.port-max follows tor.port-base"},
		{"tor: {port-base: 65000}\n", func(c *Config) bool { return c.Tor.PortMax == 65535 }, "tor.port-max stops at 65535"},
		{"tor: {port-base: 26600, port-max: 26700}\n", func(c *Config) bool { return c.Tor.PortMax == 26700 }, "a set tor.port-max stays"},
		{"probe: {interval: 20s}\n", func(c *Config) bool { return c.Probe.FailingInterval == 20*time.Second }, "probe.failing-interval at most probe.interval"},
		{"probe: {interval: 1h}\n", func(c *Config) bool { return c.Probe.FailingInterval == time.Minute }, "probe.failing-interval keeps its default under a longer interval"},
		{"gateway: {session-ttl: 48h}\n", func(c *Config) bool { return c.Gateway.MaxSessionTTL == 48*time.Hour }, "gateway.max-session-ttl covers gateway.session-ttl"},
	} {
		c, err := Parse([]byte(tt.in), "t.yaml")
		if err != nil {
			t.Errorf("%s: %q: %v", tt.what, tt.in, err)
			continue
		}
		if !tt.want(c) {
			t.Errorf("%s: %q gave tor.port-max %d, probe.failing-interval %v, gateway.max-session-ttl %v", tt.what, tt.in, c.Tor.PortMax, c.Probe.FailingInterval, c.Gateway.MaxSessionTTL)
		}
	}
}

// TestGatewayTryKeys: rotate-every takes a request count or a duration,
// upstream-handshake-timeout auto or a duration, max-attempts caps every
// try; each hostile value is refused naming file:line: key.
func TestGatewayTryKeys(t *testing.T) {
	for _, tt := range []struct {
		in      string
		rot     Rotation
		try     TryTimeout
		wantErr string
	}{
		{in: "", rot: Rotation{}, try: 0},
		{in: "gateway: {rotate-every: 10}\n", rot: Rotation{Requests: 10}},
		{in: "gateway: {rotate-every: 2s}\n", rot: Rotation{Period: 2 * time.Second}},
		{in: "gateway: {rotate-every: 0s}\n", rot: Rotation{}},
		{in: "gateway: {upstream-handshake-timeout: 3s}\n", try: TryTimeout(3 * time.Second)},
		{in: "gateway: {upstream-handshake-timeout: AUTO}\n", try: 0},
		{in: "gateway:\n  rotate-every: -3\n", wantErr: `t.yaml:2: gateway.rotate-every: must not be negative (0 turns it off), got "-3"`},
		{in: "gateway:\n  rotate-every: often\n", wantErr: `t.yaml:2: gateway.rotate-every: "often" is neither a number of requests nor a duration (use 10 or 2s)`},
		{in: "gateway:\n  rotate-every: {n: 1}\n", wantErr: `t.yaml:2: gateway.rotate-every: expected a value, got a mapping`},
		{in: "gateway:\n  upstream-handshake-timeout: 0s\n", wantErr: `t.yaml:2: gateway.upstream-handshake-timeout: "0s": use auto or a duration above 0`},
		{in: "gateway:\n  upstream-handshake-timeout: soon\n", wantErr: `t.yaml:2: gateway.upstream-handshake-timeout: "soon" is not auto or a duration (use auto, 3s)`},
		{in: "gateway:\n  max-attempts: 17\n", wantErr: `t.yaml:2: gateway.max-attempts: 17 is not between 1 and 16`},
		{in: "gateway:\n  max-attempts: 4\n  max-tries: 5\n", wantErr: `t.yaml:3: gateway.max-tries: 5 is more than gateway.max-attempts (4), which caps every try`},
		{in: "gateway:\n  client-timeout: 0s\n", wantErr: `t.yaml:2: gateway.client-timeout: must be more than 0`},
		{in: "gateway:\n  handshake-timeout: 4s\n  upstream-handshake-timeout: 3s\n", wantErr: `t.yaml:2: gateway.handshake-timeout: is the old name of gateway.upstream-handshake-timeout, set too (line 3): keep only that one`},
	} {
		c, err := Parse([]byte(tt.in), "t.yaml")
		if tt.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("%q: error %v, want %s", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if g := c.Gateway; g.RotateEvery != tt.rot || g.UpstreamHandshakeTimeout != tt.try || g.MaxAttempts != 16 || g.ClientTimeout != 10*time.Second {
			t.Errorf("%q: rotate-every %v, upstream-handshake-timeout %v, max-attempts %d, client-timeout %v", tt.in, g.RotateEvery, g.UpstreamHandshakeTimeout, g.MaxAttempts, g.ClientTimeout)
		}
		if len(c.Warnings) > 0 {
			t.Errorf("%q: warnings %v", tt.in, c.Warnings)
		}
	}
}

// TestHandshakeTimeoutIsDeprecated: the old key still works, as the
// upstream try bound it documented, with a warning naming file:line; the
// client's deadline keeps its default.
func TestHandshakeTimeoutIsDeprecated(t *testing.T) {
	c, err := Parse([]byte("gateway:\n  listen: 127.0.0.1:8000\n  handshake-timeout: 4s\n"), "/etc/proxypool/proxypool.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if g := c.Gateway; g.UpstreamHandshakeTimeout != TryTimeout(4*time.Second) || g.ClientTimeout != 10*time.Second {
		t.Errorf("handshake-timeout: 4s gave upstream-handshake-timeout %v, client-timeout %v; want 4s and the default 10s", g.UpstreamHandshakeTimeout, g.ClientTimeout)
	}
	want := "/etc/proxypool/proxypool.yaml:3: gateway.handshake-timeout: deprecated: read as gateway.upstream-handshake-timeout: 4s"
	if len(c.Warnings) != 1 || !strings.HasPrefix(c.Warnings[0].Error(), want) {
		t.Errorf("warnings %v, want one starting %q", c.Warnings, want)
	}
}

// TestExitQualityKeys: the exit-quality keys decode as written (an AS
// number with or without "AS", a class in any case, a throughput as a
// size per second) and default to off.
func TestExitQualityKeys(t *testing.T) {
	c, err := Parse([]byte(`probe:
  asn-database: /srv/asn.mmdb
  asn-classes: /srv/classes.txt
  ipv6-judge: "http://[2001:db8::1]/get"
gateway: {strategy: weighted}
groups:
  home:
    asn: [7922, AS3320]
    exclude-asn: [as13335]
    class: [Residential, mobile]
    min-throughput: 1MiB
  any: {}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Probe; p.ASNDatabase != "/srv/asn.mmdb" || p.ASNClasses != "/srv/classes.txt" || p.IPv6Judge != "http://[2001:db8::1]/get" {
		t.Errorf("probe = %+v", p)
	}
	if c.Gateway.Strategy != "weighted" {
		t.Errorf("strategy = %q", c.Gateway.Strategy)
	}
	home := c.Groups["home"]
	if !reflect.DeepEqual(home.ASN, []ASN{7922, 3320}) || !reflect.DeepEqual(home.ExcludeASN, []ASN{13335}) ||
		!reflect.DeepEqual(home.Class, []string{"residential", "mobile"}) || home.MinThroughput != 1<<20 {
		t.Errorf("groups.home = %+v", home)
	}
	def := Default()
	if any := c.Groups["any"]; any.ASN != nil || any.ExcludeASN != nil || any.Class != nil || any.MinThroughput != 0 ||
		def.Probe.ASNDatabase != "" || def.Probe.IPv6Judge != "" {
		t.Errorf("defaults: group %+v, probe %+v; want all off", any, def.Probe)
	}
}
