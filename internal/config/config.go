package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Where the config lives.
const (
	// DefaultPath is the config every program reads without --config.
	DefaultPath = "/etc/proxypool/proxypool.yaml"
	// EnvVar, when set and no --config is given, names the config.
	EnvVar = "PROXYPOOL_CONFIG"
	// DatabaseEnvVar, when set, is the database every program opens,
	// whatever the config's database says: a PostgreSQL URL with its
	// password kept out of the config file.
	DatabaseEnvVar = "PROXYPOOL_DATABASE_URL"
)

// Path picks the config path: the --config flag's value if given, else
// $PROXYPOOL_CONFIG if set, else DefaultPath.
func Path(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if p := os.Getenv(EnvVar); p != "" {
		return p
	}
	return DefaultPath
}

// ByteSize is a number of bytes; in YAML a whole number or "64MiB".
type ByteSize int64

// String renders the size with the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		n    int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if b != 0 && int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Config is proxypool.yaml. Every field has a documented default (see
// Default and etc/proxypool/proxypool.yaml); keys absent from the file keep
// it.
type Config struct {
	// Database is the SQLite store's path, or a postgres:// URL of a
	// PostgreSQL database (several machines over one pool).
	Database string           `yaml:"database"`
	Sources  []Source         `yaml:"sources"`
	Refresh  Refresh          `yaml:"refresh"`
	Probe    Probe            `yaml:"probe"`
	Gateway  Gateway          `yaml:"gateway"`
	Groups   map[string]Group `yaml:"groups"`
	Tor      Tor              `yaml:"tor"`
	Metrics  Metrics          `yaml:"metrics"`
	API      API              `yaml:"api"`
	Log      Log              `yaml:"log"`
	SLO      SLO              `yaml:"slo"`

	// File is the path the config was loaded from ("" for Default).
	File string `yaml:"-"`
	// Warnings are what the file says that still works but should
	// change (a deprecated key), each naming file:line: key; programs log
	// them once at load.
	Warnings []*Error `yaml:"-"`
	pos      map[string]int
}

// Source is one list refresh fetches.
type Source struct {
	Name string `yaml:"name"` // unique; letters, digits, . _ -
	// URL is file:///abs/path, file://./relative/path, http:// or https://.
	URL string `yaml:"url"`
	// Format: auto | links | socks5 | socks4 | http | https | base64 | clash | json.
	Format      string        `yaml:"format"`
	Interval    time.Duration `yaml:"interval"`     // fetch period; default refresh.interval
	MinInterval time.Duration `yaml:"min-interval"` // never fetch more often, even on demand (10m)
	Timeout     time.Duration `yaml:"timeout"`      // whole fetch (30s)
	MaxBytes    ByteSize      `yaml:"max-bytes"`    // larger bodies are rejected (64MiB)
}

// FilePath returns the filesystem path of a file:// source ("./x" for
// file://./x, "/abs" for file:///abs) and true, or "", false for other
// schemes. Relative paths are relative to the working directory.
func (s Source) FilePath() (string, bool) { return filePath(s.URL) }

// Refresh tunes the fetching of sources.
type Refresh struct {
	Interval    time.Duration `yaml:"interval"`    // 1h
	Concurrency int           `yaml:"concurrency"` // sources fetched at once (8)
	// RetireAfter: an upstream no source has listed for this long leaves
	// the pool (state retired) at the next refresh; 0 = never (24h).
	RetireAfter time.Duration `yaml:"retire-after"`
}

