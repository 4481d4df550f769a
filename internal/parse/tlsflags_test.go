package parse

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/proxypool/proxypool/internal/upstream"
)

const tuuid = "9794d18f-9280-3553-a7a5-a23da75aca76"

// vmessJSON is a v2rayN share link: vmess:// + base64 of its JSON.
func vmessJSON(extra string) string { return vmessJSONNet("ws", "tls", extra) }

func vmessJSONNet(network, tls, extra string) string {
	body := `{"v":"2","ps":"🇩🇪 DE 14","add":"de1.example.net","port":"443","id":"` + tuuid +
		`","aid":"0","scy":"auto","net":"` + network + `","type":"none","host":"de1.example.net","path":"/vm","tls":"` + tls + `"` + extra + `}`
	return "vmess://" + base64.StdEncoding.EncodeToString([]byte(body))
}

// tlsCase is one link and the TLS options that must reach the dialer.
type tlsCase struct {
	name     string
	line     string
	insecure bool           // skip-cert-verify must be true (else absent or false)
	want     map[string]any // other options that must be present with these values
}

var tlsCases = []tlsCase{
	// vless (Xray share-link standard, as v2rayN exports it)
	{"vless tcp tls allowInsecure=1", "vless://" + tuuid + "@nl1.example.net:443?encryption=none&security=tls&sni=cdn.example.net&fp=chrome&alpn=h2%2Chttp%2F1.1&type=tcp&headerType=none&allowInsecure=1#NL-1", true,
		map[string]any{"servername": "cdn.example.net", "client-fingerprint": "chrome", "alpn": []any{"h2", "http/1.1"}}},
	{"vless ws tls insecure=1 peer", "vless://" + tuuid + "@104.21.3.4:8443?type=ws&path=%2Fws&host=a.example.org&security=tls&peer=a.example.org&insecure=1#x", true,
		map[string]any{"servername": "a.example.org", "network": "ws"}},
	{"vless grpc tls allow_insecure=1", "vless://" + tuuid + "@g.example.com:443?type=grpc&serviceName=grpc&security=tls&sni=g.example.com&allow_insecure=1&fp=firefox#g", true,
		map[string]any{"servername": "g.example.com", "client-fingerprint": "firefox", "network": "grpc"}},
	{"vless h2 tls allowInsecure=true", "vless://" + tuuid + "@h2.example.com:443?type=http&path=%2Fh2&host=h2.example.com&security=tls&sni=h2.example.com&allowInsecure=true#h2", true,
		map[string]any{"servername": "h2.example.com", "network": "h2"}},
	{"vless skip-cert-verify=true", "vless://" + tuuid + "@1.2.3.4:443?security=tls&type=tcp&skip-cert-verify=true", true, nil},
	{"vless &amp; allowInsecure=1", "vless://" + tuuid + "@1.2.3.4:443?type=ws&amp;security=tls&amp;allowInsecure=1&amp;sni=w.example.com#amp", true,
		map[string]any{"servername": "w.example.com"}},
	{"vless allowInsecure=0", "vless://" + tuuid + "@1.2.3.4:443?security=tls&type=tcp&allowInsecure=0&sni=a.example.com", false, nil},
	{"vless insecure=false", "vless://" + tuuid + "@1.2.3.4:443?security=tls&type=tcp&insecure=false", false, nil},
	{"vless no tls ignores the flag", "vless://" + tuuid + "@1.2.3.4:80?security=none&type=ws&allowInsecure=1", false, nil},
	{"vless sni wins over peer", "vless://" + tuuid + "@1.2.3.4:443?security=tls&sni=s.example.com&peer=p.example.com", false,
		map[string]any{"servername": "s.example.com"}},

	// vmess, Xray URI dialect
	{"vmess uri ws tls allowInsecure=1", "vmess://" + tuuid + "@v.example.net:443?type=ws&security=tls&path=%2Fvm&host=v.example.net&sni=v.example.net&allowInsecure=1#vm", true,
		map[string]any{"servername": "v.example.net", "network": "ws"}},
	{"vmess uri tcp tls insecure=1", "vmess://" + tuuid + "@v.example.net:443?type=tcp&security=tls&insecure=1", true, nil},
	{"vmess uri grpc tls peer", "vmess://" + tuuid + "@v.example.net:443?type=grpc&serviceName=x&security=tls&peer=p.example.net&allow_insecure=1", true,
		map[string]any{"servername": "p.example.net", "network": "grpc"}},

	// vmess, v2rayN JSON dialect: mihomo hard-codes skip-cert-verify false
	{"vmess json allowInsecure true", vmessJSON(`,"sni":"s.example.net","alpn":"h2,http/1.1","fp":"chrome","allowInsecure":true`), true,
		map[string]any{"servername": "s.example.net", "alpn": []any{"h2", "http/1.1"}, "client-fingerprint": "chrome"}},
	{"vmess json allowInsecure \"1\"", vmessJSON(`,"allowInsecure":"1"`), true, nil},
	{"vmess json allowInsecure 1", vmessJSON(`,"allowInsecure":1`), true, nil},
	{"vmess json verify_cert false", vmessJSON(`,"verify_cert":false`), true, nil},
	{"vmess json skip-cert-verify true", vmessJSON(`,"skip-cert-verify":true`), true, nil},
	{"vmess json insecure \"1\"", vmessJSON(`,"insecure":"1"`), true, nil},
	{"vmess json tcp tls", vmessJSONNet("tcp", "tls", `,"allowInsecure":true`), true, map[string]any{"network": "tcp"}},
	{"vmess json grpc tls", vmessJSONNet("grpc", "tls", `,"allowInsecure":"true","sni":"g.example.net"`), true, map[string]any{"network": "grpc", "servername": "g.example.net"}},
	{"vmess json no tls ignores the flag", vmessJSONNet("ws", "", `,"allowInsecure":true`), false, nil},
	{"vmess json allowInsecure false", vmessJSON(`,"allowInsecure":false`), false, nil},
	{"vmess json allowInsecure \"0\"", vmessJSON(`,"allowInsecure":"0"`), false, nil},
	{"vmess json verify_cert true", vmessJSON(`,"verify_cert":true`), false, nil},
	{"vmess json insecure \"0\"", vmessJSON(`,"insecure":"0"`), false, nil},
	{"vmess json peer as sni", vmessJSON(`,"peer":"p.example.net"`), false, map[string]any{"servername": "p.example.net"}},
	{"vmess shadowrocket tls allowInsecure", "vmess://" + base64.RawURLEncoding.EncodeToString([]byte("auto:"+tuuid+"@sr.example.com:443")) + "?remarks=sr&obfs=websocket&path=/ws&obfsParam=sr.example.com&tls=1&peer=sr.example.com&allowInsecure=1", true,
		map[string]any{"servername": "sr.example.com"}},

	// trojan: mihomo reads allowInsecure only
	{"trojan allowInsecure=1", "trojan://pw@t.example.com:443?security=tls&sni=t.example.com&type=tcp&allowInsecure=1#t", true, map[string]any{"sni": "t.example.com"}},
	{"trojan insecure=1", "trojan://pw@t.example.com:443?security=tls&type=tcp&insecure=1", true, nil},
	{"trojan allow_insecure=1 peer", "trojan://pw@1.2.3.4:443?allow_insecure=1&peer=p.example.com", true, map[string]any{"sni": "p.example.com"}},
	{"trojan ws tls allowInsecure=true", "trojan://pw@t.example.com:443?type=ws&path=%2Ftr&security=tls&sni=t.example.com&allowInsecure=true", true, map[string]any{"network": "ws"}},
	{"trojan allowInsecure=0", "trojan://pw@t.example.com:443?allowInsecure=0&sni=t.example.com", false, nil},

	// hysteria v1: mihomo reads insecure and peer only
	{"hysteria insecure=1 peer", "hysteria://h.example.com:443?protocol=udp&auth=pw&peer=p.example.com&insecure=1&upmbps=10&downmbps=50&alpn=h3", true,
		map[string]any{"sni": "p.example.com", "alpn": []any{"h3"}}},
	{"hysteria sni allowInsecure=1", "hysteria://h.example.com:443?protocol=udp&auth=pw&sni=s.example.com&allowInsecure=1&upmbps=10&downmbps=50", true,
		map[string]any{"sni": "s.example.com"}},

	// hysteria2 / hy2: mihomo reads insecure and sni only
	{"hysteria2 insecure=1", "hysteria2://pw@h2.example.com:443?insecure=1&sni=h2.example.com#h", true, map[string]any{"sni": "h2.example.com"}},
	{"hysteria2 allowInsecure=1 peer", "hysteria2://pw@1.2.3.4:443?allowInsecure=1&peer=p.example.com&alpn=h3", true, map[string]any{"sni": "p.example.com", "alpn": []any{"h3"}}},
	{"hy2 allow_insecure=1", "hy2://pw@1.2.3.4:443/?allow_insecure=1&sni=s.example.com&obfs=salamander&obfs-password=x", true, nil},
	{"hy2 insecure=0", "hy2://pw@1.2.3.4:443/?insecure=0&sni=s.example.com", false, nil},

	// tuic v5: mihomo reads no insecure key at all
	{"tuic allow_insecure=1", "tuic://" + tuuid + ":pw@tu.example.com:443/?congestion_control=bbr&udp_relay_mode=native&alpn=h3&sni=tu.example.com&allow_insecure=1#tu", true,
		map[string]any{"sni": "tu.example.com", "alpn": []any{"h3"}}},
	{"tuic allowInsecure=1", "tuic://" + tuuid + ":pw@1.2.3.4:443?congestion_control=bbr&allowInsecure=1", true, nil},
	{"tuic insecure=1 peer", "tuic://" + tuuid + ":pw@1.2.3.4:443?insecure=1&peer=p.example.com", true, map[string]any{"sni": "p.example.com"}},
	{"tuic allow_insecure=0", "tuic://" + tuuid + ":pw@1.2.3.4:443?allow_insecure=0", false, nil},

	// anytls: mihomo reads insecure only as "1", drops alpn and fp
	{"anytls insecure=1", "anytls://pw@a.example.com:443?security=tls&sni=a.example.com&insecure=1#a", true, map[string]any{"sni": "a.example.com"}},
	{"anytls insecure=true alpn fp", "anytls://pw@a.example.com:443?insecure=true&alpn=h2&fp=chrome", true, map[string]any{"alpn": []any{"h2"}, "client-fingerprint": "chrome"}},
	{"anytls allowInsecure=1", "anytls://pw@a.example.com:443?security=tls&allowInsecure=1", true, nil},
	{"anytls insecure=0", "anytls://pw@a.example.com:443?insecure=0", false, nil},

	// https proxy and socks5 over TLS: our own parsers
	{"https allowInsecure=1 sni", "https://dd247fc262:80c9752a41@nat-hk.example.cloud:20443?allowInsecure=1&sni=s.example.cloud", true, map[string]any{"sni": "s.example.cloud", "tls": true}},
	{"https insecure=1", "https://1.2.3.4:8443?insecure=1", true, nil},
	{"https skip-cert-verify=true", "https://u:p@1.2.3.4:8443?skip-cert-verify=true#h", true, nil},
	{"https no flag", "https://dd247fc262:80c9752a41@nat-hk.example.cloud:20443", false, map[string]any{"tls": true}},
	{"https insecure=0", "https://1.2.3.4:8443?insecure=0", false, nil},
	{"http ignores the flag", "http://1.2.3.4:8080?allowInsecure=1", false, nil},
	{"socks5+tls allowInsecure=1", "socks5+tls://u:p@s.example.com:1443?allowInsecure=1", true, map[string]any{"tls": true}},
	{"socks5+tls no flag", "socks5+tls://s.example.com:1443", false, map[string]any{"tls": true}},
	{"socks5 ignores the flag", "socks5://1.2.3.4:1080?allowInsecure=1", false, nil},
}

