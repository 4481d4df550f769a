package parse

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/metacubex/mihomo/adapter"
	"github.com/metacubex/mihomo/common/convert"

	"github.com/proxypool/proxypool/internal/upstream"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type counts struct{ ok, failed, skipped int }

func count(rs []Result) counts {
	var c counts
	for _, r := range rs {
		switch {
		case r.Skipped:
			c.skipped++
		case r.Err != nil:
			c.failed++
		default:
			c.ok++
		}
	}
	return c
}

// mihomoReference is what mihomo's converter makes of one line on its own,
// when its adapter can be built from the result.
func mihomoReference(line string) (typ, server string, port int, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	ms, err := convert.ConvertsV2Ray([]byte(line))
	if err != nil || len(ms) == 0 {
		return "", "", 0, false
	}
	m := ms[0]
	p, err := adapter.ParseProxy(m)
	if err != nil {
		return "", "", 0, false
	}
	p.Close()
	typ, _ = m["type"].(string)
	server, _ = m["server"].(string)
	port, err = strconv.Atoi(strings.TrimSpace(toString(m["port"])))
	return typ, upstream.NormalizeHost(server), port, err == nil
}

func toString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case int:
		return strconv.Itoa(t)
	}
	return ""
}

func schemeOf(line string) string {
	if s, _, ok := strings.Cut(line, "://"); ok && s != "" && leadingRE.MatchString(line) {
		return strings.ToLower(s)
	}
	return "OTHER"
}

// hostRejects are the lines of shared-sample.txt that mihomo builds but
// whose server no resolver can find, with the reason checkHost gives:
// "masir_sefid" is a channel's name put where the host goes (its sni is
// masir-sefid.shop), a single label with no domain.
var hostRejects = map[int]string{
	1341: `bad host "masir_sefid": a name without a dot`,
	1480: `bad host "masir_sefid": a name without a dot`,
}

// TestSharedSampleAgainstMihomo: every line mihomo's converter accepts on
// its own (and whose adapter mihomo builds) is ok here too, with the same
// type, server and port, except hostRejects. Prints the ok-rate per scheme
// (go test -v).
func TestSharedSampleAgainstMihomo(t *testing.T) {
	silenceMihomo()
	data := readTestdata(t, "shared-sample.txt")
	rs, err := Parse(data, Options{Format: "links"})
	if err != nil {
		t.Fatal(err)
	}
	byLine := map[int][]Result{}
	for _, r := range rs {
		byLine[r.Line] = append(byLine[r.Line], r)
	}
	type row struct{ lines, mihomoOK, ours, oursFailed int }
	table := map[string]*row{}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 2085 {
		t.Fatalf("shared-sample has %d lines, SOURCES.md says 2085", len(lines))
	}
	for i, line := range lines {
		n := i + 1
		sch := schemeOf(line)
		rw := table[sch]
		if rw == nil {
			rw = &row{}
			table[sch] = rw
		}
		rw.lines++
		var anyOK bool
		for _, r := range byLine[n] {
			anyOK = anyOK || r.OK()
		}
		if anyOK {
			rw.ours++
		} else if len(byLine[n]) > 0 && !byLine[n][0].Skipped {
			rw.oursFailed++
		}
		typ, server, port, ok := mihomoReference(line)
		if !ok {
			continue
		}
		rw.mihomoOK++
		if why, ok := hostRejects[n]; ok {
			if len(byLine[n]) != 1 || byLine[n][0].Err == nil || !strings.Contains(byLine[n][0].Err.Error(), why) {
				t.Errorf("line %d: want it rejected for %q, got %+v", n, why, byLine[n])
			}
			continue
		}
		found := false
		for _, r := range byLine[n] {
			u := r.Upstream
			if r.OK() && string(u.Type) == typ && u.Server == server && u.Port == port {
				found = true
			}
		}
		if !found {
			t.Errorf("line %d: mihomo builds %s %s:%d, we give %+v\n%.200s", n, typ, server, port, byLine[n], line)
		}
	}
	var names []string
	for k := range table {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return table[names[i]].lines > table[names[j]].lines })
	var sum row
	t.Logf("%-10s %6s %10s %8s %8s %7s", "scheme", "lines", "mihomo-ok", "ours-ok", "failed", "ok-rate")
	for _, k := range names {
		r := table[k]
		sum.lines += r.lines
		sum.mihomoOK += r.mihomoOK
		sum.ours += r.ours
		sum.oursFailed += r.oursFailed
		t.Logf("%-10s %6d %10d %8d %8d %6.1f%%", k, r.lines, r.mihomoOK, r.ours, r.oursFailed, 100*float64(r.ours)/float64(r.lines))
	}
	t.Logf("%-10s %6d %10d %8d %8d %6.1f%%", "total", sum.lines, sum.mihomoOK, sum.ours, sum.oursFailed, 100*float64(sum.ours)/float64(sum.lines))
}