// Probe tunes the health checker.
type Probe struct {
	Judges          []string      `yaml:"judges"`           // tried in order until one answers
	Interval        time.Duration `yaml:"interval"`         // re-check of a healthy upstream (5m)
	FailingInterval time.Duration `yaml:"failing-interval"` // re-check while failing (1m)
	Timeout         time.Duration `yaml:"timeout"`          // one check (5s)
	Concurrency     int           `yaml:"concurrency"`      // checks in flight (1024)
	MaxFailures     int           `yaml:"max-failures"`     // failures in a row before dead (3)
	DeadBackoffMax  time.Duration `yaml:"dead-backoff-max"` // cap of a dead upstream's re-check backoff (6h)
	DeleteAfter     time.Duration `yaml:"delete-after"`     // dead this long → removed (72h)
	History         int           `yaml:"history"`          // check results kept per upstream (32)
	GeoIP           string        `yaml:"geoip"`            // tor geoip file or a .mmdb; "" = no countries
	GeoIP6          string        `yaml:"geoip6"`           // tor geoip6 file; "" = no IPv6 countries
	RealIP          string        `yaml:"real-ip"`          // our public IP; "" = learned from the judges
	Target          Target        `yaml:"target"`
	UplinkCheck     bool          `yaml:"uplink-check"` // skip rounds while our own uplink is down (true)

	// ASNDatabase is a MaxMind-format ASN database (GeoLite2-ASN, DB-IP
	// ASN lite .mmdb): the exit's ASN, organisation and class; "" = none.
	ASNDatabase string `yaml:"asn-database"`
	ASNClasses  string `yaml:"asn-classes"` // rules read before the shipped class table; "" = the shipped one only
	IPv6Judge   string `yaml:"ipv6-judge"`  // a judge on an IPv6 address: exits that reach it are IPv6; "" = not checked
	// Targets are named checks made through healthy upstreams apart from
	// liveness (internal/checks): groups and "-target-NAME" usernames
	// can require them.
	Targets map[string]TargetCheck `yaml:"targets"`
	Speed   Speed                  `yaml:"speed"` // bandwidth check; off while url is empty
}

// TargetCheck is one named target check (probe.targets.NAME).
type TargetCheck struct {
	URL         string            `yaml:"url"`
	Status      []int             `yaml:"status"`      // accepted statuses; empty: any 2xx
	Body        string            `yaml:"body"`        // regexp the body must match; "": any
	NotBody     string            `yaml:"not-body"`    // regexp the body must not match (a captcha page)
	MaxTime     time.Duration     `yaml:"max-time"`    // one check, dial to the end of the body (10s)
	Headers     map[string]string `yaml:"headers"`     // sent with the request
	Interval    time.Duration     `yaml:"interval"`    // between passes (10m)
	TTL         time.Duration     `yaml:"ttl"`         // how long a result counts (3 × interval)
	Concurrency int               `yaml:"concurrency"` // checks in flight (16)
	Budget      int               `yaml:"budget"`      // upstreams per pass, cheapest first; 0: all healthy
}

// Speed is the bandwidth check through healthy upstreams (probe.speed).
type Speed struct {
	URL         string        `yaml:"url"`          // "" switches the check off
	Size        ByteSize      `yaml:"size"`         // downloaded per check (1MiB)
	Upload      ByteSize      `yaml:"upload"`       // uploaded per check; 0: none
	BudgetBytes ByteSize      `yaml:"budget-bytes"` // moved per pass, both ways (64MiB)
	Concurrency int           `yaml:"concurrency"`  // checks in flight (2)
	Interval    time.Duration `yaml:"interval"`     // between passes (1h)
	MaxTime     time.Duration `yaml:"max-time"`     // one check (30s)
	Kinds       []string      `yaml:"kinds"`        // upstream kinds measured; empty: all
	Sources     []string      `yaml:"sources"`      // only upstreams these sources list; empty: all
}

// Target is an optional second check: the upstream must also fetch URL.
type Target struct {
	URL     string `yaml:"url"`
	Status  int    `yaml:"status"` // expected HTTP status (200)
	Enabled bool   `yaml:"enabled"`
}

