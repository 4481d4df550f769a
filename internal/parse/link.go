package parse

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/metacubex/mihomo/common/convert"

	"github.com/proxypool/proxypool/internal/upstream"
)

// schemes are the link schemes recognised anywhere in a line (a text
// prefix or a previous link may precede them), longest first so that a
// suffix match prefers "vless" over "ss" and "hysteria2" over "hysteria".
var schemes = []string{
	"wireguard", "hysteria2", "hysteria", "socks5h", "socks4a", "anytls",
	"socks5", "socks4", "trojan", "socks", "vless", "vmess", "tuic",
	"ssr", "hy2", "wg", "ss",
}

// leadOnly are recognised only at the very start of a line: "https://" in
// the middle of chatter is a web link, not a proxy. socks5+tls (gost's
// name for SOCKS5 inside TLS) is here because its '+' would cut it short.
var leadOnly = []string{"https", "http", "socks5+tls", "socks+tls"}

var leadingRE = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.\-]*)://`)

func leadingScheme(s string) (string, bool) {
	m := leadingRE.FindStringSubmatch(s)
	if m == nil {
		return "", false
	}
	return strings.ToLower(m[1]), true
}

// splitLinks finds the share links in a line: the first may follow text
// ("🇩🇪vless://…", "Germanyvmess://…"), and links glued together without a
// newline are cut apart. It returns nil when the line holds no link.
func splitLinks(s string) []string {
	var starts []int
	for off := 0; off < len(s); {
		i := strings.Index(s[off:], "://")
		if i < 0 {
			break
		}
		at := off + i
		// the run of ASCII letters and digits before "://"
		j := at
		for j > 0 && isAlnum(s[j-1]) {
			j--
		}
		tok := strings.ToLower(s[j:at])
		found := -1
		for _, sch := range schemes {
			if strings.HasSuffix(tok, sch) {
				found = at - len(sch)
				break
			}
		}
		if found < 0 && len(starts) == 0 {
			if sch, ok := leadingScheme(s); ok && len(sch) == at && slices.Contains(leadOnly, sch) {
				found = 0
			}
		}
		if found >= 0 {
			starts = append(starts, found)
		}
		off = at + 3
	}
	if len(starts) == 0 {
		return nil
	}
	out := make([]string, 0, len(starts))
	for k, st := range starts {
		end := len(s)
		if k+1 < len(starts) {
			end = starts[k+1]
		}
		if l := strings.TrimSpace(s[st:end]); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// safeLink parses one link; a panic (in mihomo or here) becomes its error.
func safeLink(l string) (u upstream.Upstream, err error) {
	scheme, _, _ := strings.Cut(l, "://")
	scheme = strings.ToLower(scheme)
	defer func() {
		if r := recover(); r != nil {
			u, err = upstream.Upstream{}, fmt.Errorf("%s: parser panicked: %v", scheme, r)
		}
	}()
	return link(scheme, l)
}

// plainSchemes are the links plainURI reads.
var plainSchemes = map[string]bool{
	"socks": true, "socks5": true, "socks5h": true, "socks4": true, "socks4a": true,
	"http": true, "https": true, "socks5+tls": true, "socks+tls": true,
}

func link(scheme, l string) (upstream.Upstream, error) {
	if plainSchemes[scheme] {
		return plainURI(scheme, l)
	}
	switch scheme {
	case "wireguard", "wg":
		return wireguardURI(l)
	}
	l = strings.ReplaceAll(l, "&amp;", "&")
	var hints *tlsHints // read from the link's query unless set here
	switch scheme {
	case "vmess":
		fixed, m, h, err := vmessPrep(l)
		if err != nil {
			return upstream.Upstream{}, err
		}
		if m != nil {
			return build(m)
		}
		l, hints = fixed, h
	case "ssr":
		body := l[len("ssr://"):]
		if body == "" {
			return upstream.Upstream{}, errors.New("ssr: empty body")
		}
		if before, _, ok := strings.Cut(body, "/?"); ok && strings.Count(before, ":") == 5 {
			// plain-text ssr://host:port:protocol:method:obfs:b64pass/?…
			// (the converter wants the password base64 unpadded)
			f := strings.Split(before, ":")
			f[5] = strings.TrimRight(f[5], "=")
			body = base64.RawURLEncoding.EncodeToString([]byte(strings.Join(f, ":") + body[len(before):]))
		}
		if base64Run(body) == "" {
			return upstream.Upstream{}, errors.New("ssr: body is not base64")
		}
		l = "ssr://" + base64Run(body)
	case "ss":
		fixed, err := ssPrep(l)
		if err != nil {
			return upstream.Upstream{}, err
		}
		l = fixed
	}
	l = escapeFragment(l)
	m, err := convertOne(l)
	if err != nil {
		return upstream.Upstream{}, diagnose(scheme, l)
	}
	if hints == nil {
		h := tlsHints{}
		if u, err := url.Parse(l); err == nil {
			h = queryHints(u.Query())
		}
		hints = &h
	}
	hints.apply(m)
	dropRandomUA(m)
	fixHTTPOpts(m)
	if err := linkExtras(scheme, l, m); err != nil {
		return upstream.Upstream{}, err
	}
	if aid, ok := m["alterId"].(string); ok {
		if n, err := strconv.Atoi(strings.TrimSpace(aid)); err == nil {
			m["alterId"] = n // "0" and 0 are one upstream
		}
	}
	return build(m)
}

// fixHTTPOpts undoes a mihomo converter slip: tcp links with
// headerType=http get network "http" but their options under "h2-opts"
// (which mihomo then refuses to decode). They belong in "http-opts".
func fixHTTPOpts(m map[string]any) {
	h2, ok := m["h2-opts"].(map[string]any)
	if m["network"] != "http" || !ok || m["http-opts"] != nil {
		return
	}
	delete(m, "h2-opts")
	opts := map[string]any{"path": h2["path"]}
	if host, ok := h2["host"].([]string); ok && len(host) > 0 {
		opts["headers"] = map[string]any{"Host": host}
	}
	m["http-opts"] = opts
}

// ssPrep rewrites two ss shapes mihomo's converter drops into SIP002 form:
// the legacy ss://BASE64(cipher:password@host:port)#tag when the base64 is
// padded or holds '/' or '+', and a userinfo that is itself base64 of an
// ss:// link (double-encoded).
func ssPrep(l string) (string, error) {
	body, frag, hasFrag := strings.Cut(l[len("ss://"):], "#")
	suffix := ""
	if hasFrag {
		suffix = "#" + frag
	}
	if !strings.Contains(body, "@") {
		run := base64Run(body)
		if run == "" || len(run) < len(body) && body[len(run)] != '?' && body[len(run)] != '/' {
			return l, nil
		}
		dec, err := decodeB64(run)
		if err != nil {
			return l, nil
		}
		if len(dec) > 0 && dec[0] == '{' {
			return "", errors.New("ss: body is base64 JSON (a vmess link labelled ss?)")
		}
		at := strings.LastIndexByte(string(dec), '@')
		cp, hp := string(dec[:max(at, 0)]), string(dec[at+1:])
		cipher, pass, ok := strings.Cut(cp, ":")
		if at < 0 || !ok {
			return "", errors.New("ss: legacy base64 body is not cipher:password@host:port")
		}
		return "ss://" + url.UserPassword(cipher, pass).String() + "@" + hp + suffix, nil
	}
	at := strings.LastIndexByte(body, '@')
	user := body[:at]
	if strings.Contains(user, ":") {
		return l, nil
	}
	if uu, err := url.PathUnescape(user); err == nil {
		user = uu
	}
	dec, err := decodeB64(user)
	if err != nil || !strings.HasPrefix(string(dec), "ss://") {
		return l, nil
	}
	inner := strings.TrimPrefix(string(dec), "ss://")
	if d2, err := decodeB64(inner); err == nil && strings.Contains(string(d2), ":") {
		inner = url.PathEscape(inner)
	}
	return "ss://" + inner + "@" + body[at+1:] + suffix, nil
}

// convertOne runs mihomo's converter on one link.
func convertOne(l string) (m map[string]any, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("mihomo's converter panicked: %v", r)
		}
	}()
	ms, err := convert.ConvertsV2Ray([]byte(l))
	if err != nil || len(ms) == 0 {
		return nil, errors.New("rejected")
	}
	return ms[0], nil
}

