package parse

import (
	"bytes"
	"testing"
)

// seedLines adds up to n lines of a testdata file as seeds.
func seedLines(f *testing.F, file string, every int) {
	data := readTestdata(f, file)
	for i, l := range bytes.Split(data, []byte("\n")) {
		if i%every == 0 {
			f.Add(l)
		}
	}
}

// checkResults asserts what every parse must give: line numbers from 1,
// ok records with an ID and a port in range, failures with a message.
func checkResults(t *testing.T, rs []Result) {
	for _, r := range rs {
		if r.Line < 1 {
			t.Fatalf("line %d < 1: %+v", r.Line, r)
		}
		switch {
		case r.Skipped:
		case r.Err != nil:
			if r.Err.Error() == "" {
				t.Fatalf("empty error at line %d", r.Line)
			}
		default:
			u := r.Upstream
			if u.ID == "" || u.Server == "" || u.Port < 1 || u.Port > 65535 || u.Type == "" {
				t.Fatalf("bad ok record %+v", u)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, file := range []string{"clarketm-spys-format.txt", "proxifly-country-AE.json", "subscription-ermaozi-clash.yaml", "roosterkid-socks5-flag-format.txt"} {
		f.Add(readTestdata(f, file))
	}
	f.Add([]byte("1.2.3.4:80\nsocks5://u:p@[::1]:1080\n# c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse(data, Options{MaxBytes: 1 << 20})
		if err != nil {
			return
		}
		checkResults(t, rs)
	})
}

func FuzzLinks(f *testing.F) {
	seedLines(f, "shared-sample.txt", 20)
	f.Fuzz(func(t *testing.T, line []byte) {
		rs, err := Parse(line, Options{Format: "links"})
		if err != nil {
			return
		}
		checkResults(t, rs)
		u, err := ParseURI(string(line))
		if err == nil && (u.ID == "" || u.Port < 1) {
			t.Fatalf("ParseURI ok without ID/port: %+v", u)
		}
	})
}

func FuzzClash(f *testing.F) {
	f.Add(readTestdata(f, "subscription-ermaozi-clash.yaml"))
	seedLines(f, "subscription-mfuu-clash-flowstyle.yaml", 40)
	f.Add([]byte("proxies:\n  - {name: a, type: ss, server: 1.2.3.4, port: 8388, cipher: aes-128-gcm, password: x}\n  - 1.2.3.4:80\n"))
	f.Add([]byte("x: &a [1,2]\nproxies:\n  - <<: {type: socks5}\n    server: h\n    port: 1\n    y: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse(data, Options{Format: "clash", MaxBytes: 1 << 20})
		if err != nil {
			return
		}
		checkResults(t, rs)
	})
}

func FuzzJSON(f *testing.F) {
	f.Add(readTestdata(f, "proxifly-country-AE.json"))
	f.Add(readTestdata(f, "monosans-geo.json")[:4000])
	f.Add([]byte(`[{"type":"socks5","server":"1.2.3.4","port":1080},"1.2.3.4:80",{"host":"h","port":"8080","protocol":"http"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse(data, Options{Format: "json", MaxBytes: 1 << 20})
		if err != nil {
			return
		}
		checkResults(t, rs)
	})
}

func FuzzBase64(f *testing.F) {
	f.Add(readTestdata(f, "subscription-mfuu-v2ray.b64")[:2000])
	f.Add(appendBase64(nil, []byte("trojan://pw@1.2.3.4:443#x\nvmess://e30=\n")))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse(data, Options{Format: "base64", MaxBytes: 1 << 20})
		if err != nil {
			return
		}
		checkResults(t, rs)
	})
}

// FuzzLink: for every upstream parse makes of any input, Link does not
// panic, and either fails with a message or gives a link that reads back
// as the same upstream.
func FuzzLink(f *testing.F) {
	seedLines(f, "shared-sample.txt", 10)
	seedLines(f, "subscription-mfuu-clash-flowstyle.yaml", 20)
	f.Add(readTestdata(f, "subscription-ermaozi-clash.yaml"))
	f.Add([]byte("trojan://pw@1.2.3.4:443?proxypool=eyJ1ZHAiOmZhbHNlfQ#x\nsocks5://u:p@[::1]:1080\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse(data, Options{MaxBytes: 1 << 20})
		if err != nil {
			return
		}
		for _, r := range rs {
			if !r.OK() {
				continue
			}
			l, err := Link(r.Upstream)
			if err != nil {
				if err.Error() == "" {
					t.Fatalf("empty error for %+v", r.Upstream)
				}
				continue
			}
			back, err := ParseURI(l)
			if err != nil || back.ID != r.Upstream.ID || back.Name != r.Upstream.Name {
				t.Fatalf("%s reads back as %+v, %v; want %+v", l, back, err, r.Upstream)
			}
		}
	})
}
