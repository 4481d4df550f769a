package parse

import (
	"net/netip"
	"strings"
	"testing"
)

// TestHosts: a server that is neither an IP literal nor a DNS name fails
// its line with the reason, whichever reader it came through; good names
// and literals keep working, international names are stored as A-labels.
func TestHosts(t *testing.T) {
	tests := []struct {
		name, in, format string
		want             string // server of the one ok record, or ""
		err              string // error the one failed record contains
	}{
		{"json junk with colons", `[{"type":"socks5","server":"qso7wk0t9:cbj4mblqdv=c6dha=g:p&yy:pyx","port":1080}]`, "", "", `has ':' but is not an IPv6 address`},
		{"json dashes and colon", `[{"type":"socks5","server":"--.:","port":1080}]`, "", "", `bad host "--.:"`},
		{"json single letter", `[{"type":"socks5","server":"t","port":1080}]`, "", "", `bad host "t": a name without a dot`},
		{"json space", `[{"type":"http","server":"a b.example.com","port":80}]`, "", "", `holds ' '`},
		{"json cidr", `[{"type":"http","server":"1.2.3.4/24","port":80}]`, "", "", `holds '/'`},
		{"clash single label", "proxies:\n  - {name: x, type: trojan, server: host, port: 443, password: pw}\n", "", "", `trojan: bad host "host"`},
		{"link dashes", "hysteria2://pw@--.:443", "", "", `hysteria2: bad host "--": label "--" starts or ends with '-'`},
		{"link single label", "socks5://t:1080", "", "", `socks5: bad host "t"`},
		{"vmess uri single label", "vmess://9794d18f-9280-3553-a7a5-a23da75aca76@host:80", "", "", `vmess: bad host "host"`},
		{"octet over 255", "socks5://300.1.2.3:1080", "", "", `not an IPv4 address (each part must be 0-255)`},
		{"letter before ipv4", "socks5://v177.91.44.97:4153", "", "", `the last label is all digits`},
		{"numeric tld", "1.2.3.example.123:80", "", "", `the last label is all digits`},
		{"unspecified v4", "socks5://0.0.0.0:1080", "", "", `the unspecified address`},
		{"unspecified v6", "socks5://[::]:1080", "", "", `the unspecified address`},
		{"v6 zone", `[{"type":"socks5","server":"fe80::1%eth0","port":1080}]`, "", "", `IPv6 zone`},
		{"label too long", "socks5://" + strings.Repeat("a", 64) + ".example.com:1080", "", "", `is 64 octets long, max 63`},
		{"name too long", "socks5://" + strings.Repeat("abcdefghi.", 26) + "com:1080", "", "", `name is 263 octets long, max 253`},
		{"empty label", "socks5://a..example.com:1080", "", "", `empty label`},
		{"bad punycode", "socks5://xn--zz.example.com:1080", "", "", `not valid punycode`},
		{"bad unicode name", "socks5://a\u200db.example:1080", "", "", `not a valid international name`},
		{"ipv4", "socks5://1.2.3.4:1080", "", "1.2.3.4", ""},
		{"zero-padded ipv4", "socks5://001.002.003.004:1080", "", "1.2.3.4", ""},
		{"ipv6 in brackets", "socks5://[2001:db8::1]:1080", "", "2001:db8::1", ""},
		{"bare ipv6 in brackets", "[2001:db8::2]:8080", "links", "2001:db8::2", ""},
		{"loopback name", "socks5://localhost:1080", "", "localhost", ""},
		{"underscore label (CDN names)", "trojan://pw@cdn_1.example.com:443", "", "cdn_1.example.com", ""},
		{"digit-led labels", "trojan://pw@1e100.net:443", "", "1e100.net", ""},
		{"trailing dot", "socks5://Proxy.Example.COM.:1080", "", "proxy.example.com", ""},
		{"international name", "socks5://bücher.example:1080", "", "xn--bcher-kva.example", ""},
		{"a-label", "socks5://xn--bcher-kva.example:1080", "", "xn--bcher-kva.example", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Parse([]byte(tc.in), Options{Format: tc.format})
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 1 {
				t.Fatalf("got %d results, want 1: %+v", len(rs), rs)
			}
			r := rs[0]
			if tc.err != "" {
				if r.Err == nil || !strings.Contains(r.Err.Error(), tc.err) {
					t.Fatalf("got %+v, want an error containing %q", r, tc.err)
				}
				return
			}
			if !r.OK() || r.Upstream.Server != tc.want {
				t.Fatalf("got %+v, want server %q", r, tc.want)
			}
		})
	}
}