// dropRandomUA removes the User-Agent mihomo's converter picks at random for
// ws links, so that the same line always gives the same upstream ID.
func dropRandomUA(m map[string]any) {
	if ws, ok := m["ws-opts"].(map[string]any); ok {
		if h, ok := ws["headers"].(map[string]any); ok {
			delete(h, "User-Agent")
		}
	}
}

// escapeFragment re-escapes a fragment that url.Parse would reject
// ("#100%"): the name is cosmetic and should not sink the link.
func escapeFragment(l string) string {
	i := strings.IndexByte(l, '#')
	if i < 0 {
		return l
	}
	if _, err := url.Parse(l); err == nil {
		return l
	}
	frag := l[i+1:]
	if dec, err := url.PathUnescape(frag); err == nil {
		frag = dec
	}
	return l[:i+1] + url.PathEscape(frag)
}

var b64chars = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_" {
		t[c] = true
	}
	return
}()

// base64Run is the leading run of base64 (standard or URL) characters.
func base64Run(s string) string {
	i := 0
	for i < len(s) && b64chars[s[i]] {
		i++
	}
	return s[:i]
}

// decodeB64 decodes standard or URL base64 with or without padding.
func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawStdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawURLEncoding.DecodeString(s)
}

var shadowrocketVMess = regexp.MustCompile(`^([A-Za-z0-9-]+):([0-9A-Fa-f-]{36})@(.+):(\d+)$`)

