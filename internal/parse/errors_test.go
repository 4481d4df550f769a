package parse

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestLineErrors: a bad line fails alone, with an error naming the scheme
// and the cause.
func TestLineErrors(t *testing.T) {
	tests := []struct {
		name, line, want string
	}{
		{"vless no uuid", "vless://@example.com:443?security=tls#x", "vless: missing uuid"},
		{"vless no port", "vless://9794d18f-9280-3553-a7a5-a23da75aca76@example.com?type=ws", "vless: missing port"},
		{"vless bad flow", "vless://9794d18f-9280-3553-a7a5-a23da75aca76@example.com:443?flow=xtls-rprx-direct&security=tls", "vless: unsupported xtls flow type"},
		{"vless bad reality key", "vless://9794d18f-9280-3553-a7a5-a23da75aca76@example.com:443?security=reality&pbk=short&sni=a.com", "vless: invalid REALITY public key"},
		{"vmess not base64", "vmess://%%%%", "vmess: body is neither base64 nor uuid@host:port"},
		{"vmess truncated json", "vmess://eyJhZGQiOiIxLjIuMy40IiwicG9ydCI6", "vmess: base64 JSON is truncated or invalid"},
		{"vmess no id", "vmess://eyJhZGQiOiIxLjIuMy40IiwicG9ydCI6IjQ0MyJ9", "vmess: missing uuid"},
		{"ss unknown cipher", "ss://rc4-foo:secret@1.2.3.4:8388#x", "ss: unknown cipher 'rc4-foo'"},
		// shared-sample line 173: mihomo takes the UUID for base64 of cipher:password
		{"ss cipher of bytes", "ss://bfc17a1d-f1c2-465b-945c-2d8c011c730b@31.57.118.228:443?encryption=none&security=none&type=tcp", "unknown cipher (the userinfo did not decode to text: a vless or trojan link labelled ss?)"},
		{"ss uuid userinfo", "ss://9794d18f-9280-3553-a7a5-a23da75aca76@1.2.3.4:443?type=ws", "ss: userinfo is a UUID"},
		{"ss vmess body", "ss://eyJhZGQiOiIxLjIuMy40In0=", "ss: body is base64 JSON (a vmess link labelled ss?)"},
		{"ssr not base64", "ssr://%%%", "ssr: body is not base64"},
		{"ssr empty", "ssr://", "ssr: empty body"},
		{"trojan no password", "trojan://@1.2.3.4:443", "trojan: missing password"},
		{"trojan bad port", "trojan://pw@1.2.3.4:99999", "trojan: bad port"},
		{"tuic no server", "tuic://uuid:pw@:443", "tuic: missing server"},
		{"hysteria2 bad obfs", "hysteria2://pw@1.2.3.4:443?obfs=nope&obfs-password=x", "hysteria2: "},
		{"wireguard no key", "wireguard://@1.2.3.4:51820?publickey=x&address=10.0.0.2/32", "wireguard: missing private key"},
		{"wireguard no peer key", "wireguard://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=@1.2.3.4:51820", "wireguard: missing publickey"},
		{"wireguard bad reserved", "wireguard://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=@1.2.3.4:51820?publickey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D&address=10.0.0.2/32&reserved=1,2,999", "wireguard: bad reserved"},
		{"wireguard short key", "wireguard://AAAA@1.2.3.4:51820?publickey=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D&address=10.0.0.2/32", "wireguard: private-key is not 32 bytes"},
		{"socks5 no port", "socks5://1.2.3.4", "socks5: missing port"},
		{"http bad port", "http://1.2.3.4:0", "http: bad port 0"},
		{"https t.me link", "https://t.me/proxy?server=a&port=443", "https: missing port"},
		{"socks4 bad option", "socks4://1.2.3.4:99999", "socks4: bad port 99999"},
		{"unknown scheme", "ftp://1.2.3.4:21", `unsupported scheme "ftp"`},
		{"bare bad port", "1.2.3.4:70000", "http: bad port 70000"},
		{"not utf8", "\xff\xfe1.2.3.4:80", "not UTF-8"},
		{"line too long", "vless://" + strings.Repeat("a", MaxLineBytes), "line too long (65544 bytes, max 65536)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := "1.1.1.1:80\n" + tc.line + "\n2.2.2.2:8080\n"
			rs, err := Parse([]byte(in), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 3 {
				t.Fatalf("got %d results, want 3: %+v", len(rs), rs)
			}
			if !rs[0].OK() || !rs[2].OK() {
				t.Errorf("neighbouring lines hurt: %+v / %+v", rs[0], rs[2])
			}
			if rs[1].Line != 2 || rs[1].Err == nil || !strings.Contains(rs[1].Err.Error(), tc.want) {
				t.Errorf("line 2: got %+v, want error containing %q", rs[1], tc.want)
			}
		})
	}
}

func TestSkippedLines(t *testing.T) {
	in := "# comment\n\n   \n// profile-update-interval: 1\nProxy list updated at Fri, 24 Mar 23 07:58:01 +0300\nBTC: bc1q0hxnu4gmn5ru8j7g29tv2dq2ng5g0zhanl6t4t\nIP address:Port CountryCode-Anonymity\nProxy,IP,Port\nسرور جدید ... https://t.me/somechannel\n"
	rs, err := Parse([]byte(in), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if !r.Skipped {
			t.Errorf("line %d not skipped: %+v", r.Line, r)
		}
	}
	if len(rs) != 9 {
		t.Errorf("got %d results, want 9", len(rs))
	}
}

