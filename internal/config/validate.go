package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Accepted enum values.
var (
	Strategies    = []string{"round-robin", "random", "least-latency", "sticky", "weighted"}
	ExitClasses   = []string{"datacenter", "residential", "mobile"}
	SourceFormats = []string{"auto", "links", "socks5", "socks4", "http", "https", "base64", "clash", "json"}
	RelayFormats  = []string{"auto", "onionoo", "csv", "control"}
	TorModes      = []string{"country", "grouped", "single"}
	TorRunners    = []string{"systemd", "process", "auto"}
	LogLevels     = []string{"trace", "debug", "info", "warn", "warning", "error"}
	LogFormats    = []string{"auto", "text", "json"}
	// UpstreamTypes are the names groups.<name>.types accepts.
	UpstreamTypes = []string{
		string(upstream.HTTP), string(upstream.SOCKS4), string(upstream.SOCKS5), string(upstream.SS),
		string(upstream.SSR), string(upstream.VMess), string(upstream.VLESS), string(upstream.Trojan),
		string(upstream.Hysteria), string(upstream.Hysteria2), string(upstream.TUIC),
		string(upstream.WireGuard), string(upstream.AnyTLS), string(upstream.Tor),
	}
)

var (
	sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	groupName  = regexp.MustCompile(`^[A-Za-z0-9_]+$`)
	country    = regexp.MustCompile(`^[A-Za-z]{2}$`)
)

type validator struct {
	c    *Config
	errs []*Error
}

func (v *validator) errf(key, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.c.File, Line: v.c.line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) validate() {
	c := v.c
	switch {
	case strings.TrimSpace(c.Database) == "":
		v.errf("database", "must name the SQLite file or a postgres:// URL")
	case isPostgresURL(c.Database):
		if err := checkPostgresURL(c.Database); err != nil {
			v.errf("database", "%v", err)
		}
	}
	v.sources()
	v.positive("refresh.interval", c.Refresh.Interval)
	v.atLeast("refresh.concurrency", c.Refresh.Concurrency, 1)
	v.nonNegative("refresh.retire-after", c.Refresh.RetireAfter)
	v.probe()
	v.groups()
	v.gateway()
	v.tor()
	if c.Metrics.Enabled {
		v.listen("metrics.listen", c.Metrics.Listen)
		if c.Metrics.GatewayListen != "" {
			v.listen("metrics.gateway-listen", c.Metrics.GatewayListen)
		}
	}
	v.api()
	v.oneOf("log.level", strings.ToLower(c.Log.Level), LogLevels)
	v.oneOf("log.format", c.Log.Format, LogFormats)
	v.positive("slo.check-interval", c.SLO.CheckInterval)
	v.positive("slo.min-action-interval", c.SLO.MinActionInterval)
	v.atLeast("slo.min-healthy", c.SLO.MinHealthy, 0)
	v.atLeast("slo.min-exits", c.SLO.MinExits, 0)
	v.listenConflicts()
}

func (v *validator) sources() {
	first := map[string]int{}
	for i, s := range v.c.Sources {
		p := fmt.Sprintf("sources[%d]", i)
		switch {
		case s.Name == "":
			v.errf(p+".name", "missing: every source needs a unique name")
		case !sourceName.MatchString(s.Name):
			v.errf(p+".name", "%q: use letters, digits, '.', '_' and '-'", s.Name)
		default:
			if j, dup := first[s.Name]; dup {
				v.errf(p+".name", "%q is already the name of sources[%d] (line %d)", s.Name, j, v.c.line(fmt.Sprintf("sources[%d].name", j)))
			} else {
				first[s.Name] = i
			}
		}
		v.sourceURL(p+".url", s.URL)
		v.oneOf(p+".format", s.Format, SourceFormats)
		v.positive(p+".interval", s.Interval)
		v.positive(p+".min-interval", s.MinInterval)
		v.positive(p+".timeout", s.Timeout)
		if s.MaxBytes <= 0 {
			v.errf(p+".max-bytes", "must be more than 0")
		}
	}
}