// Gateway tunes the client-facing proxy.
type Gateway struct {
	Listen      string   `yaml:"listen"`       // 127.0.0.1:8000
	Strategy    string   `yaml:"strategy"`     // round-robin | random | least-latency | sticky | weighted
	RotateEvery Rotation `yaml:"rotate-every"` // keep an upstream for N requests or this long; 0 = new one per request
	// MaxTries is how many upstreams that failed slowly (a timeout, a
	// broken handshake) a request gives up after (3); a connect refused or
	// unreachable at once costs nothing and does not count.
	MaxTries int `yaml:"max-tries"`
	// MaxAttempts caps every try of one request, instant refusals
	// included (16, at most MaxAttempts).
	MaxAttempts   int           `yaml:"max-attempts"`
	DialTimeout   time.Duration `yaml:"dial-timeout"`   // TCP connect to an upstream (5s)
	ClientTimeout time.Duration `yaml:"client-timeout"` // the client's greeting and request head (10s)
	// UpstreamHandshakeTimeout bounds one try through an upstream
	// (connect and its proxy handshake): auto (3× its latency within
	// [MinAutoTry, dial-timeout]) or a fixed duration.
	UpstreamHandshakeTimeout TryTimeout `yaml:"upstream-handshake-timeout"`
	// HandshakeTimeout is upstream-handshake-timeout's old name, still
	// read as it (with a warning).
	HandshakeTimeout time.Duration `yaml:"handshake-timeout"`
	TotalTimeout     time.Duration `yaml:"total-timeout"` // all tries together (15s)
	IdleTimeout      time.Duration `yaml:"idle-timeout"`  // relay with no traffic (5m)
	MaxConns         int           `yaml:"max-conns"`     // 10000
	EjectAfter       int           `yaml:"eject-after"`   // passive failures in a row before an upstream is skipped (3)
	// EjectClientShare and EjectClientWindow bound what one client (source
	// address) can eject: at most this share of the pool per window.
	EjectClientShare  float64       `yaml:"eject-client-share"`  // 0.1
	EjectClientWindow time.Duration `yaml:"eject-client-window"` // 1m
	SessionTTL        time.Duration `yaml:"session-ttl"`         // sticky session lifetime (10m)
	MaxSessionTTL     time.Duration `yaml:"max-session-ttl"`     // longest "-ttl-" a username may ask for (24h)
	MaxSessionID      int           `yaml:"max-session-id"`      // bytes of a session id (64)
	MaxSessions       int           `yaml:"max-sessions"`        // sessions remembered, least recently used forgotten past it (100000)
	// MaxConnsPerClient bounds one source IP's share of max-conns (5000);
	// the excess is answered 429 / SOCKS "not allowed".
	MaxConnsPerClient int `yaml:"max-conns-per-client"`
	// AuthDelayMax caps the growing delay before answering a source whose
	// credentials keep failing (5s; 0 = answer at once).
	AuthDelayMax time.Duration `yaml:"auth-delay-max"`
	AllowOpen    bool          `yaml:"allow-open"`   // permit a non-loopback listen without auth
	DebugHeader  bool          `yaml:"debug-header"` // add X-Proxypool-Upstream to HTTP responses
	Auth         Auth          `yaml:"auth"`
	Ports        []Port        `yaml:"ports"`
}

// Auth lists the gateway's users; none means no authentication.
type Auth struct {
	Users []User `yaml:"users"`
}