// TestGluedAndPrefixed: text before a link and links glued together.
func TestGluedAndPrefixed(t *testing.T) {
	in := "🇬🇧vless://9794d18f-9280-3553-a7a5-a23da75aca76@a.example.com:443?security=tls&type=ws#uk" +
		"socks://Og%3D%3D@185.93.89.191:26441#%40vmessir4nsocks://Og%3D%3D@185.93.89.191:14000#x\n"
	rs, err := Parse([]byte(in), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		if !r.OK() || r.Line != 1 {
			t.Fatalf("bad result %+v", r)
		}
		got = append(got, r.Upstream.String())
	}
	want := "vless a.example.com:443,socks5 185.93.89.191:26441,socks5 185.93.89.191:14000"
	if strings.Join(got, ",") != want {
		t.Errorf("got %v, want %s", got, want)
	}
}

// TestLimits: nothing panics or blows up; caps are named in errors.
func TestLimits(t *testing.T) {
	t.Run("input too large", func(t *testing.T) {
		_, err := Parse(make([]byte, 1001), Options{MaxBytes: 1000})
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1001 bytes, max 1000") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("too many records", func(t *testing.T) {
		_, err := Parse(bytes.Repeat([]byte("1.2.3.4:80\n"), 11), Options{MaxRecords: 10})
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "more than 10 records") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unknown format", func(t *testing.T) {
		if _, err := Parse([]byte("x"), Options{Format: "xml"}); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("8 MiB line", func(t *testing.T) {
		in := append(bytes.Repeat([]byte("A"), 8<<20), "\n1.2.3.4:80\n"...)
		rs, err := Parse(in, Options{Format: "links"})
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 2 || rs[0].Err == nil || !strings.Contains(rs[0].Err.Error(), "line too long") || !rs[1].OK() {
			t.Fatalf("got %+v", rs)
		}
	})
	t.Run("binary", func(t *testing.T) {
		in := make([]byte, 1<<20)
		for i := range in {
			in[i] = byte(i*7919 + i/13)
		}
		if _, err := Parse(in, Options{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("yaml alias bomb", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
		for i := 1; i < 12; i++ {
			b.WriteString("a" + itoa(i) + ": &a" + itoa(i) + " [")
			for j := 0; j < 10; j++ {
				if j > 0 {
					b.WriteString(", ")
				}
				b.WriteString("*a" + itoa(i-1))
			}
			b.WriteString("]\n")
		}
		b.WriteString("proxies:\n  - {name: x, type: socks5, server: 1.2.3.4, port: 1080, bomb: *a11}\n  - {name: y, type: socks5, server: 1.2.3.5, port: 1080}\n")
		start := time.Now()
		rs, err := Parse([]byte(b.String()), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("took %v", time.Since(start))
		}
		if len(rs) != 2 || rs[0].Err == nil || !rs[1].OK() {
			t.Fatalf("got %+v", rs)
		}
	})
	t.Run("yaml deep nesting", func(t *testing.T) {
		in := "proxies:\n  - {name: x, type: socks5, server: 1.2.3.4, port: 1080, deep: " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "}\n"
		rs, err := Parse([]byte(in), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 1 || rs[0].Err == nil {
			t.Fatalf("got %+v", rs)
		}
	})
	t.Run("json deep nesting", func(t *testing.T) {
		in := "[" + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "]"
		if _, err := Parse([]byte(in), Options{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("huge base64", func(t *testing.T) {
		// 16 MiB of base64: a link, then 12 MiB of comment lines
		line := []byte("# " + strings.Repeat("x", 1000) + "\n")
		body := append([]byte("trojan://pw@1.2.3.4:443#x\n"), bytes.Repeat(line, (12<<20)/len(line))...)
		enc := appendBase64(nil, body)
		rs, err := Parse(enc, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if c := count(rs); c.ok != 1 || c.skipped != (12<<20)/len(line) {
			t.Fatalf("got %+v", c)
		}
	})
}

func itoa(i int) string {
	return strings.TrimSpace(strings.Repeat(" ", 0) + string(rune('0'+i/10)) + string(rune('0'+i%10)))
}

func appendBase64(dst, src []byte) []byte {
	return base64StdAppend(dst, src)
}

// TestClashLineErrors: a Clash file no YAML parser takes whole is read line
// by line, and a bad entry's error is on its own line of the file, with no
// line number of yaml.v3's (which counts within the entry) in the text.
func TestClashLineErrors(t *testing.T) {
	in := "proxies:\n" +
		"  - {name: a, type: socks5, server: 1.2.3.4, port: 1080}\n" +
		"  - {name: \"a\"b\", type: socks5, server: 1.2.3.5, port: 1080}\n" +
		"  - {name: a\t, type: socks5, server: 1.2.3.5, port: 1080\n" +
		"  - {name: b, type: socks5, server: 1.2.3.6, port: 1080}\n"
	rs, err := Parse([]byte(in), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 || !rs[0].OK() || !rs[3].OK() {
		t.Fatalf("got %+v", rs)
	}
	for i, r := range rs[1:3] {
		if r.Line != i+3 || r.Err == nil || !strings.HasPrefix(r.Err.Error(), "clash: did not find expected") {
			t.Errorf("got line %d %v, want line %d: clash: did not find expected …", r.Line, r.Err, i+3)
		}
	}
}
