package parse

import (
	"net/url"
	"strings"
)

// tlsHints is what a link says about its TLS layer, in the keys v2rayN,
// Shadowrocket and Clash subscriptions write. mihomo's converter reads only
// some of them, and differently per scheme: allowInsecure for trojan only,
// insecure for hysteria/hysteria2 (and anytls only as "1"), none for
// vless/vmess/tuic, and it hard-codes skip-cert-verify false for v2rayN
// vmess JSON; peer is read for hysteria only and sni for everything but
// hysteria; vmess JSON loses fp, anytls alpn and fp. link() runs the
// converter and then fills in what it dropped with apply, so a self-signed
// node whose link says "insecure" dials the way v2rayN would dial it.
type tlsHints struct {
	insecure bool // some insecure key is true (or verify_cert is false)
	sni      string
	alpn     []string
	fp       string // uTLS client fingerprint
	plugin   string // ss: the plugin option string ("v2ray-plugin;tls;host=…")
}

// insecureKeys are the names (lower-cased) for "do not verify the server's
// certificate" in links and v2rayN JSON.
var insecureKeys = map[string]bool{
	"allowinsecure": true, "allow_insecure": true, "allow-insecure": true,
	"insecure": true, "skip-cert-verify": true, "skip_cert_verify": true,
	"tlsallowinsecure": true,
}

// verifyKeys say the opposite: false means do not verify.
var verifyKeys = map[string]bool{"verify_cert": true, "verify-cert": true}

// sniKeys in order of preference.
var sniKeys = []string{"sni", "peer", "servername", "serverName"}

// queryHints reads the hints from a link's query.
func queryHints(q url.Values) tlsHints {
	var h tlsHints
	for k, vs := range q {
		lk := strings.ToLower(k)
		for _, v := range vs {
			switch {
			case insecureKeys[lk] && isTrue(v):
				h.insecure = true
			case verifyKeys[lk] && isFalse(v):
				h.insecure = true
			}
		}
	}
	for _, k := range sniKeys {
		if v := strings.TrimSpace(q.Get(k)); v != "" {
			h.sni = v
			break
		}
	}
	h.alpn = splitALPN(q.Get("alpn"))
	h.fp = strings.TrimSpace(q.Get("fp"))
	h.plugin = q.Get("plugin")
	return h
}

// vmessJSONHints reads the hints from a v2rayN vmess JSON body, whose values may
// be strings, numbers or booleans ("allowInsecure": true, "1" or 1).
func vmessJSONHints(v map[string]any) tlsHints {
	var h tlsHints
	for k, val := range v {
		lk := strings.ToLower(k)
		switch {
		case insecureKeys[lk] && jsonTrue(val):
			h.insecure = true
		case verifyKeys[lk] && jsonFalse(val):
			h.insecure = true
		}
	}
	for _, k := range sniKeys {
		if s, _ := v[k].(string); strings.TrimSpace(s) != "" {
			h.sni = strings.TrimSpace(s)
			break
		}
	}
	if s, ok := v["alpn"].(string); ok {
		h.alpn = splitALPN(s)
	}
	if s, ok := v["fp"].(string); ok {
		h.fp = strings.TrimSpace(s)
	}
	return h
}

func splitALPN(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func isTrue(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

func isFalse(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "0", "false", "no", "off":
		return true
	}
	return false
}

func jsonTrue(v any) bool {
	switch t := v.(type) {
	case bool:
		return t
	case float64:
		return t == 1
	case string:
		return isTrue(t)
	}
	return false
}

func jsonFalse(v any) bool {
	switch t := v.(type) {
	case bool:
		return !t
	case float64:
		return t == 0
	case string:
		return isFalse(t)
	}
	return false
}

// sniOption is the option each kind takes its TLS server name from ("" for
// kinds without one: socks5 over TLS verifies the server address).
func sniOption(typ string) string {
	switch typ {
	case "vless", "vmess":
		return "servername"
	case "trojan", "hysteria", "hysteria2", "tuic", "anytls", "http":
		return "sni"
	}
	return ""
}

// hasTLS reports whether mapping m dials over TLS: the QUIC and TLS-only
// kinds always, the others when their "tls" option says so.
func hasTLS(m map[string]any) bool {
	switch m["type"] {
	case "trojan", "hysteria", "hysteria2", "tuic", "anytls":
		return true
	case "vless", "vmess", "http", "socks5":
		return m["tls"] == true
	}
	return false
}

// apply adds to the converter's mapping m what h says and m lacks. It never
// turns certificate checks off unless the link asked, and never overrides a
// value the converter read itself.
func (h tlsHints) apply(m map[string]any) {
	typ, _ := m["type"].(string)
	if typ == "ss" {
		h.applySSPlugin(m)
		return
	}
	if !hasTLS(m) {
		return
	}
	if h.insecure {
		m["skip-cert-verify"] = true
	}
	if k := sniOption(typ); k != "" && h.sni != "" {
		if s, _ := m[k].(string); s == "" {
			m[k] = h.sni
		}
	}
	switch typ {
	case "vless", "vmess", "trojan", "hysteria", "hysteria2", "tuic", "anytls":
		if len(h.alpn) > 0 && m["alpn"] == nil {
			m["alpn"] = h.alpn
		}
	}
	switch typ {
	case "vless", "vmess", "trojan", "anytls":
		if h.fp != "" && m["client-fingerprint"] == nil {
			m["client-fingerprint"] = h.fp
		}
	}
}

// applySSPlugin fixes a v2ray-plugin's TLS flag (mihomo sets it when "tls"
// appears anywhere in the plugin string, host names included) and carries
// an insecure key from the plugin options or the link's query.
func (h tlsHints) applySSPlugin(m map[string]any) {
	po, ok := m["plugin-opts"].(map[string]any)
	if !ok || m["plugin"] != "v2ray-plugin" {
		return
	}
	tls := false
	insecure := h.insecure
	for _, f := range strings.Split(h.plugin, ";") {
		k, v, hasV := strings.Cut(strings.TrimSpace(f), "=")
		lk := strings.ToLower(k)
		switch {
		case lk == "tls" && (!hasV || isTrue(v)):
			tls = true
		case insecureKeys[lk] && (!hasV || isTrue(v)):
			insecure = true
		case verifyKeys[lk] && hasV && isFalse(v):
			insecure = true
		}
	}
	po["tls"] = tls
	if tls && insecure {
		po["skip-cert-verify"] = true
	}
}