// User is one gateway login.
type User struct {
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// Port is a pinned listener serving one group or one upstream.
type Port struct {
	Listen   string `yaml:"listen"`
	Group    string `yaml:"group"`    // a key of groups; "" = the whole pool
	Strategy string `yaml:"strategy"` // "" in the file = gateway.strategy (filled in)
	Upstream string `yaml:"upstream"` // pin one upstream id instead of a group
}

// Group selects upstreams. Empty lists select everything.
type Group struct {
	Countries        []string `yaml:"countries"`         // exit countries, upper-case ISO codes
	ExcludeCountries []string `yaml:"exclude-countries"` // removed after Countries
	Types            []string `yaml:"types"`             // upstream kinds: socks5, vless, tor, …
	Sources          []string `yaml:"sources"`           // source names
	ASN              []ASN    `yaml:"asn"`               // exits in these autonomous systems (13335 or AS13335)
	ExcludeASN       []ASN    `yaml:"exclude-asn"`       // never exits in these
	Class            []string `yaml:"class"`             // datacenter | residential | mobile
	MinThroughput    ByteSize `yaml:"min-throughput"`    // per second; a measured throughput below it leaves (unmeasured stays)
	MinHealthy       int      `yaml:"min-healthy"`       // SLO floor of healthy members (0 = none)
	MinExits         int      `yaml:"min-exits"`         // SLO floor of distinct exit IPs (0 = none)
	// TorInstances reserves this many of tor.max-instances for the group
	// (grouped and single mode) before the rest is shared by bandwidth;
	// 0 = its floor's worth (max of min-healthy, min-exits), or a share.
	TorInstances int `yaml:"tor-instances"`
	// RequireTargets are probe.targets names a member must currently pass.
	RequireTargets []string `yaml:"require-targets"`
}

// Tor configures the generated Tor instances.
type Tor struct {
	Enabled bool `yaml:"enabled"`
	// Relays is an Onionoo details URL, a CSV URL or file, or
	// control://host:port of a running tor.
	Relays       string   `yaml:"relays"`
	RelaysFormat string   `yaml:"relays-format"` // auto | onionoo | csv | control
	Mode         string   `yaml:"mode"`          // country | grouped | single
	Groups       []string `yaml:"groups"`        // groups whose countries get instances
	PortBase     int      `yaml:"port-base"`     // 9060
	PortMax      int      `yaml:"port-max"`      // 9999
	MaxInstances int      `yaml:"max-instances"` // 64
	TorrcDir     string   `yaml:"torrc-dir"`     // /etc/tor
	DataDir      string   `yaml:"data-dir"`      // /var/lib/proxypool/tor (process runner)
	Binary       string   `yaml:"binary"`        // tor
	Runner       string   `yaml:"runner"`        // systemd | process | auto
	// NewnymPeriod sends NEWNYM to every instance this often; 0 = never.
	NewnymPeriod        time.Duration `yaml:"newnym-period"`
	MaxCircuitDirtiness time.Duration `yaml:"max-circuit-dirtiness"` // 10m
	// BootstrapGrace is how long a new instance has to bootstrap and pass
	// the probe before the SLO guard may start another for its group (1m).
	BootstrapGrace time.Duration `yaml:"bootstrap-grace"`
	ExtraConfig    []string      `yaml:"extra-config"` // raw torrc lines
	Refresh        time.Duration `yaml:"refresh"`      // relay re-discovery (6h)
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	Listen string `yaml:"listen"` // 127.0.0.1:9464: the probe (pool, probe, sources, SLO) and `proxypoold run` (everything)
	// GatewayListen is where a separate `proxypoold gateway` process (the
	// systemd unit) serves its own metrics; "" = none.
	GatewayListen string `yaml:"gateway-listen"` // 127.0.0.1:9465
	Enabled       bool   `yaml:"enabled"`
}

// API configures the HTTP control API (internal/api): /api/v1 and the
// Clash external-controller paths, served by the process that owns the
// store.
type API struct {
	// Listen is 127.0.0.1:9090 (mihomo's external-controller default, which
	// dashboards try first); "" = no API.
	Listen string `yaml:"listen"`
	// Secret is the bearer token (Authorization: Bearer, ?token= on
	// WebSockets); "" = none, allowed only on a loopback listen.
	Secret string `yaml:"secret"`
	// CORSOrigins are the browser origins (e.g. http://127.0.0.1:21080)
	// whose pages may call the API; "*" allows any. Empty: none.
	CORSOrigins []string `yaml:"cors-origins"`
	// Clash tunes the Clash external-controller paths (dashboards).
	Clash Clash `yaml:"clash"`
}

// Clash tunes what the Clash external-controller paths show dashboards.
type Clash struct {
	// GroupLimit caps the members a group or provider lists, best first
	// (200): a card per member of a 10,000-member group freezes a page.
	GroupLimit int `yaml:"group-limit"`
	// PinTTL is how long PUT /proxies/{group} pins a group when the
	// request names no ttl (1h).
	PinTTL time.Duration `yaml:"pin-ttl"`
	// TestURL is the groups' testUrl, the dashboards' delay-test target;
	// "" = the first probe.judges entry, which answers every upstream that
	// passed its check (the dashboards' own default, gstatic.com, is out
	// of reach of an offline host).
	TestURL string `yaml:"test-url"`
}

// Log configures logging.New.
type Log struct {
	Level  string `yaml:"level"`  // trace | debug | info | warn | error
	Format string `yaml:"format"` // auto | text | json
}

// SLO holds the pool floors and how the probe acts on them. The pool-wide
// floors live here; per-group floors are groups.<name>.min-healthy/min-exits.
type SLO struct {
	CheckInterval     time.Duration `yaml:"check-interval"`      // 30s
	MinActionInterval time.Duration `yaml:"min-action-interval"` // between two remedial actions (2m)
	MinHealthy        int           `yaml:"min-healthy"`         // pool-wide healthy floor (1; 0 = none)
	MinExits          int           `yaml:"min-exits"`           // pool-wide distinct exit IPs floor (0 = none)
}

// Default returns the configuration used for every key a file leaves out.
func Default() *Config {
	return &Config{
		Database: "/var/lib/proxypool/proxypool.db",
		Refresh:  Refresh{Interval: time.Hour, Concurrency: 8, RetireAfter: 24 * time.Hour},
		Probe: Probe{
			Judges:          []string{"http://httpbin.org/get", "https://ifconfig.me/all.json", "https://api.ipify.org"},
			Interval:        5 * time.Minute,
			FailingInterval: time.Minute,
			Timeout:         5 * time.Second,
			Concurrency:     1024,
			MaxFailures:     3,
			DeadBackoffMax:  6 * time.Hour,
			DeleteAfter:     72 * time.Hour,
			History:         32,
			GeoIP:           "/usr/share/tor/geoip",
			GeoIP6:          "/usr/share/tor/geoip6",
			Target:          Target{Status: 200},
			UplinkCheck:     true,
			Speed:           Speed{Size: 1 << 20, BudgetBytes: 64 << 20, Concurrency: 2, Interval: time.Hour, MaxTime: 30 * time.Second},
		},
		Gateway: Gateway{
			Listen:            "127.0.0.1:8000",
			Strategy:          "round-robin",
			MaxTries:          3,
			MaxAttempts:       MaxAttempts,
			DialTimeout:       5 * time.Second,
			ClientTimeout:     10 * time.Second,
			TotalTimeout:      15 * time.Second,
			IdleTimeout:       5 * time.Minute,
			MaxConns:          10000,
			EjectAfter:        3,
			EjectClientShare:  0.1,
			EjectClientWindow: time.Minute,
			SessionTTL:        10 * time.Minute,
			MaxSessionTTL:     24 * time.Hour,
			MaxSessionID:      64,
			MaxSessions:       100_000,
			MaxConnsPerClient: 5000,
			AuthDelayMax:      5 * time.Second,
		},
		Tor: Tor{
			Relays:              "https://onionoo.torproject.org/details",
			RelaysFormat:        "auto",
			Mode:                "country",
			PortBase:            9060,
			PortMax:             9999,
			MaxInstances:        64,
			TorrcDir:            "/etc/tor",
			DataDir:             "/var/lib/proxypool/tor",
			Binary:              "tor",
			Runner:              "auto",
			MaxCircuitDirtiness: 10 * time.Minute,
			BootstrapGrace:      time.Minute,
			Refresh:             6 * time.Hour,
		},
		Metrics: Metrics{Listen: "127.0.0.1:9464", GatewayListen: "127.0.0.1:9465", Enabled: true},
		API:     API{Listen: "127.0.0.1:9090", CORSOrigins: []string{}, Clash: Clash{GroupLimit: 200, PinTTL: time.Hour}},
		Log:     Log{Level: "info", Format: "auto"},
		SLO:     SLO{CheckInterval: 30 * time.Second, MinActionInterval: 2 * time.Minute, MinHealthy: 1},
		pos:     map[string]int{},
	}
}

// defaultSource is the starting value of every sources[] item; Interval is
// filled from refresh.interval after decoding when the item leaves it out.
func defaultSource() Source {
	return Source{Format: "auto", MinInterval: 10 * time.Minute, Timeout: 30 * time.Second, MaxBytes: 64 << 20}
}

// defaultTargetCheck is the starting value of every probe.targets item;
// TTL follows its interval after decoding when the item leaves it out.
func defaultTargetCheck() TargetCheck {
	return TargetCheck{MaxTime: 10 * time.Second, Interval: 10 * time.Minute, Concurrency: 16}
}

// Load reads and parses the config at path. Errors name the file, line and
// key: "proxypool.yaml:12: probe.interval: ...".
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	c, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	if u := os.Getenv(DatabaseEnvVar); u != "" {
		if err := checkPostgresURL(u); err != nil {
			return nil, fmt.Errorf("%s: %w", DatabaseEnvVar, err)
		}
		c.Database = u
	}
	return c, nil
}