func (v *validator) sourceURL(key, raw string) {
	if raw == "" {
		v.errf(key, "missing: file:///path, file://./relative/path, http:// or https:// URL")
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		v.errf(key, "%q is not a URL", raw)
		return
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			v.errf(key, "%q has no host", raw)
		}
	case "file":
		if _, ok := filePath(raw); !ok {
			v.errf(key, "%q: use file:///absolute/path or file://./relative/path", raw)
		}
	case "":
		v.errf(key, "%q has no scheme: use file://%s, http:// or https://", raw, fileHint(raw))
	default:
		v.errf(key, "unsupported scheme %q: use file, http or https", u.Scheme)
	}
}

func fileHint(p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	return "./" + strings.TrimPrefix(p, "./")
}

func (v *validator) probe() {
	p := v.c.Probe
	if len(p.Judges) == 0 {
		v.errf("probe.judges", "needs at least one judge URL")
	}
	for i, j := range p.Judges {
		v.httpURL(fmt.Sprintf("probe.judges[%d]", i), j)
	}
	v.positive("probe.interval", p.Interval)
	v.positive("probe.failing-interval", p.FailingInterval)
	v.positive("probe.timeout", p.Timeout)
	v.atLeast("probe.concurrency", p.Concurrency, 1)
	v.atLeast("probe.max-failures", p.MaxFailures, 1)
	v.positive("probe.dead-backoff-max", p.DeadBackoffMax)
	v.positive("probe.delete-after", p.DeleteAfter)
	v.atLeast("probe.history", p.History, 1)
	if p.RealIP != "" {
		if _, err := netip.ParseAddr(p.RealIP); err != nil {
			v.errf("probe.real-ip", "%q is not an IP address", p.RealIP)
		}
	}
	if p.Target.Enabled {
		if p.Target.URL == "" {
			v.errf("probe.target.url", "missing: probe.target.enabled is true")
		} else {
			v.httpURL("probe.target.url", p.Target.URL)
		}
	}
	if p.IPv6Judge != "" {
		v.httpURL("probe.ipv6-judge", p.IPv6Judge)
	}
	if p.ASNDatabase != "" && !strings.HasSuffix(strings.ToLower(p.ASNDatabase), ".mmdb") {
		v.errf("probe.asn-database", "%q is not a MaxMind .mmdb file (GeoLite2-ASN, DB-IP ASN lite)", p.ASNDatabase)
	}
	if p.Target.Status < 100 || p.Target.Status > 599 {
		v.errf("probe.target.status", "%d is not an HTTP status (100-599)", p.Target.Status)
	}
	for name, t := range p.Targets {
		k := "probe.targets." + name
		if !groupName.MatchString(name) {
			v.errf(k, "target names may hold letters, digits and '_' only ('-' separates gateway username parameters)")
		}
		if t.URL == "" {
			v.errf(k+".url", "missing")
		} else {
			v.httpURL(k+".url", t.URL)
		}
		for i, st := range t.Status {
			if st < 100 || st > 599 {
				v.errf(fmt.Sprintf("%s.status[%d]", k, i), "%d is not an HTTP status (100-599)", st)
			}
		}
		v.regexp(k+".body", t.Body)
		v.regexp(k+".not-body", t.NotBody)
		v.positive(k+".max-time", t.MaxTime)
		v.positive(k+".interval", t.Interval)
		v.positive(k+".ttl", t.TTL)
		v.atLeast(k+".concurrency", t.Concurrency, 1)
		v.atLeast(k+".budget", t.Budget, 0)
		for h := range t.Headers {
			if h == "" || strings.ContainsAny(h, " :\r\n") {
				v.errf(k+".headers", "%q is not a header name", h)
			}
		}
	}
	if sp := p.Speed; sp.URL != "" {
		v.httpURL("probe.speed.url", sp.URL)
		if sp.Size < 1 {
			v.errf("probe.speed.size", "must be at least 1 byte")
		}
		if sp.Upload < 0 {
			v.errf("probe.speed.upload", "must not be negative")
		}
		if sp.BudgetBytes < sp.Size+sp.Upload {
			v.errf("probe.speed.budget-bytes", "%v is less than one check (size + upload: %v)", sp.BudgetBytes, sp.Size+sp.Upload)
		}
		v.atLeast("probe.speed.concurrency", sp.Concurrency, 1)
		v.positive("probe.speed.interval", sp.Interval)
		v.positive("probe.speed.max-time", sp.MaxTime)
		for i, k := range sp.Kinds {
			v.c.Probe.Speed.Kinds[i] = strings.ToLower(k)
			v.oneOf(fmt.Sprintf("probe.speed.kinds[%d]", i), v.c.Probe.Speed.Kinds[i], UpstreamTypes)
		}
		for i, s := range sp.Sources {
			if s == "" {
				v.errf(fmt.Sprintf("probe.speed.sources[%d]", i), "empty source name")
			}
		}
	}
}