// ssPluginCases: ss with v2ray-plugin keeps its TLS flags in plugin-opts.
var ssPluginCases = []struct {
	name          string
	line          string
	tls, insecure bool
}{
	{"v2ray-plugin tls skip-cert-verify", "ss://" + base64.RawURLEncoding.EncodeToString([]byte("aes-128-gcm:pw")) + "@p.example.com:443/?plugin=v2ray-plugin%3Bmode%3Dwebsocket%3Btls%3Bhost%3Dp.example.com%3Bpath%3D%2Fws%3Bskip-cert-verify%3Dtrue#p", true, true},
	{"v2ray-plugin tls allowInsecure on the link", "ss://" + base64.RawURLEncoding.EncodeToString([]byte("aes-128-gcm:pw")) + "@p.example.com:443/?plugin=v2ray-plugin%3Bmode%3Dwebsocket%3Btls%3Bhost%3Dp.example.com&allowInsecure=1", true, true},
	{"v2ray-plugin tls only", "ss://YWVzLTI1Ni1nY206ODIzZTEzNWVkMTAz@137.220.191.40:636?plugin=v2ray-plugin%3Bmode%3Dwebsocket%3Bmux%3D8%3Bpath%3D%2Fdchlbvrbbotc%3Bhost%3Djp7v1.example.com%3Btls# By", true, false},
	{"v2ray-plugin host named tls is not tls", "ss://" + base64.RawURLEncoding.EncodeToString([]byte("aes-128-gcm:pw")) + "@p.example.com:80/?plugin=v2ray-plugin%3Bmode%3Dwebsocket%3Bhost%3Dtls.example.com", false, false},
	{"v2ray-plugin no tls ignores the flag", "ss://" + base64.RawURLEncoding.EncodeToString([]byte("aes-128-gcm:pw")) + "@p.example.com:80/?plugin=v2ray-plugin%3Bmode%3Dwebsocket%3Bskip-cert-verify%3Dtrue", false, false},
}