// Parse parses data, whose errors are reported as coming from filename. It
// never panics. The error, if any, joins one *Error per problem found,
// ordered by line.
func Parse(data []byte, filename string) (*Config, error) {
	c := Default()
	c.File = filename
	d := &decoder{pos: c.pos, file: filename}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, syntaxError(filename, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{File: filename, Line: extra.Line, Msg: "a second YAML document (---) is not supported"}
	} else if !errors.Is(err, io.EOF) {
		return nil, syntaxError(filename, data, err)
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		top := resolve(root.Content[0])
		if !isNull(top) {
			d.decode(top, reflectValue(c), "")
		}
	}
	if len(d.errs) == 0 {
		c.fill()
		v := &validator{c: c}
		v.validate()
		d.errs = append(d.errs, v.errs...)
	}
	if len(d.errs) > 0 {
		return nil, joinErrors(d.errs)
	}
	return c, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are the messages of yaml.v3's parser stage (parserc.go).
// yaml.v3 numbers a parser error's line from 0 (it adds 1 only for scanner
// errors), so these name the line before the real one, and none at all
// when the problem is on line 1.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// syntaxError turns a yaml.v3 error into an *Error on the line it names,
// counted from 1 whatever stage of yaml.v3 found it, and never past the
// last line of data (a problem found at the end of input).
func syntaxError(file string, data []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if parserProblems[msg] {
		line++
		if last := lineCount(data); line > last {
			line = last
		}
	}
	return &Error{File: file, Line: line, Msg: "YAML syntax: " + msg}
}

// lineCount is the number of lines in data, a last one without '\n'
// included; at least 1.
func lineCount(data []byte) int {
	n := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		n++
	}
	return max(n, 1)
}

