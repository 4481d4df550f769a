package parse

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Link renders u as the share link v2rayN, v2rayNG, NekoBox or Shadowrocket
// would write for it: vmess:// base64 JSON (v2), vless:// and trojan:// with
// the de-facto query keys, ss:// SIP002 (userinfo base64url, plugin), ssr://,
// hysteria://, hysteria2://, tuic://, anytls://, wireguard:// as v2rayN reads
// it, and scheme://[user:pass@]host:port for the plain kinds (tor as
// socks5://).
//
// The link is read back with ParseURI before it is returned, and must give
// the same upstream (ID and name): an option the link format cannot carry is
// an error naming it, so an export falls back to another form for that
// record rather than hand out a link that silently drops it.
func Link(u upstream.Upstream) (string, error) {
	silenceMihomo()
	enc, ok := encoders[u.Type]
	if !ok {
		return "", fmt.Errorf("%s: no share link form for this kind", u.Type)
	}
	if !linkHost(u.Server) {
		return "", fmt.Errorf("%s: server %q is not a host name or IP address", u.Type, u.Server)
	}
	want := u
	if u.Type == upstream.Tor {
		// A tor SocksPort is exported as the socks5 proxy it is (parse
		// refuses tor from lists), so its link reads back as socks5.
		m := make(map[string]any, len(u.Options))
		for k, v := range u.Options {
			m[k] = v
		}
		m["type"] = string(upstream.SOCKS5)
		var err error
		if want, err = upstream.New(m); err != nil {
			return "", fmt.Errorf("tor: %w", err)
		}
	}
	o := linkOpts(u.Options)
	l, err := enc(o, "")
	if err != nil {
		return "", fmt.Errorf("%s: %w", u.Type, err)
	}
	got, err := ParseURI(l)
	if err == nil && got.ID != want.ID {
		// The plain link reads back differently: say in extras what it
		// could not, where extras may (see extrasKey), and read again.
		if x := extrasFor(want, got); x != "" {
			if l, err = enc(o, x); err != nil {
				return "", fmt.Errorf("%s: %w", u.Type, err)
			}
			got, err = ParseURI(l)
		}
	}
	if err := sameUpstream(want, got, err); err != nil {
		return "", err
	}
	return l, nil
}

// linkHost reports whether s can stand as a link's host: an IP address, or
// a name without the characters that end or bend one.
func linkHost(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	return s != "" && !strings.ContainsAny(s, ":/?#@[]%\\ \t\r\n")
}