// TestCorpusCounts checks counts computed independently with grep/awk/
// base64 -d/python json (the commands are in the comments).
func TestCorpusCounts(t *testing.T) {
	tests := []struct {
		file   string
		format string
		want   counts
		detect string
		types  map[upstream.Kind]int
	}{
		// grep -cE '^[0-9.]+:[0-9]+$' → 1347 of 1347 lines
		{"databay-http-hostport.txt", "", counts{ok: 1347}, "links", map[upstream.Kind]int{upstream.HTTP: 1347}},
		// grep -cE '^[0-9.]+:[0-9]+ ' → 240; awk 'END{print NR}' → 248
		{"clarketm-spys-format.txt", "", counts{ok: 240, skipped: 8}, "links", nil},
		// grep -cE '^[0-9.]+:[0-9]+,' → 420, plus the header
		{"fyvri-https-advanced.csv", "https", counts{ok: 420, skipped: 1}, "links", map[upstream.Kind]int{upstream.HTTP: 420}},
		// grep -cE '^ +- [0-9.]+:[0-9]+$' → 240
		{"fyvri-socks5-classic.yaml", "socks5", counts{ok: 240}, "clash", map[upstream.Kind]int{upstream.SOCKS5: 240}},
		// grep -c '^socks5://' → 193 lines, not 193 upstreams:
		// 58 are two entries glued together (grep -cE
		// '^socks5://[0-9.]+:[0-9]+[0-9v][0-9.]*:[0-9]+$'), of which 12 cut
		// one way only into a port and a non-zero IPv4 (a python loop over
		// the cuts) → 24 ok; the other 46 fail as ambiguous or uncuttable.
		// Of the 135 single entries (grep -cE '^socks5://[^:]+:[0-9]+$') 12
		// have an octet over 255 (grep -cE '[./]0*(25[6-9]|2[6-9][0-9]|[3-9][0-9]{2})[.:]'
		// on those) and one is "v177.91.44.97": 122 ok, 13 failed.
		{"gfpcom-socks5-uri-zeropadded.txt", "", counts{ok: 146, failed: 59}, "links", map[upstream.Kind]int{upstream.SOCKS5: 146}},
		// grep -c '^http://' 197, '^socks4://' 46, '^socks5://' 52
		{"monosans-scheme-uri.txt", "", counts{ok: 295}, "links", map[upstream.Kind]int{upstream.HTTP: 197, upstream.SOCKS4: 46, upstream.SOCKS5: 52}},
		// grep -o '"protocol":"…"' | sort | uniq -c → http 191, socks4 55, socks5 49
		{"monosans-geo.json", "", counts{ok: 295}, "json", map[upstream.Kind]int{upstream.HTTP: 191, upstream.SOCKS4: 55, upstream.SOCKS5: 49}},
		// grep -c '"proxy"' → 5
		{"proxifly-country-AE.json", "", counts{ok: 5}, "json", map[upstream.Kind]int{upstream.HTTP: 5}},
		// grep -cE ' [0-9.]+:[0-9]+ [0-9]+ms' → 79; awk NR → 87
		{"roosterkid-socks5-flag-format.txt", "socks5", counts{ok: 79, skipped: 8}, "links", map[upstream.Kind]int{upstream.SOCKS5: 79}},
		// base64 -d | awk NR → 290 lines, all with "://", one link each
		{"subscription-mfuu-v2ray.b64", "", counts{ok: 290}, "base64", nil},
		// base64 -d: 501 lines, 500 with "://", 501 link starts (one line holds
		// two); 5 vless lines carry an encryption other than none
		// (grep -oE '[?&]encryption=[^&#]*' | grep -vcE '=(none)?$'),
		// which mihomo refuses; the other line is a "# …" header.
		{"subscription-mrt-project-sub1.b64", "", counts{ok: 496, failed: 5, skipped: 1}, "base64", nil},
		// awk over the proxies: section → 22 entries
		{"subscription-ermaozi-clash.yaml", "", counts{ok: 22}, "clash", nil},
		// python3 json.load → 216 proxies (trojan 144, vless 72)
		{"subscription-4n0nymou3-clash-jsonstyle.yaml", "", counts{ok: 216}, "clash", map[upstream.Kind]int{upstream.Trojan: 144, upstream.VLESS: 72}},
		// grep -c '^- {' → 290; 15 entries with broken quoting in name
		// (grep -cE 'name: "[^"]*"[^,]+"'), 14 with port: "NNN?"
		// (grep -cE 'port: "[0-9]+\?"'), disjoint.
		{"subscription-mfuu-clash-flowstyle.yaml", "", counts{ok: 261, failed: 29}, "clash", nil},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			data := readTestdata(t, tc.file)
			if got := Detect(data); got != tc.detect {
				t.Errorf("Detect = %q, want %q", got, tc.detect)
			}
			rs, err := Parse(data, Options{Format: tc.format})
			if err != nil {
				t.Fatal(err)
			}
			if got := count(rs); got != tc.want {
				t.Errorf("counts = %+v, want %+v", got, tc.want)
				for i, r := range rs {
					if r.Err != nil && i < 400 {
						t.Logf("line %d: %v", r.Line, r.Err)
					}
				}
			}
			if tc.types != nil {
				got := map[upstream.Kind]int{}
				for _, r := range rs {
					if r.OK() {
						got[r.Upstream.Type]++
					}
				}
				for k, v := range tc.types {
					if got[k] != v {
						t.Errorf("%s: %d, want %d (all: %v)", k, got[k], v, got)
					}
				}
			}
		})
	}
}