func (v *validator) regexp(key, expr string) {
	if _, err := regexp.Compile(expr); err != nil {
		v.errf(key, "not a regular expression: %v", err)
	}
}

func (v *validator) httpURL(key, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errf(key, "%q is not an http:// or https:// URL", raw)
	}
}

func (v *validator) groups() {
	for name, g := range v.c.Groups {
		p := "groups." + name
		if !groupName.MatchString(name) {
			v.errf(p, "group names may hold letters, digits and '_' only ('-' separates gateway username parameters)")
		}
		g.Countries = v.countries(p+".countries", g.Countries)
		g.ExcludeCountries = v.countries(p+".exclude-countries", g.ExcludeCountries)
		for i, t := range g.Types {
			g.Types[i] = strings.ToLower(t)
			v.oneOf(fmt.Sprintf("%s.types[%d]", p, i), g.Types[i], UpstreamTypes)
		}
		for i, s := range g.Sources {
			if s == "" {
				v.errf(fmt.Sprintf("%s.sources[%d]", p, i), "empty source name")
			}
		}
		for i, c := range g.Class {
			g.Class[i] = strings.ToLower(c)
			v.oneOf(fmt.Sprintf("%s.class[%d]", p, i), g.Class[i], ExitClasses)
		}
		if g.MinThroughput < 0 {
			v.errf(p+".min-throughput", "must not be negative (0 turns it off)")
		}
		v.atLeast(p+".min-healthy", g.MinHealthy, 0)
		v.atLeast(p+".min-exits", g.MinExits, 0)
		v.atLeast(p+".tor-instances", g.TorInstances, 0)
		for i, t := range g.RequireTargets {
			if _, ok := v.c.Probe.Targets[t]; !ok {
				v.errf(fmt.Sprintf("%s.require-targets[%d]", p, i), "%q is not a probe.targets name", t)
			}
		}
		v.c.Groups[name] = g
	}
}

func (v *validator) countries(key string, cs []string) []string {
	for i, cc := range cs {
		if !country.MatchString(cc) {
			v.errf(fmt.Sprintf("%s[%d]", key, i), "%q is not a two-letter country code (US, DE, …)", cc)
			continue
		}
		cs[i] = strings.ToUpper(cc)
	}
	return cs
}

func (v *validator) group(key, name string) {
	if _, ok := v.c.Groups[name]; !ok {
		v.errf(key, "no group %q in groups%s", name, v.knownGroups())
	}
}

func (v *validator) knownGroups() string {
	if len(v.c.Groups) == 0 {
		return " (there are none)"
	}
	names := make([]string, 0, len(v.c.Groups))
	for n := range v.c.Groups {
		names = append(names, n)
	}
	sort.Strings(names)
	return " (have: " + strings.Join(names, ", ") + ")"
}