// extrasFor is the extrasKey value for the top-level options where got
// (what the plain link reads back as) differs from want and extras may say
// so; "" when there are none.
func extrasFor(want, got upstream.Upstream) string {
	x := map[string]any{}
	typ := string(want.Type)
	for _, k := range unionKeys(want.Options, got.Options) {
		w, g := want.Options[k], got.Options[k]
		if !topLevelDiffers(k, w, g) {
			continue
		}
		switch {
		case udpPrefs[k]:
			x[k] = !upstream.EmptyOption(w)
		case upstream.EmptyOption(w) && converterDefaults[k] != nil:
			x[k] = nil
		case !upstream.EmptyOption(w) && upstream.EmptyOption(g) && inert(typ, k):
			x[k] = w
		case !upstream.EmptyOption(w) && upstream.EmptyOption(g) && tlsOnly[k] && !hasTLS(want.Options):
			x[k] = w
		}
	}
	if len(x) == 0 {
		return ""
	}
	b, err := json.Marshal(x)
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// sameUpstream checks that what a link read back as (got, err) is want,
// naming what differs.
func sameUpstream(want, got upstream.Upstream, err error) error {
	if err != nil {
		return fmt.Errorf("%s: the link does not read back (%v)", want.Type, err)
	}
	var diffs []string
	if got.ID != want.ID {
		diffs = diffOptions("", want.Options, got.Options)
		if len(diffs) == 0 {
			diffs = []string{"options (same values, different identity)"}
		}
	}
	if got.Name != want.Name {
		diffs = append(diffs, fmt.Sprintf("name %q (reads back %q)", want.Name, got.Name))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%s: a share link cannot carry %s", want.Type, strings.Join(diffs, ", "))
	}
	return nil
}

// diffOptions names the keys whose values differ between want and got, as
// dotted paths into nested mappings, with both values.
func diffOptions(prefix string, want, got map[string]any) []string {
	var out []string
	for _, k := range unionKeys(want, got) {
		w, g := want[k], got[k]
		if prefix == "" && !topLevelDiffers(k, w, g) {
			continue
		}
		wm, wok := w.(map[string]any)
		gm, gok := g.(map[string]any)
		if wok && gok {
			out = append(out, diffOptions(prefix+k+".", wm, gm)...)
			continue
		}
		if reflect.DeepEqual(jsonValue(w), jsonValue(g)) {
			continue
		}
		out = append(out, fmt.Sprintf("%s%s=%s (reads back %s)", prefix, k, shown(w), shown(g)))
	}
	return out
}

// topLevelDiffers reports whether option k differs in a way the ID sees.
func topLevelDiffers(k string, w, g any) bool {
	if upstream.IdentityIgnores(k) || upstream.EmptyOption(w) && upstream.EmptyOption(g) {
		return false
	}
	return !reflect.DeepEqual(jsonValue(w), jsonValue(g))
}

// unionKeys is the sorted keys of a and b.
func unionKeys(a, b map[string]any) []string {
	out := make([]string, 0, len(a)+len(b))
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func jsonValue(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

func shown(v any) string {
	if v == nil {
		return "absent"
	}
	b, _ := json.Marshal(v)
	if len(b) > 60 {
		b = append(b[:57], "..."...)
	}
	return string(b)
}

// linkOpts reads option values the way they are stored: JSON-normalized
// (numbers as int or float64, lists as []any, mappings as map[string]any).
type linkOpts map[string]any

func (o linkOpts) str(k string) string { return optString(o[k]) }

func (o linkOpts) on(k string) bool { b, _ := o[k].(bool); return b }

func (o linkOpts) sub(k string) linkOpts { m, _ := o[k].(map[string]any); return m }

func (o linkOpts) list(k string) []string { return optStrings(o[k]) }

func (o linkOpts) addr() string { return net.JoinHostPort(o.str("server"), o.str("port")) }

func optString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case int:
		return strconv.Itoa(t)
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(t)
	}
	return ""
}

// optStrings reads a list of strings, or one string, as a list.
func optStrings(v any) []string {
	switch t := v.(type) {
	case string:
		if t == "" {
			return nil
		}
		return []string{t}
	case []string:
		return t
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			out = append(out, optString(e))
		}
		return out
	}
	return nil
}

// query builds a link's query in the order it is set (clients read keys,
// not positions, but a stable order keeps exports diffable).
type query struct{ b strings.Builder }

func (q *query) set(k, v string) {
	if v == "" {
		return
	}
	if q.b.Len() > 0 {
		q.b.WriteByte('&')
	}
	q.b.WriteString(url.QueryEscape(k))
	q.b.WriteByte('=')
	q.b.WriteString(url.QueryEscape(v))
}

func (q *query) flag(k string, on bool) {
	if on {
		q.set(k, "1")
	}
}

func (q *query) String() string {
	if q.b.Len() == 0 {
		return ""
	}
	return "?" + q.b.String()
}

// opts sets query keys from options, in pairs (query key, option key): a
// string or number as it is, a list joined with ',', true as "1".
func (q *query) opts(o linkOpts, pairs ...string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		v := o[pairs[i+1]]
		switch t := v.(type) {
		case bool:
			q.flag(pairs[i], t)
		case []any, []string:
			q.set(pairs[i], strings.Join(optStrings(t), ","))
		default:
			q.set(pairs[i], optString(t))
		}
	}
}