// vmessPrep handles the base64 forms of vmess links: v2rayN JSON (trailing
// junk trimmed, a missing "ps" supplied so mihomo does not drop it) is
// returned as a clean link for the converter; the Shadowrocket form
// base64(cipher:uuid@host:port)?remarks=… is built here. The URI form
// vmess://uuid@host:port?… is returned unchanged.
func vmessPrep(l string) (string, map[string]any, *tlsHints, error) {
	body := l[len("vmess://"):]
	run := base64Run(body)
	if run == "" {
		return "", nil, nil, errors.New("vmess: body is neither base64 nor uuid@host:port")
	}
	dec, err := decodeB64(run)
	var v map[string]any
	if len(run) < len(body) && body[len(run)] == '@' {
		// vmess://uuid@host:port (Xray's VMessAEAD form, whose id is a
		// UUID), or a v2rayN body with a channel's "@name" glued on
		if uuidRE.MatchString(run) {
			return l, nil, nil, nil
		}
		if err != nil || jsonFirst(dec, &v) != nil {
			return "", nil, nil, fmt.Errorf("vmess: %.40q before '@' is neither a UUID nor base64 JSON", run)
		}
	}
	if v == nil && (err != nil || jsonFirst(dec, &v) != nil) {
		// "-" and "_" may be trailing text rather than URL-safe base64
		if std := strings.TrimRight(run[:strings.IndexFunc(run+"-", func(r rune) bool { return r == '-' || r == '_' })], "="); std != run {
			if d2, err2 := decodeB64(std); err2 == nil && jsonFirst(d2, &v) == nil {
				dec, err = d2, nil
			}
		}
	}
	if err != nil {
		return "", nil, nil, errors.New("vmess: body is not valid base64")
	}
	if v != nil || jsonFirst(dec, &v) == nil {
		if v["add"] == nil || v["add"] == "" {
			return "", nil, nil, errors.New("vmess: missing server (\"add\")")
		}
		if v["port"] == nil || v["port"] == "" {
			return "", nil, nil, errors.New("vmess: missing port")
		}
		if id, _ := v["id"].(string); id == "" {
			return "", nil, nil, errors.New("vmess: missing uuid (\"id\")")
		}
		if _, ok := v["ps"].(string); !ok {
			if v["ps"] == nil {
				v["ps"] = ""
			} else {
				v["ps"] = fmt.Sprint(v["ps"])
			}
		}
		h := vmessJSONHints(v)
		b, _ := json.Marshal(v)
		return "vmess://" + base64.StdEncoding.EncodeToString(b), nil, &h, nil
	}
	sm := shadowrocketVMess.FindStringSubmatch(string(dec))
	if sm == nil {
		if len(dec) > 0 && dec[0] == '{' {
			return "", nil, nil, errors.New("vmess: base64 JSON is truncated or invalid")
		}
		return "", nil, nil, errors.New("vmess: base64 body is neither JSON nor cipher:uuid@host:port")
	}
	q := url.Values{}
	if rest := body[len(run):]; strings.HasPrefix(rest, "?") {
		q, _ = url.ParseQuery(strings.SplitN(rest[1:], "#", 2)[0])
	}
	m := map[string]any{
		"type": "vmess", "name": q.Get("remarks"), "server": strings.Trim(sm[3], "[]"), "port": sm[4],
		"uuid": sm[2], "cipher": sm[1], "alterId": 0, "udp": true,
	}
	if aid, err := strconv.Atoi(q.Get("alterId")); err == nil {
		m["alterId"] = aid
	}
	if q.Get("tls") == "1" {
		m["tls"] = true
		if p := q.Get("peer"); p != "" {
			m["servername"] = p
		}
	}
	if q.Get("obfs") == "websocket" {
		m["network"] = "ws"
		ws := map[string]any{"path": q.Get("path")}
		if h := q.Get("obfsParam"); h != "" {
			ws["headers"] = map[string]any{"Host": h}
		}
		m["ws-opts"] = ws
	}
	queryHints(q).apply(m)
	return "", m, nil, nil
}