// optsAtDial returns the options the dialer builds its adapter from: the
// stored JSON decoded the way the gateway's snapshot decodes it.
func optsAtDial(t *testing.T, u upstream.Upstream) map[string]any {
	t.Helper()
	b, err := json.Marshal(u.Options)
	if err != nil {
		t.Fatal(err)
	}
	m, err := upstream.DecodeOptions(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func checkTLSOpts(t *testing.T, opts map[string]any, tc tlsCase) {
	t.Helper()
	got, _ := opts["skip-cert-verify"].(bool)
	if got != tc.insecure {
		t.Errorf("skip-cert-verify = %v (%#v), want %v; options %v", got, opts["skip-cert-verify"], tc.insecure, opts)
	}
	for k, want := range tc.want {
		wj, _ := json.Marshal(want)
		gj, _ := json.Marshal(opts[k])
		if string(wj) != string(gj) {
			t.Errorf("%s = %s, want %s", k, gj, wj)
		}
	}
}

// TestInsecureFlags: each link's TLS keys reach the dialer's options.
func TestInsecureFlags(t *testing.T) {
	for _, tc := range tlsCases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ParseURI(tc.line)
			if err != nil {
				t.Fatalf("ParseURI: %v", err)
			}
			checkTLSOpts(t, optsAtDial(t, u), tc)
		})
	}
}

