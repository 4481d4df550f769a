package parse

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/proxypool/proxypool/internal/upstream"
)

// linkCase is one block of testdata/link.txt.
type linkCase struct {
	name, in, want string
	decoded        string // what a vmess or ssr want's body decodes to
	mihomoFails    bool   // mihomo's converter alone cannot build it
}

func readLinkCases(t *testing.T) []linkCase {
	var out []linkCase
	for _, block := range strings.Split(strings.TrimSpace(string(readTestdata(t, "link.txt"))), "\n\n") {
		var c linkCase
		var links []string
		for _, l := range strings.Split(block, "\n") {
			switch {
			case strings.HasPrefix(l, "#!"):
				c.mihomoFails = true
			case strings.HasPrefix(l, "# = "):
				c.decoded = l[4:]
			case strings.HasPrefix(l, "# ") && c.name == "":
				c.name = l[2:]
			case !strings.HasPrefix(l, "#"):
				links = append(links, l)
			}
		}
		if len(links) == 0 {
			continue // the header
		}
		if len(links) != 2 {
			t.Fatalf("link.txt: block %q has %d links, want input and output", c.name, len(links))
		}
		c.in, c.want = links[0], links[1]
		out = append(out, c)
	}
	return out
}

// TestLink: a link of each shape (testdata/link.txt), parsed, gives back
// the link v2rayN would write for it, which reads back as the same
// upstream, and which mihomo's converter on its own (a reader without our
// fixes) reads as the same type, server and port.
func TestLink(t *testing.T) {
	cases := readLinkCases(t)
	if len(cases) < 30 {
		t.Fatalf("link.txt: %d cases", len(cases))
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseURI(tt.in)
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tt.in, err)
			}
			got, err := Link(u)
			if err != nil {
				t.Fatalf("Link: %v", err)
			}
			if got != tt.want {
				t.Errorf("Link =\n  %s\nwant\n  %s", got, tt.want)
			}
			if tt.decoded != "" {
				if body, _ := decodeB64(strings.SplitN(got, "://", 2)[1]); string(body) != tt.decoded {
					t.Errorf("body decodes to\n  %s\nlink.txt says\n  %s", body, tt.decoded)
				}
			}
			back, err := ParseURI(got)
			if err != nil || back.ID != u.ID || back.Name != u.Name {
				t.Fatalf("%s reads back as %+v, %v; want %+v", got, back, err, u)
			}
			if tt.mihomoFails || u.Type == upstream.WireGuard || u.Type == upstream.SOCKS4 || u.Type == upstream.SOCKS5 && u.Options["tls"] == true {
				return // mihomo's converter has no form for these
			}
			typ, server, port, ok := mihomoReference(got)
			if !ok || typ != string(u.Type) || server != u.Server || port != u.Port {
				t.Errorf("mihomo's converter reads %s as %s %s:%d (ok %v), want %s", got, typ, server, port, ok, u)
			}
		})
	}
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestLinkClash: Clash records that differ from any link only in what
// mihomo's converter invents or ignores round-trip with exactly those
// differences under proxypool=; records with an option no share link
// carries make Link fail naming that option, not return a link that dials
// differently.
func TestLinkClash(t *testing.T) {
	const id = "b831381d-6324-4d53-ad4f-8cda48b30811"
	trojan := func(extra map[string]any) map[string]any {
		m := map[string]any{"type": "trojan", "name": "t", "server": "1.2.3.4", "port": 443, "password": "pw", "udp": true, "client-fingerprint": "chrome"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	vless := func(extra map[string]any) map[string]any {
		m := map[string]any{"type": "vless", "name": "v", "server": "1.2.3.4", "port": 443, "uuid": "b831381d-6324-4d53-ad4f-8cda48b30811", "udp": true, "xudp": true, "network": "tcp", "tls": true, "client-fingerprint": "chrome"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name    string
		mapping map[string]any
		extras  string // the JSON under proxypool=
		err     string // or what the error names
	}{
		{"trojan without fingerprint or udp", map[string]any{"type": "trojan", "name": "t", "server": "1.2.3.4", "port": 443, "password": "pw", "sni": "t.example.com"},
			`{"client-fingerprint":null,"udp":false}`, ""},
		{"vless without network or udp", map[string]any{"type": "vless", "name": "v", "server": "1.2.3.4", "port": 443, "uuid": id, "tls": true, "client-fingerprint": "chrome"},
			`{"network":null,"udp":false}`, ""},
		{"vmess with the legacy ws keys mihomo ignores", map[string]any{"type": "vmess", "name": "m", "server": "1.2.3.4", "port": 80, "uuid": id, "alterId": 0, "cipher": "auto", "network": "ws", "ws-path": "/x", "ws-headers": map[string]any{"Host": "h.example.com"}},
			`{"udp":false,"ws-headers":{"Host":"h.example.com"},"ws-opts":null,"ws-path":"/x","xudp":false}`, ""},
		{"vmess insecure without TLS", map[string]any{"type": "vmess", "name": "m", "server": "1.2.3.4", "port": 80, "uuid": id, "alterId": 0, "cipher": "auto", "udp": true, "xudp": true, "skip-cert-verify": true},
			`{"skip-cert-verify":true}`, ""},
		{"socks5 with udp", map[string]any{"type": "socks5", "name": "s", "server": "1.2.3.4", "port": 1080, "udp": true}, `{"udp":true}`, ""},
		{"hysteria2 with udp", map[string]any{"type": "hysteria2", "name": "h", "server": "1.2.3.4", "port": 443, "password": "pw", "udp": true}, `{"udp":true}`, ""},
		{"ss without udp", map[string]any{"type": "ss", "name": "s", "server": "1.2.3.4", "port": 8388, "cipher": "aes-128-gcm", "password": "pw"}, `{"udp":false}`, ""},
		{"wireguard without udp", map[string]any{"type": "wireguard", "name": "w", "server": "1.2.3.4", "port": 51820, "private-key": "yAnz5TF+lXXJte14tji3zlMNq+hdX9WAvYpwBA/JSdM=", "public-key": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", "ip": "10.0.0.2"},
			`{"udp":false}`, ""},
		{"trojan ws Host header (mihomo reads no host from trojan links)", trojan(map[string]any{"network": "ws", "ws-opts": map[string]any{"path": "/x", "headers": map[string]any{"Host": "cdn.example.com"}}}), "", `ws-opts.headers.Host="cdn.example.com"`},
		{"a dialer-proxy is a dial option, not carried on the side", trojan(map[string]any{"dialer-proxy": "other"}), "", `dialer-proxy="other"`},
		{"reality without short-id", vless(map[string]any{"reality-opts": map[string]any{"public-key": "SbVKOEMjK0sIlbwg4akyBg5mL5KZwwB-ed4eEE7YnRc"}}), "", "reality-opts.short-id"},
		{"ech", vless(map[string]any{"ech-opts": map[string]any{"enable": true}}), "", "ech-opts"},
		{"ss plugin without a link form", map[string]any{"type": "ss", "server": "1.2.3.4", "port": 8388, "cipher": "aes-128-gcm", "password": "pw", "plugin": "shadow-tls", "plugin-opts": map[string]any{"host": "a.example.com", "password": "x", "version": 2}}, "", `plugin "shadow-tls"`},
		{"ssr on IPv6", map[string]any{"type": "ssr", "server": "2001:db8::1", "port": 8388, "cipher": "aes-256-cfb", "password": "pw", "obfs": "plain", "protocol": "origin"}, "", "IPv6"},
		{"hysteria2 password mihomo reads escaped", map[string]any{"type": "hysteria2", "server": "1.2.3.4", "port": 443, "password": "p@ss word"}, "", "password"},
		{"wireguard allowed-ips", map[string]any{"type": "wireguard", "server": "1.2.3.4", "port": 51820, "private-key": "yAnz5TF+lXXJte14tji3zlMNq+hdX9WAvYpwBA/JSdM=", "public-key": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", "ip": "10.0.0.2", "udp": true, "allowed-ips": []any{"10.0.0.0/8"}}, "", "allowed-ips"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := build(tt.mapping)
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			l, err := Link(u)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), string(u.Type)+": ") {
					t.Fatalf("Link = %q, %v; want an error naming %s", l, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Link: %v", err)
			}
			x, err := extrasOf(strings.SplitN(l, "://", 2)[0], l)
			if err != nil {
				t.Fatal(err)
			}
			if js, _ := base64.RawURLEncoding.DecodeString(x); string(js) != tt.extras {
				t.Errorf("%s: proxypool= holds %s, want %s", l, js, tt.extras)
			}
			back, err := ParseURI(l)
			if err != nil || back.ID != u.ID || back.Name != u.Name {
				t.Fatalf("%s reads back as %+v, %v; want %+v", l, back, err, u)
			}
		})
	}
}

// TestLinkKinds: kinds and records without any link form.
func TestLinkKinds(t *testing.T) {
	tor := upstream.MustNew(map[string]any{"type": "tor", "server": "127.0.0.1", "port": 9050, "group": "de"})
	l, err := Link(tor)
	if err != nil || l != "socks5://127.0.0.1:9050" {
		t.Errorf("Link(tor) = %q, %v; want socks5://127.0.0.1:9050", l, err)
	}
	snell := upstream.MustNew(map[string]any{"type": "snell", "server": "1.2.3.4", "port": 1, "psk": "x"})
	if l, err := Link(snell); err == nil || !strings.Contains(err.Error(), "no share link form") {
		t.Errorf("Link(snell) = %q, %v; want no share link form", l, err)
	}
	glued := upstream.MustNew(map[string]any{"type": "socks5", "server": "1.2.3.4:80185.2.3.4", "port": 1080})
	if l, err := Link(glued); err == nil || !strings.Contains(err.Error(), "server") {
		t.Errorf("Link(bad server) = %q, %v; want an error naming the server", l, err)
	}
}

// TestLinkExtras: what the proxypool= key of a link may and may not do.
func TestLinkExtras(t *testing.T) {
	x := func(json string) string { return b64url(json) }
	base := "trojan://pw@1.2.3.4:443?sni=t.example.com&proxypool="
	tests := []struct {
		name, link string
		check      func(upstream.Upstream) bool
		wantErr    string
	}{
		{"udp off", base + x(`{"udp":false}`), func(u upstream.Upstream) bool { return u.Options["udp"] == nil }, ""},
		{"converter's fingerprint removed", base + x(`{"client-fingerprint":null}`), func(u upstream.Upstream) bool { return u.Options["client-fingerprint"] == nil }, ""},
		{"a chosen fingerprint stays", "trojan://pw@1.2.3.4:443?fp=safari&proxypool=" + x(`{"client-fingerprint":null}`), func(u upstream.Upstream) bool { return u.Str("client-fingerprint") == "safari" }, ""},
		{"inert legacy key", base + x(`{"ws-path":"/x"}`), func(u upstream.Upstream) bool { return u.Str("ws-path") == "/x" }, ""},
		{"dial option refused", base + x(`{"dialer-proxy":"evil"}`), nil, `option "dialer-proxy" cannot be set`},
		{"interface refused", base + x(`{"interface-name":"eth1"}`), nil, `option "interface-name" cannot be set`},
		{"a field is not inert", base + x(`{"sni":"other.example.com"}`), nil, `option "sni" cannot be set`},
		{"udp must be a boolean", base + x(`{"udp":"yes"}`), nil, "udp must be true or false"},
		{"not base64url", base + "@@", nil, "not base64url"},
		{"not an object", base + x(`[1]`), nil, "not a JSON object"},
		{"given twice", base + x(`{}`) + "&proxypool=" + x(`{}`), nil, "given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseURI(tt.link)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseURI = %+v, %v; want error %q", u, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURI: %v", err)
			}
			if !tt.check(u) {
				t.Errorf("options %v", u.Options)
			}
		})
	}
}

// BenchmarkLink: Link over the share-link corpus (each call reads its link
// back, mihomo's adapter included), the cost per record of an export's uri.
func BenchmarkLink(b *testing.B) {
	rs, err := Parse(readTestdata(b, "shared-sample.txt"), Options{Format: "links"})
	if err != nil {
		b.Fatal(err)
	}
	var us []upstream.Upstream
	for _, r := range rs {
		if r.OK() {
			us = append(us, r.Upstream)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, _ = Link(us[i%len(us)])
	}
}