// jsonFirst decodes the first JSON value in b, ignoring what follows (as
// mihomo's converter does with trailing bytes after a vmess JSON body).
func jsonFirst(b []byte, v *map[string]any) error {
	return json.NewDecoder(bytes.NewReader(b)).Decode(v)
}

var uuidRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

// diagnose names why mihomo's converter dropped a link (it says nothing).
func diagnose(scheme, l string) error {
	if scheme == "ssr" {
		return ssrDiagnose(l)
	}
	u, err := url.Parse(l)
	if err != nil {
		return fmt.Errorf("%s: bad URL: %v", scheme, urlErr(err))
	}
	if scheme == "ss" && u.Port() == "" && u.Hostname() != "" {
		dec, err := decodeB64(u.Host)
		if err != nil {
			return errors.New("ss: no port, and the body is not legacy base64")
		}
		if !strings.Contains(string(dec), "@") || !strings.Contains(string(dec), ":") {
			return errors.New("ss: legacy base64 body is not cipher:password@host:port")
		}
		return errors.New("ss: mihomo's converter rejected the legacy link")
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%s: missing server", scheme)
	}
	if u.Port() == "" && scheme != "hysteria2" && scheme != "hy2" {
		return fmt.Errorf("%s: missing port", scheme)
	}
	user := u.User.Username()
	switch scheme {
	case "vless", "vmess":
		if user == "" {
			return fmt.Errorf("%s: missing uuid", scheme)
		}
		if ed := u.Query().Get("ed"); ed != "" {
			if _, err := strconv.Atoi(ed); err != nil {
				return fmt.Errorf("%s: bad early-data size ed=%q", scheme, ed)
			}
		}
	case "trojan":
		if user == "" {
			return errors.New("trojan: missing password")
		}
	case "tuic":
		if user == "" {
			return errors.New("tuic: missing uuid:password or token")
		}
	case "ss":
		if user == "" {
			return errors.New("ss: missing cipher:password")
		}
		if _, has := u.User.Password(); !has {
			dec, err := decodeB64(user)
			switch {
			case uuidRE.MatchString(user):
				return errors.New("ss: userinfo is a UUID, not cipher:password (a vless link labelled ss?)")
			case err != nil:
				return errors.New("ss: userinfo is neither base64 nor cipher:password")
			case !strings.Contains(string(dec), ":"):
				return errors.New("ss: decoded userinfo lacks ':' (want cipher:password)")
			}
		}
	}
	return fmt.Errorf("%s: mihomo's converter rejected the link", scheme)
}

func ssrDiagnose(l string) error {
	body := l[len("ssr://"):]
	if body == "" {
		return errors.New("ssr: empty body")
	}
	dec, err := convert.TryDecodeBase64(body)
	if err != nil {
		return errors.New("ssr: body is not base64")
	}
	before, _, ok := strings.Cut(string(dec), "/?")
	if !ok {
		return errors.New("ssr: decoded body lacks \"/?\"")
	}
	if n := len(strings.Split(before, ":")); n != 6 {
		return fmt.Errorf("ssr: want host:port:protocol:method:obfs:password, got %d fields", n)
	}
	return errors.New("ssr: mihomo's converter rejected the link")
}

func urlErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// plainURI parses socks/socks5/socks5h/socks4/socks4a/http/https URIs with
// an optional user:pass (or v2rayN's base64(user:pass)) userinfo.
func plainURI(scheme, l string) (upstream.Upstream, error) {
	u, err := url.Parse(escapeFragment(l))
	if err != nil {
		return upstream.Upstream{}, fmt.Errorf("%s: bad URL: %v", scheme, urlErr(err))
	}
	if u.Hostname() == "" {
		return upstream.Upstream{}, fmt.Errorf("%s: missing server", scheme)
	}
	if u.Port() == "" {
		return upstream.Upstream{}, fmt.Errorf("%s: missing port", scheme)
	}
	user := u.User.Username()
	pass, hasPass := u.User.Password()
	if user != "" && !hasPass {
		if dec, err := decodeB64(user); err == nil {
			if a, b, ok := strings.Cut(string(dec), ":"); ok {
				user, pass = a, b
			}
		}
	}
	m := plainMapping(scheme, u.Hostname(), u.Port(), user, pass)
	if u.Fragment != "" {
		m["name"] = u.Fragment
	}
	queryHints(u.Query()).apply(m) // https and socks5+tls only: apply skips plain kinds
	if err := linkExtras(scheme, l, m); err != nil {
		return upstream.Upstream{}, err
	}
	return build(m)
}