// TestInsecureFlagsSubscription: the same links in a base64 subscription
// (v2rayN's format) give the same options.
func TestInsecureFlagsSubscription(t *testing.T) {
	var body strings.Builder
	for _, tc := range tlsCases {
		body.WriteString(tc.line + "\n")
	}
	rs, err := Parse([]byte(base64.StdEncoding.EncodeToString([]byte(body.String()))), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != len(tlsCases) {
		t.Fatalf("%d results, want %d", len(rs), len(tlsCases))
	}
	for i, tc := range tlsCases {
		t.Run(tc.name, func(t *testing.T) {
			if !rs[i].OK() {
				t.Fatalf("line %d: %v", rs[i].Line, rs[i].Err)
			}
			checkTLSOpts(t, optsAtDial(t, rs[i].Upstream), tc)
		})
	}
}

func TestInsecureFlagsSSPlugin(t *testing.T) {
	for _, tc := range ssPluginCases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ParseURI(tc.line)
			if err != nil {
				t.Fatalf("ParseURI: %v", err)
			}
			opts := optsAtDial(t, u)
			po, _ := opts["plugin-opts"].(map[string]any)
			if opts["plugin"] != "v2ray-plugin" || po == nil {
				t.Fatalf("plugin %v, opts %v", opts["plugin"], po)
			}
			tls, _ := po["tls"].(bool)
			insecure, _ := po["skip-cert-verify"].(bool)
			if tls != tc.tls || insecure != tc.insecure {
				t.Errorf("plugin-opts tls=%v skip-cert-verify=%v, want %v/%v (%v)", tls, insecure, tc.tls, tc.insecure, po)
			}
		})
	}
}

// TestInsecureFlagsClash: Clash/mihomo YAML and JSON mappings keep
// skip-cert-verify as written (true, "true", false).
func TestInsecureFlagsClash(t *testing.T) {
	yml := `proxies:
  - {name: a, type: vless, server: v.example.com, port: 443, uuid: ` + tuuid + `, tls: true, servername: v.example.com, skip-cert-verify: true, network: ws, ws-opts: {path: /ws}}
  - {name: b, type: trojan, server: t.example.com, port: 443, password: pw, sni: t.example.com, skip-cert-verify: false}
  - name: c
    type: tuic
    server: tu.example.com
    port: 443
    uuid: ` + tuuid + `
    password: pw
    alpn: [h3]
    skip-cert-verify: true
  - {name: d, type: http, server: h.example.com, port: 8443, tls: true, skip-cert-verify: true, sni: h.example.com}
  - "trojan://pw@t.example.com:443?insecure=1"
`
	rs, err := Parse([]byte(yml), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, false, true, true, true}
	if len(rs) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(rs), len(want), rs)
	}
	for i, r := range rs {
		if !r.OK() {
			t.Fatalf("entry %d: %v", i, r.Err)
		}
		got, _ := optsAtDial(t, r.Upstream)["skip-cert-verify"].(bool)
		if got != want[i] {
			t.Errorf("entry %d (%s): skip-cert-verify %v, want %v", i, r.Upstream.Type, got, want[i])
		}
	}
	js := `[{"type":"vmess","server":"v.example.com","port":443,"uuid":"` + tuuid + `","alterId":0,"cipher":"auto","tls":true,"skip-cert-verify":true},"` + tlsCases[0].line + `"]`
	rs, err = Parse([]byte(js), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if !r.OK() {
			t.Fatalf("json entry %d: %v", i, r.Err)
		}
		if got, _ := optsAtDial(t, r.Upstream)["skip-cert-verify"].(bool); !got {
			t.Errorf("json entry %d: skip-cert-verify lost: %v", i, r.Upstream.Options)
		}
	}
}