// fill derives the defaults that depend on other keys.
func (c *Config) fill() {
	c.Log.Level = strings.ToLower(c.Log.Level)
	for i := range c.Sources {
		if _, set := c.pos[fmt.Sprintf("sources[%d].interval", i)]; !set {
			c.Sources[i].Interval = c.Refresh.Interval
		}
	}
	for i := range c.Gateway.Ports {
		if c.Gateway.Ports[i].Strategy == "" {
			c.Gateway.Ports[i].Strategy = c.Gateway.Strategy
		}
	}
	for name, t := range c.Probe.Targets {
		if _, set := c.pos["probe.targets."+name+".ttl"]; !set {
			t.TTL = 3 * t.Interval // one missed pass does not drop the result
			c.Probe.Targets[name] = t
		}
	}
	c.fillDerived()
}

// fillDerived makes a default that depends on another key follow the value
// the user gave that key, so setting one key never fails on one they never
// wrote (tor.port-base: 26600 alone would leave port-max 9999 below it).
func (c *Config) fillDerived() {
	def := Default()
	set := func(key string) bool { _, ok := c.pos[key]; return ok }
	if set("tor.port-base") && !set("tor.port-max") {
		// Keep the default range's width from the new base.
		c.Tor.PortMax = min(c.Tor.PortBase+def.Tor.PortMax-def.Tor.PortBase, 65535)
	}
	if set("probe.interval") && !set("probe.failing-interval") && c.Probe.Interval > 0 {
		// A failing upstream is never re-checked less often than a healthy one.
		c.Probe.FailingInterval = min(def.Probe.FailingInterval, c.Probe.Interval)
	}
	if set("gateway.handshake-timeout") && !set("gateway.upstream-handshake-timeout") {
		// what the old name documented: the upstream proxy handshake
		c.Gateway.UpstreamHandshakeTimeout = TryTimeout(c.Gateway.HandshakeTimeout)
		c.warnf("gateway.handshake-timeout", "deprecated: read as gateway.upstream-handshake-timeout: %v (one try through an upstream); the client's greeting deadline is gateway.client-timeout", c.Gateway.HandshakeTimeout)
	}
	if set("gateway.session-ttl") && !set("gateway.max-session-ttl") {
		// A default session must fit under the cap on the ones clients ask for.
		c.Gateway.MaxSessionTTL = max(def.Gateway.MaxSessionTTL, c.Gateway.SessionTTL)
	}
}