// urlLink assembles scheme://userinfo host:port path ?query #name, with x
// under extrasKey.
func urlLink(scheme, ui string, o linkOpts, path string, q *query, x string) string {
	q.set(extrasKey, x)
	return scheme + "://" + ui + o.addr() + path + q.String() + fragment(o.str("name"))
}

// fragment escapes a name for after '#'. url's own escaping leaves ':' and
// '/' alone, and "vless://" inside a name would make the parser cut the
// line into two links.
func fragment(name string) string {
	if name == "" {
		return ""
	}
	return "#" + strings.ReplaceAll(url.PathEscape(name), ":", "%3A")
}

// userinfo is "user[:pass]@", escaped.
func userinfo(user, pass string, withPass bool) string {
	if withPass {
		return url.UserPassword(user, pass).String() + "@"
	}
	return url.User(user).String() + "@"
}

// An encoder writes the link for o, with x (base64url, may be empty) under
// extrasKey.
type encoder func(o linkOpts, x string) (string, error)

var encoders = map[upstream.Kind]encoder{
	upstream.HTTP:      plainLink,
	upstream.SOCKS4:    plainLink,
	upstream.SOCKS5:    plainLink,
	upstream.Tor:       plainLink,
	upstream.VMess:     vmessLink,
	upstream.VLESS:     vlessLink,
	upstream.Trojan:    trojanLink,
	upstream.SS:        ssLink,
	upstream.SSR:       ssrLink,
	upstream.Hysteria:  hysteriaLink,
	upstream.Hysteria2: hysteria2Link,
	upstream.TUIC:      tuicLink,
	upstream.AnyTLS:    anytlsLink,
	upstream.WireGuard: wireguardLink,
}

// plainLink: http(s)://, socks4://, socks5:// and socks5+tls://, with
// user:pass, TLS options in the query as https links carry them.
func plainLink(o linkOpts, x string) (string, error) {
	scheme := o.str("type")
	tls := o.on("tls")
	switch scheme {
	case "http":
		if tls {
			scheme = "https"
		}
	case "tor":
		scheme = "socks5"
	case "socks5":
		if tls {
			scheme = "socks5+tls"
		}
	}
	ui := ""
	if user := o.str("username"); user != "" {
		ui = userinfo(user, o.str("password"), true)
	}
	var q query
	if tls {
		q.opts(o, "sni", "sni", "allowInsecure", "skip-cert-verify")
	}
	return urlLink(scheme, ui, o, "", &q, x), nil
}

// vmessLink writes v2rayN's base64 JSON, version 2. A key is written when
// the record has the option, even empty: mihomo's converter reads "alpn"
// only beside a "tls" string, and "path" "" apart from no path.
func vmessLink(o linkOpts, x string) (string, error) {
	v := map[string]any{
		"v": "2", "ps": o.str("name"), "add": o.str("server"), "port": o.str("port"),
		"id": o.str("uuid"), "aid": o.str("alterid"), "scy": o.str("cipher"), "tls": "",
	}
	if v["aid"] == "" {
		v["aid"] = "0"
	}
	put := func(k string, sub linkOpts, key string, val string) {
		if sub[key] != nil {
			v[k] = val
		}
	}
	network := o.str("network")
	switch network {
	case "":
	case "http":
		// tcp with an HTTP header disguise
		h := o.sub("http-opts")
		v["net"], v["type"] = "tcp", "http"
		v["path"] = strings.Join(h.list("path"), ",")
		v["host"] = strings.Join(h.sub("headers").list("Host"), ",")
	case "h2":
		h := o.sub("h2-opts")
		v["net"] = "http"
		put("path", h, "path", h.str("path"))
		v["host"] = strings.Join(h.sub("headers").list("Host"), ",")
	case "ws", "httpupgrade":
		ws := o.sub("ws-opts")
		v["net"] = network
		v["path"] = earlyDataPath(ws.str("path"), ws)
		v["host"] = ws.sub("headers").str("Host")
	case "grpc":
		g := o.sub("grpc-opts")
		v["net"] = "grpc"
		put("path", g, "grpc-service-name", g.str("grpc-service-name"))
	default:
		v["net"] = network
	}
	v["sni"] = o.str("servername")
	if o.on("tls") {
		v["tls"] = "tls"
		v["fp"] = o.str("client-fingerprint")
		if o.on("skip-cert-verify") {
			v["allowInsecure"] = true
		}
	}
	put("alpn", o, "alpn", strings.Join(o.list("alpn"), ","))
	for _, k := range []string{"sni", "fp", "host", "type"} {
		if v[k] == "" {
			delete(v, k)
		}
	}
	if x != "" {
		v[extrasKey] = x
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding vmess JSON: %w", err)
	}
	return "vmess://" + base64.StdEncoding.EncodeToString(b), nil
}