func (v *validator) gateway() {
	g := v.c.Gateway
	v.listen("gateway.listen", g.Listen)
	v.oneOf("gateway.strategy", g.Strategy, Strategies)
	v.atLeast("gateway.max-tries", g.MaxTries, 1)
	switch {
	case g.MaxAttempts < 1 || g.MaxAttempts > MaxAttempts:
		v.errf("gateway.max-attempts", "%d is not between 1 and %d", g.MaxAttempts, MaxAttempts)
	case g.MaxTries > g.MaxAttempts:
		v.errf("gateway.max-tries", "%d is more than gateway.max-attempts (%d), which caps every try", g.MaxTries, g.MaxAttempts)
	}
	v.positive("gateway.dial-timeout", g.DialTimeout)
	v.positive("gateway.client-timeout", g.ClientTimeout)
	if l, set := v.c.pos["gateway.handshake-timeout"]; set {
		if nl, both := v.c.pos["gateway.upstream-handshake-timeout"]; both {
			v.errf("gateway.handshake-timeout", "is the old name of gateway.upstream-handshake-timeout, set too (line %d): keep only that one", nl)
		} else if l > 0 {
			v.positive("gateway.handshake-timeout", g.HandshakeTimeout)
		}
	}
	v.positive("gateway.total-timeout", g.TotalTimeout)
	v.positive("gateway.idle-timeout", g.IdleTimeout)
	v.atLeast("gateway.max-conns", g.MaxConns, 1)
	v.atLeast("gateway.eject-after", g.EjectAfter, 1)
	if !(g.EjectClientShare > 0 && g.EjectClientShare <= 1) {
		v.errf("gateway.eject-client-share", "must be a share of the pool above 0 and at most 1 (e.g. 0.1), got %v", g.EjectClientShare)
	}
	v.positive("gateway.eject-client-window", g.EjectClientWindow)
	v.positive("gateway.session-ttl", g.SessionTTL)
	v.positive("gateway.max-session-ttl", g.MaxSessionTTL)
	if g.MaxSessionTTL > 0 && g.SessionTTL > g.MaxSessionTTL {
		v.errf("gateway.session-ttl", "%v is longer than gateway.max-session-ttl (%v)", g.SessionTTL, g.MaxSessionTTL)
	}
	v.atLeast("gateway.max-session-id", g.MaxSessionID, 1)
	v.atLeast("gateway.max-sessions", g.MaxSessions, 1)
	v.atLeast("gateway.max-conns-per-client", g.MaxConnsPerClient, 1)
	v.nonNegative("gateway.auth-delay-max", g.AuthDelayMax)
	users := map[string]int{}
	for i, u := range g.Auth.Users {
		p := fmt.Sprintf("gateway.auth.users[%d]", i)
		switch {
		case u.Username == "":
			v.errf(p+".username", "missing")
		case strings.ContainsAny(u.Username, ":"):
			v.errf(p+".username", "must not contain ':'")
		default:
			if j, dup := users[u.Username]; dup {
				v.errf(p+".username", "%q is already gateway.auth.users[%d]", u.Username, j)
			}
			users[u.Username] = i
		}
		if u.Password == "" {
			v.errf(p+".password", "missing")
		}
	}
	open := len(g.Auth.Users) == 0 && !g.AllowOpen
	if open && v.listen("", g.Listen) && !loopback(g.Listen) {
		v.errf("gateway.listen", "%s is reachable from other hosts and gateway.auth has no users: add users or set gateway.allow-open: true", g.Listen)
	}
	for i, pt := range g.Ports {
		p := fmt.Sprintf("gateway.ports[%d]", i)
		if pt.Listen == "" {
			v.errf(p+".listen", "missing: the address to listen on, e.g. 127.0.0.1:8001")
		} else if v.listen(p+".listen", pt.Listen) && open && !loopback(pt.Listen) {
			v.errf(p+".listen", "%s is reachable from other hosts and gateway.auth has no users: add users or set gateway.allow-open: true", pt.Listen)
		}
		if pt.Group != "" && pt.Upstream != "" {
			v.errf(p, "set group or upstream, not both")
		}
		if pt.Group != "" {
			v.group(p+".group", pt.Group)
		}
		v.oneOf(p+".strategy", pt.Strategy, Strategies)
	}
}