// MaxAttempts is the most tries one request may be given (the gateway's
// bound, gateway.max-attempts' default).
const MaxAttempts = 16

// warnf records a warning about key.
func (c *Config) warnf(key, format string, args ...any) {
	c.Warnings = append(c.Warnings, &Error{File: c.File, Line: c.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Error is one problem in a config file.
type Error struct {
	File string
	Line int    // 0 when the problem is not on one line
	Key  string // dotted path: "gateway.ports[1].group"; "" for syntax errors
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

const maxErrors = 20

func joinErrors(errs []*Error) error {
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	if len(errs) == 1 {
		return errs[0]
	}
	out := make([]error, 0, min(len(errs), maxErrors+1))
	for i, e := range errs {
		if i == maxErrors {
			out = append(out, fmt.Errorf("%s: … and %d more problems", e.File, len(errs)-maxErrors))
			break
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// Pos returns "file:line" of key ("gateway.listen") in the loaded file, or
// just the file name when the key was not in it. Programs use it to point at
// the config when a value fails at run time ("listen: address in use").
func (c *Config) Pos(key string) string {
	if l := c.line(key); l > 0 {
		return fmt.Sprintf("%s:%d", c.File, l)
	}
	return c.File
}

// line finds the line of key or of its nearest enclosing key.
func (c *Config) line(key string) int {
	for key != "" {
		if l, ok := c.pos[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// Policy returns the upstream life-cycle tuning from the probe section.
func (c *Config) Policy() upstream.Policy {
	return upstream.Policy{
		MaxFailures:     c.Probe.MaxFailures,
		Interval:        c.Probe.Interval,
		FailingInterval: c.Probe.FailingInterval,
		DeadBackoffMax:  c.Probe.DeadBackoffMax,
	}.WithDefaults()
}

// UsedPorts lists the TCP ports proxypool itself listens on (gateway,
// pinned ports, metrics when enabled, the API), sorted, so torgen can skip them when
// it hands out instance ports from tor.port-base..tor.port-max.
func (c *Config) UsedPorts() []int {
	addrs := []string{c.Gateway.Listen}
	for _, p := range c.Gateway.Ports {
		addrs = append(addrs, p.Listen)
	}
	if c.Metrics.Enabled {
		addrs = append(addrs, c.Metrics.Listen)
		if c.Metrics.GatewayListen != "" {
			addrs = append(addrs, c.Metrics.GatewayListen)
		}
	}
	if c.API.Listen != "" {
		addrs = append(addrs, c.API.Listen)
	}
	seen := map[int]bool{}
	var ports []int
	for _, a := range addrs {
		if _, p, err := net.SplitHostPort(a); err == nil {
			if n, err := strconv.Atoi(p); err == nil && !seen[n] {
				seen[n] = true
				ports = append(ports, n)
			}
		}
	}
	sort.Ints(ports)
	return ports
}

// filePath maps file:///abs → /abs and file://./rel → ./rel.
func filePath(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "file" {
		return "", false
	}
	switch u.Host {
	case "":
		return u.Path, u.Path != ""
	case ".":
		if u.Path == "" || u.Path == "/" {
			return "", false
		}
		return "." + u.Path, true
	}
	return "", false
}