// TestHints: list hints survive (clarketm country+anonymity, roosterkid
// country, monosans/proxifly geolocation) and zero-padded IPv4 is
// canonical.
func TestHints(t *testing.T) {
	first := func(file, format string) Result {
		rs, err := Parse(readTestdata(t, file), Options{Format: format})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.OK() {
				return r
			}
		}
		t.Fatalf("%s: no ok record", file)
		return Result{}
	}
	tests := []struct {
		file, format, addr, country string
		anon                        upstream.Anonymity
		line                        int
	}{
		{"clarketm-spys-format.txt", "", "181.39.24.152:999", "EC", upstream.AnonTransparent, 7},
		{"roosterkid-socks5-flag-format.txt", "socks5", "103.131.8.27:5678", "PK", "", 9},
		{"monosans-geo.json", "", "144.31.222.106:7890", "RU", "", 1},
		{"proxifly-country-AE.json", "", "181.214.1.204:80", "AE", upstream.AnonElite, 2},
		{"gfpcom-socks5-uri-zeropadded.txt", "", "1.255.134.136:3128", "", "", 1},
		{"fyvri-socks5-classic.yaml", "socks5", "111.119.162.248:10900", "", "", 2},
	}
	for _, tc := range tests {
		r := first(tc.file, tc.format)
		if r.Upstream.Addr() != tc.addr || r.Country != tc.country || r.Anonymity != tc.anon || r.Line != tc.line {
			t.Errorf("%s: got line %d %s %q %q, want line %d %s %q %q", tc.file, r.Line, r.Upstream.Addr(), r.Country, r.Anonymity, tc.line, tc.addr, tc.country, tc.anon)
		}
	}
}

// TestUntypedListsUnderAuto: with no format given, a list's header or the
// name it came by types its bare host:port entries (roosterkid's "SOCKS5
// Proxy list", fyvri's socks5.yaml, databay's http.txt); a list that
// names nothing leaves them untyped, for the probe to find out.
func TestUntypedListsUnderAuto(t *testing.T) {
	tests := []struct {
		file, hint string
		kind       upstream.Kind
		untyped    bool
	}{
		{"roosterkid-socks5-flag-format.txt", "", upstream.SOCKS5, false},
		{"fyvri-socks5-classic.yaml", "https://raw.githubusercontent.com/fyvri/fresh-proxy-list/archive/storage/classic/socks5.yaml", upstream.SOCKS5, false},
		{"databay-http-hostport.txt", "file:///srv/lists/http.txt", upstream.HTTP, false},
		{"fyvri-https-advanced.csv", "https://raw.githubusercontent.com/fyvri/fresh-proxy-list/archive/storage/advanced/https.csv", upstream.HTTP, false},
		{"databay-http-hostport.txt", "https://example.org/all.txt", upstream.HTTP, true},
		{"clarketm-spys-format.txt", "https://raw.githubusercontent.com/clarketm/proxy-list/master/proxy-list.txt", upstream.HTTP, true},
	}
	for _, tc := range tests {
		t.Run(tc.file+" "+tc.hint, func(t *testing.T) {
			rs, err := Parse(readTestdata(t, tc.file), Options{Hint: tc.hint})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, r := range rs {
				if !r.OK() {
					continue
				}
				n++
				if r.Upstream.Type != tc.kind || r.Upstream.Untyped() != tc.untyped || r.Upstream.Options["tls"] == true {
					t.Fatalf("line %d: %s untyped %v, want %s untyped %v", r.Line, r.Upstream.Type, r.Upstream.Untyped(), tc.kind, tc.untyped)
				}
			}
			if n == 0 {
				t.Fatal("no upstream parsed")
			}
		})
	}
	// a declared format wins over every hint
	rs, err := Parse(readTestdata(t, "roosterkid-socks5-flag-format.txt"), Options{Format: "http", Hint: "socks4.txt"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.OK() && (r.Upstream.Type != upstream.HTTP || r.Upstream.Untyped()) {
			t.Fatalf("format http: line %d is %s untyped %v", r.Line, r.Upstream.Type, r.Upstream.Untyped())
		}
	}
}