// api checks the control API: like the gateway's open-proxy guard, an
// address other hosts can reach needs a secret, or anyone there could
// steer the pool.
func (v *validator) api() {
	a := v.c.API
	if a.Listen == "" {
		return
	}
	if v.listen("api.listen", a.Listen) && a.Secret == "" && !loopback(a.Listen) {
		v.errf("api.listen", "%s is reachable from other hosts and api.secret is empty: set a secret or listen on 127.0.0.1", a.Listen)
	}
	if strings.ContainsAny(a.Secret, "\r\n") {
		v.errf("api.secret", "must be one line (it is sent in an HTTP header)")
	}
	for i, o := range a.CORSOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			v.errf(fmt.Sprintf("api.cors-origins[%d]", i), "%q is not an origin (scheme://host[:port], e.g. http://127.0.0.1:21080) nor *", o)
		}
	}
	if a.Clash.GroupLimit < 1 {
		v.errf("api.clash.group-limit", "%d: must be at least 1", a.Clash.GroupLimit)
	}
	if a.Clash.PinTTL <= 0 {
		v.errf("api.clash.pin-ttl", "%v: must be positive, e.g. 30m", a.Clash.PinTTL)
	}
	if t := a.Clash.TestURL; t != "" {
		if u, err := url.Parse(t); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errf("api.clash.test-url", "%q is not an http(s) URL", t)
		}
	}
}

// listen checks a host:port listen address; key "" checks silently.
func (v *validator) listen(key, addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		n, perr := strconv.Atoi(port)
		if perr != nil || n < 1 || n > 65535 {
			if key != "" {
				v.errf(key, "%q: port must be 1-65535", addr)
			}
			return false
		}
		if host != "" && strings.ContainsAny(host, " /") {
			err = fmt.Errorf("bad host")
		}
	}
	if err != nil {
		if key != "" {
			v.errf(key, "%q is not host:port (e.g. 127.0.0.1:8000)", addr)
		}
		return false
	}
	return true
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// listenConflicts reports two listeners on the same address.
func (v *validator) listenConflicts() {
	g := v.c.Gateway
	type l struct{ key, addr string }
	ls := []l{{"gateway.listen", g.Listen}}
	for i, p := range g.Ports {
		ls = append(ls, l{fmt.Sprintf("gateway.ports[%d].listen", i), p.Listen})
	}
	if v.c.Metrics.Enabled {
		ls = append(ls, l{"metrics.listen", v.c.Metrics.Listen})
		if v.c.Metrics.GatewayListen != "" {
			ls = append(ls, l{"metrics.gateway-listen", v.c.Metrics.GatewayListen})
		}
	}
	if v.c.API.Listen != "" {
		ls = append(ls, l{"api.listen", v.c.API.Listen})
	}
	for i := range ls {
		hi, pi, err := net.SplitHostPort(ls[i].addr)
		if err != nil {
			continue
		}
		for j := range i {
			hj, pj, err := net.SplitHostPort(ls[j].addr)
			if err != nil || pi != pj {
				continue
			}
			if hi == hj || wildcard(hi) || wildcard(hj) {
				v.errf(ls[i].key, "%s collides with %s (%s)", ls[i].addr, ls[j].key, ls[j].addr)
				break
			}
		}
	}
}