// plainMapping is the mihomo-style mapping of a plain proxy.
func plainMapping(scheme, host, port, user, pass string) map[string]any {
	typ := scheme
	switch scheme {
	case "socks", "socks5", "socks5h", "socks5+tls", "socks+tls":
		typ = "socks5"
	case "socks4", "socks4a":
		typ = "socks4"
	case "https":
		typ = "http"
	}
	m := map[string]any{"type": typ, "server": host, "port": port}
	if scheme == untyped {
		m["type"], m[upstream.OptDiscover] = "http", true
	}
	if user != "" {
		m["username"] = user
	}
	if pass != "" && typ != "socks4" {
		m["password"] = pass
	}
	if scheme == "https" || strings.HasSuffix(scheme, "+tls") {
		m["tls"] = true
	}
	return m
}

// wireguardURI parses wireguard://PRIVATEKEY@host:port?publickey=…&address=…
// &reserved=a,b,c&mtu=…&presharedkey=…#name (v2rayN/Hiddify form).
func wireguardURI(l string) (upstream.Upstream, error) {
	u, err := url.Parse(escapeFragment(wgTidy(l)))
	if err != nil {
		return upstream.Upstream{}, fmt.Errorf("wireguard: bad URL: %v", urlErr(err))
	}
	q := u.Query()
	get := func(keys ...string) string {
		for _, k := range keys {
			if v := q.Get(k); v != "" {
				return v
			}
		}
		return ""
	}
	switch {
	case u.Hostname() == "":
		return upstream.Upstream{}, errors.New("wireguard: missing server")
	case u.Port() == "":
		return upstream.Upstream{}, errors.New("wireguard: missing port")
	case u.User.Username() == "":
		return upstream.Upstream{}, errors.New("wireguard: missing private key")
	}
	pub := get("publickey", "public-key", "publicKey", "peer")
	if pub == "" {
		return upstream.Upstream{}, errors.New("wireguard: missing publickey")
	}
	m := map[string]any{
		"type": "wireguard", "name": u.Fragment, "server": u.Hostname(), "port": u.Port(),
		"private-key": u.User.Username(), "public-key": pub, "udp": true,
	}
	if psk := get("presharedkey", "pre-shared-key", "psk"); psk != "" {
		m["pre-shared-key"] = psk
	}
	addr := get("address", "ip", "local_address")
	if addr == "" {
		return upstream.Upstream{}, errors.New("wireguard: missing address (the local tunnel IP)")
	}
	for _, a := range strings.Split(addr, ",") {
		a = strings.TrimSpace(a)
		if strings.Contains(a, ":") {
			m["ipv6"] = a
		} else if a != "" {
			m["ip"] = a
		}
	}
	if r := get("reserved"); r != "" {
		var res []int
		for _, p := range strings.Split(r, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil || n < 0 || n > 255 {
				return upstream.Upstream{}, fmt.Errorf("wireguard: bad reserved %q (want three bytes a,b,c)", r)
			}
			res = append(res, n)
		}
		m["reserved"] = res
	}
	if mtu := get("mtu"); mtu != "" {
		n, err := strconv.Atoi(mtu)
		if err != nil || n < 576 || n > 65535 {
			return upstream.Upstream{}, fmt.Errorf("wireguard: bad mtu %q", mtu)
		}
		m["mtu"] = n
	}
	if err := linkExtras("wireguard", l, m); err != nil {
		return upstream.Upstream{}, err
	}
	return build(m)
}

// wgTidy escapes a raw base64 private key ('/' and '+' would end or bend
// the userinfo) and brackets a bare IPv6 host.
func wgTidy(l string) string {
	scheme, body, _ := strings.Cut(l, "://")
	at := strings.IndexByte(body, '@')
	if at < 0 {
		return l
	}
	key, rest := body[:at], body[at+1:]
	if k, err := url.PathUnescape(key); err == nil {
		key = k
	}
	end := strings.IndexAny(rest, "?#/")
	if end < 0 {
		end = len(rest)
	}
	hp := rest[:end]
	if strings.Count(hp, ":") > 1 && !strings.HasPrefix(hp, "[") {
		i := strings.LastIndexByte(hp, ':')
		hp = "[" + hp[:i] + "]" + hp[i:]
	}
	return scheme + "://" + url.QueryEscape(key) + "@" + hp + rest[end:]
}