// earlyDataPath puts websocket early data back into the path as "?ed=N",
// where v2rayN's vmess JSON carries it.
func earlyDataPath(path string, ws linkOpts) string {
	ed := ws.str("max-early-data")
	if ed == "" && ws.on("v2ray-http-upgrade-fast-open") {
		ed = "2048"
	}
	if ed == "" {
		return path
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + "ed=" + ed
}

// vlessLink writes Xray's VLESS share link (XTLS/Xray-core discussion 716).
func vlessLink(o linkOpts, x string) (string, error) {
	var q query
	q.opts(o, "encryption", "encryption", "flow", "flow")
	vShareQuery(&q, o)
	return urlLink("vless", userinfo(o.str("uuid"), "", false), o, "", &q, x), nil
}

// vShareQuery adds the security and transport keys VLESS (and VMess AEAD)
// links share.
func vShareQuery(q *query, o linkOpts) {
	reality := o.sub("reality-opts")
	switch {
	case o.on("tls") && reality != nil:
		q.set("security", "reality")
	case o.on("tls"):
		q.set("security", "tls")
	default:
		q.set("security", "none")
	}
	q.set("sni", o.str("servername"))
	if o.on("tls") {
		q.opts(o, "fp", "client-fingerprint", "alpn", "alpn", "pcs", "fingerprint", "allowInsecure", "skip-cert-verify")
	}
	q.opts(reality, "pbk", "public-key", "sid", "short-id")
	switch {
	case o.on("packet-addr"):
		q.set("packetEncoding", "packet")
	case o.on("xudp"):
		q.set("packetEncoding", "xudp")
	default:
		q.set("packetEncoding", "none")
	}
	network := o.str("network")
	switch network {
	case "", "tcp":
		q.set("type", "tcp")
		if h := o.sub("http-opts"); h != nil {
			httpQuery(q, h, "")
		} else {
			q.set("headerType", "none")
		}
	case "http":
		q.set("type", "tcp")
		httpQuery(q, o.sub("http-opts"), "http")
	case "h2":
		q.set("type", "http")
		h := o.sub("h2-opts")
		q.set("path", strings.Join(h.list("path"), ","))
		q.set("host", strings.Join(h.list("host"), ","))
	case "ws", "httpupgrade":
		ws := o.sub("ws-opts")
		q.set("type", network)
		q.set("host", ws.sub("headers").str("Host"))
		q.set("path", ws.str("path"))
		q.set("ed", ws.str("max-early-data"))
		if ws.on("v2ray-http-upgrade-fast-open") && ws.str("max-early-data") == "" {
			q.set("ed", "2048")
		}
		if eh := ws.str("early-data-header-name"); eh != "" && eh != "Sec-WebSocket-Protocol" {
			q.set("eh", eh)
		}
	case "grpc":
		q.set("type", "grpc")
		g := o.sub("grpc-opts")
		q.set("serviceName", g.str("grpc-service-name"))
		q.set("mode", g.str("grpc-mode"))
	case "xhttp":
		q.set("type", "xhttp")
		x := o.sub("xhttp-opts")
		q.set("path", x.str("path"))
		q.set("host", x.str("host"))
		q.set("mode", x.str("mode"))
	default:
		q.set("type", network)
	}
}

// httpQuery writes an HTTP header disguise's host, path and method.
func httpQuery(q *query, h linkOpts, headerType string) {
	q.set("headerType", headerType)
	q.set("host", strings.Join(h.sub("headers").list("Host"), ","))
	q.set("path", strings.Join(h.list("path"), ","))
	q.set("method", h.str("method"))
}

// trojanLink writes trojan-gfw's URL with v2rayN's transport keys.
func trojanLink(o linkOpts, x string) (string, error) {
	var q query
	q.set("security", "tls")
	q.opts(o, "sni", "sni", "alpn", "alpn", "fp", "client-fingerprint", "pcs", "fingerprint", "allowInsecure", "skip-cert-verify")
	switch network := o.str("network"); network {
	case "ws":
		ws := o.sub("ws-opts")
		q.set("type", "ws")
		q.set("host", ws.sub("headers").str("Host"))
		q.set("path", ws.str("path"))
	case "grpc":
		q.set("type", "grpc")
		q.set("serviceName", o.sub("grpc-opts").str("grpc-service-name"))
	default:
		q.set("type", network)
	}
	return urlLink("trojan", userinfo(o.str("password"), "", false), o, "", &q, x), nil
}

// ssLink writes SIP002: base64url(cipher:password) userinfo and the plugin
// as "name;opt=value;…".
func ssLink(o linkOpts, x string) (string, error) {
	ui := base64.RawURLEncoding.EncodeToString([]byte(o.str("cipher") + ":" + o.str("password")))
	var q query
	if p := o.str("plugin"); p != "" {
		s, err := ssPlugin(p, o.sub("plugin-opts"))
		if err != nil {
			return "", err
		}
		q.set("plugin", s)
	}
	q.opts(o, "uot", "udp-over-tcp")
	path := ""
	if q.b.Len() > 0 || x != "" {
		path = "/"
	}
	return urlLink("ss", ui+"@", o, path, &q, x), nil
}

// ssPlugin renders the SIP003 plugin string for the plugins links carry.
func ssPlugin(name string, po linkOpts) (string, error) {
	opt := func(k, v string) string {
		if v == "" {
			return ""
		}
		return ";" + k + "=" + pluginEscaper.Replace(v)
	}
	switch name {
	case "obfs":
		return "obfs-local" + opt("obfs", po.str("mode")) + opt("obfs-host", po.str("host")), nil
	case "v2ray-plugin":
		s := "v2ray-plugin" + opt("mode", po.str("mode")) + opt("host", po.str("host")) + opt("path", po.str("path"))
		if po.on("tls") {
			s += ";tls"
			if po.on("skip-cert-verify") {
				s += ";allowInsecure=1"
			}
		}
		if !strings.Contains(s, ";") {
			s += ";mode=websocket"
		}
		return s, nil
	}
	return "", fmt.Errorf("plugin %q has no share link form (obfs and v2ray-plugin have)", name)
}

// pluginEscaper escapes what would cut or bend a plugin option value as
// mihomo reads the plugin string (as a query, ';' for '&'), and only that,
// so "path=/ws" stays readable to clients that take the string as is.
var pluginEscaper = strings.NewReplacer("%", "%25", "+", "%2B", "&", "%26", ";", "%3B", "=", "%3D", "#", "%23")

// ssrLink writes ssr://base64url(host:port:protocol:method:obfs:
// base64url(password)/?obfsparam=…&protoparam=…&remarks=…).
func ssrLink(o linkOpts, x string) (string, error) {
	if strings.Contains(o.str("server"), ":") {
		return "", errors.New("an IPv6 server cannot be carried (ssr links split host:port:… on ':')")
	}
	b64 := base64.RawURLEncoding.EncodeToString
	body := strings.Join([]string{
		o.str("server"), o.str("port"), o.str("protocol"), o.str("cipher"), o.str("obfs"),
		b64([]byte(o.str("password"))),
	}, ":") + "/?obfsparam=" + b64([]byte(o.str("obfs-param"))) +
		"&protoparam=" + b64([]byte(o.str("protocol-param"))) +
		"&remarks=" + b64([]byte(o.str("name")))
	if x != "" {
		body += "&" + extrasKey + "=" + x
	}
	return "ssr://" + b64([]byte(body)), nil
}

// hysteriaLink writes hysteria v1's URL.
func hysteriaLink(o linkOpts, x string) (string, error) {
	var q query
	q.opts(o, "protocol", "protocol", "auth", "auth_str", "peer", "sni", "insecure", "skip-cert-verify",
		"upmbps", "up", "downmbps", "down", "alpn", "alpn", "obfs", "obfs")
	return urlLink("hysteria", "", o, "", &q, x), nil
}

// hysteria2Link writes hysteria2's URL. mihomo reads the password as the
// userinfo as written (still escaped), so it goes in unescaped, and one
// that needs escaping has no link.
func hysteria2Link(o linkOpts, x string) (string, error) {
	var q query
	q.opts(o, "sni", "sni", "insecure", "skip-cert-verify", "obfs", "obfs", "obfs-password", "obfs-password",
		"alpn", "alpn", "pinSHA256", "fingerprint", "up", "up", "down", "down")
	ui := ""
	if pw := o.str("password"); pw != "" {
		if pu, err := url.Parse("hysteria2://" + pw + "@h"); err != nil || pu.User.String() != pw {
			return "", fmt.Errorf("a share link cannot carry password %q (mihomo's hysteria2 reader keeps a link's escapes)", pw)
		}
		ui = pw + "@"
	}
	return urlLink("hysteria2", ui, o, "/", &q, x), nil
}

// tuicLink writes tuic://uuid:password@ (v5) or tuic://token@ (v4).
func tuicLink(o linkOpts, x string) (string, error) {
	ui := userinfo(o.str("token"), "", false)
	if o.str("token") == "" {
		ui = userinfo(o.str("uuid"), o.str("password"), true)
	}
	var q query
	q.opts(o, "congestion_control", "congestion-controller", "udp_relay_mode", "udp-relay-mode", "alpn", "alpn",
		"sni", "sni", "disable_sni", "disable-sni", "allowInsecure", "skip-cert-verify")
	return urlLink("tuic", ui, o, "", &q, x), nil
}

// anytlsLink writes anytls://password@host:port (user:password when the
// record has a user name of its own).
func anytlsLink(o linkOpts, x string) (string, error) {
	user, pass := o.str("username"), o.str("password")
	ui := userinfo(pass, "", false)
	if user != "" && user != pass {
		ui = userinfo(user, pass, true)
	}
	var q query
	q.opts(o, "sni", "sni", "insecure", "skip-cert-verify", "hpkp", "fingerprint", "alpn", "alpn", "fp", "client-fingerprint")
	return urlLink("anytls", ui, o, "/", &q, x), nil
}

// wireguardLink writes v2rayN's wireguard:// form.
func wireguardLink(o linkOpts, x string) (string, error) {
	var q query
	q.opts(o, "publickey", "public-key", "presharedkey", "pre-shared-key")
	var addrs []string
	for _, k := range []string{"ip", "ipv6"} {
		if a := o.str(k); a != "" {
			addrs = append(addrs, a)
		}
	}
	q.set("address", strings.Join(addrs, ","))
	q.opts(o, "reserved", "reserved", "mtu", "mtu")
	return urlLink("wireguard", url.QueryEscape(o.str("private-key"))+"@", o, "/", &q, x), nil
}
