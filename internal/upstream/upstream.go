package upstream

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Kind is the dial protocol of an upstream. The names are mihomo's proxy
// "type" values, plus socks4 (which mihomo lacks) and tor (a local tor
// SocksPort, dialled as socks5 but tracked separately).
type Kind string

// The kinds proxypool knows about.
const (
	HTTP      Kind = "http"   // HTTP CONNECT proxy; Options["tls"]=true for https
	SOCKS4    Kind = "socks4" // SOCKS4/4a, served by proxypool's own dialer
	SOCKS5    Kind = "socks5"
	SS        Kind = "ss"
	SSR       Kind = "ssr"
	VMess     Kind = "vmess"
	VLESS     Kind = "vless"
	Trojan    Kind = "trojan"
	Hysteria  Kind = "hysteria"
	Hysteria2 Kind = "hysteria2"
	TUIC      Kind = "tuic"
	WireGuard Kind = "wireguard"
	AnyTLS    Kind = "anytls"
	Tor       Kind = "tor"
)

// Plain reports whether k is one of the plain list protocols (http, socks4,
// socks5, tor) as opposed to an encrypted share-link protocol.
func (k Kind) Plain() bool {
	switch k {
	case HTTP, SOCKS4, SOCKS5, Tor:
		return true
	}
	return false
}

// Upstream is one proxy proxypool can leave through. Options holds the full
// Clash/mihomo-style mapping (type, server, port, name and every protocol
// option); it is what the dialer hands to mihomo's adapter.ParseProxy.
// Upstreams are values: build them with New, never mutate Options after.
// The gateway serves by the smaller Entry instead.
type Upstream struct {
	ID      string         `json:"id"`
	Type    Kind           `json:"type"`
	Server  string         `json:"server"`
	Port    int            `json:"port"`
	Name    string         `json:"name,omitempty"`
	Group   string         `json:"group,omitempty"` // explicit group (tor instances); empty for list/link upstreams
	Options map[string]any `json:"options"`
}

// OptDiscover marks a bare host:port nobody said the protocol of (an
// untyped list under format auto): the probe finds it on the first check
// and the store keeps the kind that answered (CheckResult.Kind). The
// marker is part of the identity, so the same line read again is the same
// upstream whatever it turned out to be.
const OptDiscover = "discover"

// DiscoverKinds are the kinds an untyped upstream is tried as, in the
// order preferred when it speaks several (a mixed port): SOCKS5 carries
// names and IPv6 and is served by the gateway's event loops.
var DiscoverKinds = []Kind{SOCKS5, HTTP, SOCKS4}

// Untyped reports whether u's protocol is still to be discovered.
func (u Upstream) Untyped() bool {
	v, _ := u.Options[OptDiscover].(bool)
	return v
}

// As is u tried as kind k: the discovery marker dropped, and an ID of its
// own (u.ID + "/" + k) so a dialer caching by ID keeps the tries apart.
func (u Upstream) As(k Kind) Upstream {
	m := make(map[string]any, len(u.Options))
	for key, v := range u.Options {
		if key != OptDiscover {
			m[key] = v
		}
	}
	m["type"] = string(k)
	u.Type, u.Options, u.ID = k, m, u.ID+"/"+string(k)
	return u
}

// ErrInvalid is wrapped by New's errors.
var ErrInvalid = errors.New("invalid upstream")

// identityIgnored are mapping keys that do not change how an upstream is
// dialled, so two lines differing only in them are one upstream.
var identityIgnored = map[string]bool{"name": true, "remarks": true, "remark": true, "ps": true, "group": true}