func wildcard(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

func (v *validator) tor() {
	t := v.c.Tor
	v.relays("tor.relays", t.Relays)
	v.oneOf("tor.relays-format", t.RelaysFormat, RelayFormats)
	v.oneOf("tor.mode", t.Mode, TorModes)
	for i, g := range t.Groups {
		v.group(fmt.Sprintf("tor.groups[%d]", i), g)
	}
	if t.Enabled && t.Mode == "grouped" && len(t.Groups) == 0 {
		v.errf("tor.mode", "grouped needs tor.groups to name at least one group")
	}
	switch {
	case t.PortBase < 1 || t.PortBase > 65535:
		v.errf("tor.port-base", "%d is not a port (1-65535)", t.PortBase)
	case t.PortMax < t.PortBase || t.PortMax > 65535:
		v.errf("tor.port-max", "%d must be between tor.port-base (%d) and 65535", t.PortMax, t.PortBase)
	case t.MaxInstances < 1:
		v.errf("tor.max-instances", "%d is less than 1", t.MaxInstances)
	case t.MaxInstances > t.PortMax-t.PortBase+1:
		key := "tor.max-instances"
		if _, set := v.c.pos[key]; !set {
			key = "tor.port-max" // the range shrank under the default
		}
		v.errf(key, "%d instances must fit in the %d ports of tor.port-base..tor.port-max", t.MaxInstances, t.PortMax-t.PortBase+1)
	}
	for key, val := range map[string]string{"tor.torrc-dir": t.TorrcDir, "tor.data-dir": t.DataDir, "tor.binary": t.Binary} {
		if strings.TrimSpace(val) == "" {
			v.errf(key, "must not be empty")
		}
	}
	v.oneOf("tor.runner", t.Runner, TorRunners)
	v.nonNegative("tor.newnym-period", t.NewnymPeriod)
	v.positive("tor.max-circuit-dirtiness", t.MaxCircuitDirtiness)
	v.nonNegative("tor.bootstrap-grace", t.BootstrapGrace)
	for i, line := range t.ExtraConfig {
		if strings.ContainsAny(line, "\r\n") {
			v.errf(fmt.Sprintf("tor.extra-config[%d]", i), "one torrc line per item: no line breaks")
		}
	}
	v.positive("tor.refresh", t.Refresh)
}

func (v *validator) relays(key, raw string) {
	if raw == "" {
		if v.c.Tor.Enabled {
			v.errf(key, "missing: an Onionoo URL, a CSV URL or file, or control://host:port")
		}
		return
	}
	if rest, ok := strings.CutPrefix(raw, "control://"); ok {
		v.listen(key, rest)
		return
	}
	u, err := url.Parse(raw)
	if err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		if u.Host == "" {
			v.errf(key, "%q has no host", raw)
		}
		return
	}
	if err == nil && u.Scheme == "file" {
		if _, ok := filePath(raw); !ok {
			v.errf(key, "%q: use file:///absolute/path or file://./relative/path", raw)
		}
		return
	}
	if err == nil && len(u.Scheme) > 1 {
		v.errf(key, "unsupported scheme %q: use http, https, file or control, or a plain path", u.Scheme)
	}
	// otherwise a plain file path
}

func (v *validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.errf(key, "must be more than 0 (a duration like 30s, 5m)")
	}
}

func (v *validator) nonNegative(key string, d time.Duration) {
	if d < 0 {
		v.errf(key, "must not be negative (0 turns it off)")
	}
}

func (v *validator) atLeast(key string, n, lo int) {
	if n < lo {
		v.errf(key, "%d is less than %d", n, lo)
	}
}

func (v *validator) oneOf(key, val string, allowed []string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	v.errf(key, "%q is not one of %s", val, strings.Join(allowed, ", "))
}

// isPostgresURL reports whether database names a PostgreSQL database
// rather than a SQLite file (store.IsPostgres, which config may not
// import).
func isPostgresURL(database string) bool {
	return strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://")
}

// checkPostgresURL refuses what cannot be a PostgreSQL connection URL:
// another scheme, no database name, an unparsable URL. The error never
// repeats the URL, which may hold a password.
func checkPostgresURL(u string) error {
	if !isPostgresURL(u) {
		return errors.New("must be a postgres:// URL")
	}
	p, err := url.Parse(u)
	if err != nil {
		return errors.New("is not a valid URL (postgres://user@host/db?sslmode=…)")
	}
	if strings.Trim(p.Path, "/") == "" {
		return errors.New("names no database (postgres://user@host/db)")
	}
	return nil
}