// TestInternationalNameIsOneUpstream: a name and its A-label are the same
// upstream (one ID), so a list that spells it both ways adds it once.
func TestInternationalNameIsOneUpstream(t *testing.T) {
	u1, err := ParseURI("socks5://bücher.example:1080")
	if err != nil {
		t.Fatal(err)
	}
	u2, err := ParseURI("socks5://xn--bcher-kva.example:1080")
	if err != nil {
		t.Fatal(err)
	}
	if u1.ID != u2.ID {
		t.Errorf("IDs differ: %s (%s) vs %s (%s)", u1.ID, u1.Server, u2.ID, u2.Server)
	}
}

// TestGluedEntries: two entries glued together are cut where exactly one
// cut gives a port and an IPv4 address, and fail with the reason
// otherwise, in links and in bare lists alike.
func TestGluedEntries(t *testing.T) {
	tests := []struct {
		name, line string
		want       []string // upstreams (String()) of the ok results
		err        string
	}{
		// 8080|005.6.7.8 is the only cut: 8|080005…, 80|80005…, 808|0005…
		// leave no IPv4, 80800 is no port
		{"link one cut", "socks5://1.2.3.4:8080005.6.7.8:3128", []string{"socks5 1.2.3.4:8080", "socks5 5.6.7.8:3128"}, ""},
		{"bare one cut", "1.2.3.4:8080005.6.7.8:3128", []string{"http 1.2.3.4:8080", "http 5.6.7.8:3128"}, ""},
		{"link credentials stay with the first", "socks5://u:p@1.2.3.4:8080005.6.7.8:3128#x", []string{"socks5 1.2.3.4:8080", "socks5 5.6.7.8:3128"}, ""},
		// 58351|0.0.0.0 would be a cut but 0.0.0.0 is no server
		{"zero address is no cut", "socks5://155.133.83.237:583510.0.0.0:80", []string{"socks5 155.133.83.237:5835", "socks5 10.0.0.0:80"}, ""},
		{"from the gfpcom list: three cuts", "socks5://1.1.1.98:80185.226.204.160:5713", nil,
			`socks5: "1.1.1.98:80185.226.204.160:5713" is two entries glued together, ambiguous: the first one's port could be 80, 801 or 8018`},
		{"bare two cuts", "103.196.53.209:4411045.7.177.183:39867", nil, `ambiguous: the first one's port could be 4411 or 44110`},
		{"no cut", "socks5://217.11.180.168:5678v177.91.44.97:4153", nil, `no cut of "5678v177.91.44.97" gives a port and an IPv4 address`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Parse([]byte(tc.line+"\n9.9.9.9:80\n"), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if last := rs[len(rs)-1]; !last.OK() || last.Line != 2 {
				t.Errorf("the next line was hurt: %+v", last)
			}
			rs = rs[:len(rs)-1]
			if tc.err != "" {
				if len(rs) != 1 || rs[0].Err == nil || rs[0].Line != 1 || !strings.Contains(rs[0].Err.Error(), tc.err) {
					t.Fatalf("got %+v, want one failed line 1 containing %q", rs, tc.err)
				}
				return
			}
			var got []string
			for _, r := range rs {
				if !r.OK() || r.Line != 1 {
					t.Fatalf("bad result %+v", r)
				}
				got = append(got, r.Upstream.String())
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("credentials", func(t *testing.T) {
		u, err := ParseURI("socks5://u:p@1.2.3.4:8080")
		if err != nil {
			t.Fatal(err)
		}
		rs, _ := Parse([]byte("socks5://u:p@1.2.3.4:8080005.6.7.8:3128"), Options{})
		if len(rs) != 2 || rs[0].Upstream.Str("password") != "p" || rs[1].Upstream.Str("password") != "" {
			t.Fatalf("got %+v", rs)
		}
		if rs[0].Upstream.ID != u.ID {
			t.Errorf("first entry %s, want the same upstream as %s", rs[0].Upstream.ID, u.ID)
		}
	})
	t.Run("ParseURI wants one", func(t *testing.T) {
		if _, err := ParseURI("socks5://1.2.3.4:8080005.6.7.8:3128"); err == nil || !strings.Contains(err.Error(), "2 entries glued together") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestVMessURIForm: the Xray form vmess://id@host:port takes a UUID as its
// id; anything else before '@' is a base64 JSON body with a channel's name
// glued on (shared-sample line 1177) or junk.
func TestVMessURIForm(t *testing.T) {
	sample := strings.Split(string(readTestdata(t, "shared-sample.txt")), "\n")
	tests := []struct {
		name, line, server, err string
	}{
		{"uuid", "vmess://a25881f3-967f-3265-bc7f-9e66857b016b@51.81.202.62:80/?type=ws&path=%2F", "51.81.202.62", ""},
		{"base64 json with @channel", sample[1176], "95.211.58.55", ""},
		{"word before @", "vmess://user@host.example.com:443", "", `vmess: "user" before '@' is neither a UUID nor base64 JSON`},
		{"base64 of text before @", "vmess://aGVsbG8@host.example.com:443", "", `neither a UUID nor base64 JSON`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ParseURI(tc.line)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %+v, %v; want error %q", u, err, tc.err)
				}
				return
			}
			if err != nil || u.Server != tc.server {
				t.Fatalf("got %+v, %v; want server %s", u, err, tc.server)
			}
		})
	}
}

// FuzzHost: checkHost and unglue never panic; what checkHost accepts is an
// IP literal or an ASCII name it accepts again unchanged, and what unglue
// cuts is two host:port entries the list reader accepts.
func FuzzHost(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "::1", "fe80::1%eth0", "bücher.example", "xn--bcher-kva.example", "a_b.example.com",
		"qso7wk0t9:cbj4mblqdv=c6dha=g:p&yy:pyx", "--.:", "t", "1.1.1.98:80185.226.204.160:5713", "1.2.3.4:8080005.6.7.8:3128", "v177.91.44.97"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		got, err := checkHost(h)
		if err == nil {
			if got == "" {
				t.Fatalf("checkHost(%q) accepted an empty host", h)
			}
			if _, perr := netip.ParseAddr(got); perr != nil {
				if !isASCII(got) || len(got) > maxNameLen {
					t.Fatalf("checkHost(%q) = %q: not an IP, ASCII name of at most %d octets", h, got, maxNameLen)
				}
				if again, err := checkHost(got); err != nil || again != got {
					t.Fatalf("checkHost(%q) = %q, but checkHost(%q) = %q, %v", h, got, got, again, err)
				}
			}
		} else if err.Error() == "" {
			t.Fatalf("checkHost(%q): empty error", h)
		}
		parts, err := unglue(h)
		if err != nil || parts == nil {
			return
		}
		if len(parts) != 2 {
			t.Fatalf("unglue(%q) = %q", h, parts)
		}
		for _, p := range parts {
			if _, _, _, _, ok := splitHostPort(p); !ok {
				t.Fatalf("unglue(%q) gave %q, which is not host:port", h, p)
			}
		}
	})
}