// New normalizes a mihomo-style mapping into an Upstream and computes its ID.
// The mapping must carry "type", "server" and "port"; "name" is optional.
// Values are normalized through JSON (numbers become int when whole), keys
// are lower-cased, the server is lower-cased and stripped of IPv6 brackets
// and of leading zeros in dotted IPv4 ("001.002.003.004" → "1.2.3.4").
func New(mapping map[string]any) (Upstream, error) {
	m, err := normalize(mapping)
	if err != nil {
		return Upstream{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	typ, _ := m["type"].(string)
	if typ == "" {
		return Upstream{}, fmt.Errorf("%w: missing type", ErrInvalid)
	}
	typ = strings.ToLower(typ)
	m["type"] = typ
	server, _ := m["server"].(string)
	server = NormalizeHost(server)
	if server == "" {
		return Upstream{}, fmt.Errorf("%w: %s: missing server", ErrInvalid, typ)
	}
	m["server"] = server
	port, ok := toInt(m["port"])
	if !ok || port < 1 || port > 65535 {
		return Upstream{}, fmt.Errorf("%w: %s: bad port %v", ErrInvalid, typ, m["port"])
	}
	m["port"] = port
	name, _ := m["name"].(string)
	group, _ := m["group"].(string)
	delete(m, "group")
	u := Upstream{Type: Kind(typ), Server: server, Port: port, Name: name, Group: group, Options: m}
	u.ID = identity(m)
	return u, nil
}

// MustNew is New for literals in tests and tables; it panics on error.
func MustNew(mapping map[string]any) Upstream {
	u, err := New(mapping)
	if err != nil {
		panic(err)
	}
	return u
}

// Addr is "server:port" (IPv6 in brackets).
func (u Upstream) Addr() string { return net.JoinHostPort(u.Server, strconv.Itoa(u.Port)) }

// String is a short human label: "socks5 1.2.3.4:1080".
func (u Upstream) String() string { return string(u.Type) + " " + u.Addr() }

// Str returns a string option ("" if absent or not a string).
func (u Upstream) Str(key string) string {
	s, _ := u.Options[key].(string)
	return s
}

// URI renders plain upstreams as scheme://[user:pass@]host:port; other kinds
// return "" (export them as Clash YAML instead).
func (u Upstream) URI() string {
	scheme := string(u.Type)
	switch u.Type {
	case HTTP:
		if b, _ := u.Options["tls"].(bool); b {
			scheme = "https"
		}
	case SOCKS4, SOCKS5:
	case Tor:
		scheme = "socks5"
	default:
		return ""
	}
	userinfo := ""
	if user := u.Str("username"); user != "" {
		userinfo = user
		if pass := u.Str("password"); pass != "" {
			userinfo += ":" + pass
		}
		userinfo += "@"
	}
	return scheme + "://" + userinfo + u.Addr()
}

// NormalizeHost lower-cases a host, strips IPv6 brackets and a trailing dot,
// and canonicalizes IP literals (including zero-padded dotted IPv4).
func NormalizeHost(h string) string {
	h = strings.TrimSpace(h)
	h = strings.TrimPrefix(h, "[")
	h = strings.TrimSuffix(h, "]")
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	if parts := strings.Split(h, "."); len(parts) == 4 {
		var b [4]byte
		for i, p := range parts {
			n, err := strconv.Atoi(p)
			if err != nil || p == "" || n < 0 || n > 255 || len(p) > 3 {
				return h
			}
			b[i] = byte(n)
		}
		return net.IPv4(b[0], b[1], b[2], b[3]).String()
	}
	return h
}

func normalize(in map[string]any) (map[string]any, error) {
	raw, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("options are not serializable: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	lower := make(map[string]any, len(out))
	for k, v := range out {
		lower[strings.ToLower(k)] = wholeNumbers(v)
	}
	return lower, nil
}

// wholeNumbers turns float64 values that are whole into int, recursively, so
// that a port given as "443", 443 or 443.0 hashes the same.
func wholeNumbers(v any) any {
	switch t := v.(type) {
	case float64:
		if t == float64(int64(t)) {
			return int(t)
		}
		return t
	case map[string]any:
		for k, e := range t {
			t[k] = wholeNumbers(e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = wholeNumbers(e)
		}
		return t
	}
	return v
}

func toInt(v any) (int, bool) {
	switch t := v.(type) {
	case int:
		return t, true
	case float64:
		return int(t), t == float64(int(t))
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(t))
		return n, err == nil
	}
	return 0, false
}

// identity hashes the dial-relevant part of a normalized mapping. Empty
// strings, false booleans, nulls and empty collections are dropped first, so
// "flow": "" and a missing flow are the same upstream.
func identity(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if identityIgnored[k] || EmptyOption(v) {
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		b, _ := json.Marshal(m[k]) // maps marshal with sorted keys
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write(b)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// IdentityIgnores reports whether option key k is left out of the ID.
func IdentityIgnores(k string) bool { return identityIgnored[k] }

// EmptyOption reports whether the ID treats option value v as absent.
func EmptyOption(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		return t == ""
	case bool:
		return !t
	case map[string]any:
		return len(t) == 0
	case []any:
		return len(t) == 0
	}
	return false
}

// State is where an upstream is in its life.
type State string

// States. Failing upstreams are still served by nobody; they are re-checked
// sooner than healthy ones and become dead after max-failures.
const (
	Unknown State = "unknown"
	Healthy State = "healthy"
	Failing State = "failing"
	Dead    State = "dead"
	// Removed and Retired are out of the pool, never checked nor served,
	// their rows and history kept: Removed by the operator while a source
	// still lists it (a tombstone: refreshes do not bring it back until
	// proxypoolctl restore), Retired when no source has listed it for
	// refresh.retire-after (listed again, it comes back).
	Removed State = "removed"
	Retired State = "retired"
)

// InPool reports whether s is one of the pool's states (not Removed or
// Retired).
func (s State) InPool() bool { return s != Removed && s != Retired }

// Anonymity is what the judge saw of the client behind the upstream.
type Anonymity string

// Anonymity levels, worst first.
const (
	AnonNone        Anonymity = ""
	AnonTransparent Anonymity = "transparent" // real IP visible: never served
	AnonAnonymous   Anonymity = "anonymous"   // proxy headers visible
	AnonElite       Anonymity = "elite"       // nothing visible
)

// Status is the probe's current verdict on an upstream.
type Status struct {
	State     State     `json:"state"`
	LatencyMS float64   `json:"latency_ms"` // EWMA of total check time
	ExitIP    string    `json:"exit_ip,omitempty"`
	Country   string    `json:"country,omitempty"` // ISO 3166-1 alpha-2, upper case
	Quality             // the exit's ASN, organisation, class and IPv6 (the last active check's)
	Anonymity Anonymity `json:"anonymity,omitempty"`
	Untrusted bool      `json:"untrusted,omitempty"` // tamper signs seen: never served
	Failures  int       `json:"failures"`            // consecutive
	Checks    int       `json:"checks"`
	OKs       int       `json:"oks"`
	Score     float64   `json:"score"` // higher is better; 0 for never-ok
	LastCheck time.Time `json:"last_check,omitempty"`
	LastOK    time.Time `json:"last_ok,omitempty"`
	NextCheck time.Time `json:"next_check,omitempty"`
	FirstSeen time.Time `json:"first_seen,omitempty"`
	LastSeen  time.Time `json:"last_seen,omitempty"`
	LastCause Cause     `json:"last_cause,omitempty"` // why the last check failed (CauseNone: it passed, or a row stored before causes)
	LastError string    `json:"last_error,omitempty"` // its detail in words; a row stored before causes holds its old free text
	Caps      Caps      `json:"caps,omitempty"`       // what the last OK check proved (CapConnect, CapForward, CapPipeline)
}

// Servable reports whether the gateway may send traffic through it.
func (s Status) Servable() bool {
	return s.State == Healthy && !s.Untrusted && s.Anonymity != AnonTransparent
}

// Record is an upstream with its status and the sources that list it.
type Record struct {
	Upstream
	Status
	Sources []string `json:"sources,omitempty"`
	// RemovedAt is when a Removed or Retired upstream left the pool;
	// RemovedBy who removed it (the operator's D-Bus caller).
	RemovedAt time.Time `json:"removed_at,omitzero"`
	RemovedBy string    `json:"removed_by,omitempty"`
	// Targets are the target checks it passes now, with when each result
	// expires; Throughput its last speed check's download rate in bytes/s
	// (0: never measured). Filled by store.List.
	Targets    []TargetPass `json:"targets,omitempty"`
	Throughput float64      `json:"throughput,omitempty"`
}

// CheckResult is the outcome of one check (active probe) or one passive
// observation (gateway traffic, Passive=true).
type CheckResult struct {
	ID        string
	At        time.Time
	OK        bool
	Passive   bool
	Cause     Cause  // why it failed, when !OK
	Detail    string // what happened, in words, for users: "x509: certificate signed by unknown authority"
	ConnectMS float64
	TTFBMS    float64
	TotalMS   float64
	ExitIP    string
	Country   string
	Quality   // the exit's ASN, organisation and class (probe.Options.Quality), IPv6 reach
	Anonymity Anonymity
	Untrusted bool
	Headers   map[string]string // echoed request headers, when the judge returns them
	Caps      Caps              // what this check proved; kept on the upstream when OK
	Kind      Kind              // an untyped upstream's protocol, found by this check; "" otherwise
	// Client is, for a passive result, the source address of the request
	// (the pool's per-client ejection budget); not stored.
	Client string
}

// Reached reports whether the check got an answer from the judge through
// the upstream (its findings describe the exit), whatever the verdict.
func (r CheckResult) Reached() bool {
	return r.ExitIP != "" || r.Anonymity != "" || r.Untrusted
}

// SourceMeta is the fetch bookkeeping of one source.
type SourceMeta struct {
	Name         string    `json:"name"`
	URL          string    `json:"url"`
	Format       string    `json:"format"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	LastFetch    time.Time `json:"last_fetch,omitempty"`
	LastOK       time.Time `json:"last_ok,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
	Lines        int       `json:"lines"`  // lines in the last fetched body
	OK           int       `json:"ok"`     // upstreams parsed ok in the last fetch
	Failed       int       `json:"failed"` // lines that failed to parse
	Total        int       `json:"total"`  // upstreams currently listed by the source
	EverHealthy  int       `json:"ever_healthy"`
	// New, Seen and Gone are what the last fetch changed: upstreams added,
	// listed again, no longer listed (a not-modified fetch: 0, all, 0).
	New     int `json:"last_new"`
	Seen    int `json:"last_seen"`
	Gone    int `json:"last_gone"`
	Removed int `json:"last_removed"` // listed but removed by the operator
}

// SourceSummary is what one refresh of one source changed in the store.
type SourceSummary struct {
	Source string `json:"source"`
	New    int    `json:"new"`
	Seen   int    `json:"seen"` // listed again
	Gone   int    `json:"gone"` // listed before, not any more
	// Removed counts listed upstreams the operator removed (tombstones:
	// not brought back, neither new nor seen).
	Removed     int    `json:"removed"`
	Failed      int    `json:"failed"`
	Skipped     int    `json:"skipped"`
	NotModified bool   `json:"not_modified,omitempty"`
	Err         string `json:"error,omitempty"`
}
