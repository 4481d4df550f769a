package parse

import (
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/proxypool/proxypool/internal/upstream"
)

// corpusFiles are the shared corpus files the parser's corpus tests read,
// with the format their source declares.
var corpusFiles = []struct{ file, format string }{
	{"shared-sample.txt", "links"},
	{"subscription-mfuu-v2ray.b64", ""},
	{"subscription-mrt-project-sub1.b64", ""},
	{"subscription-ermaozi-clash.yaml", ""},
	{"subscription-4n0nymou3-clash-jsonstyle.yaml", ""},
	{"subscription-mfuu-clash-flowstyle.yaml", ""},
	{"databay-http-hostport.txt", ""},
	{"clarketm-spys-format.txt", ""},
	{"fyvri-https-advanced.csv", "https"},
	{"fyvri-socks5-classic.yaml", "socks5"},
	{"gfpcom-socks5-uri-zeropadded.txt", ""},
	{"monosans-scheme-uri.txt", ""},
	{"monosans-geo.json", ""},
	{"proxifly-country-AE.json", ""},
	{"roosterkid-socks5-flag-format.txt", "socks5"},
}

// carryRE finds the first option an error names.
var carryRE = regexp.MustCompile(`cannot carry ([A-Za-z0-9._-]+)`)

// validHost is what a parsed record's server should be; records that are
// not (glued list entries the parser did not cut apart yet) must make Link
// fail on "server", and are kept out of the round-trip rate.
func validHost(s string) bool {
	return net.ParseIP(s) != nil || !strings.ContainsAny(s, ":/?#@ ")
}

// TestLinkCorpus: for every upstream parse makes of the corpus, Link either
// fails naming an option, or gives a link ParseURI reads back as the same
// upstream (ID and name). Every kind round-trips for at least 99 % of its
// records. The table per kind is logged (go test -v -run TestLinkCorpus).
func TestLinkCorpus(t *testing.T) {
	type row struct {
		n, ok, badHost, extras int
		why                    map[string]int
	}
	rows := map[upstream.Kind]*row{}
	for _, cf := range corpusFiles {
		rs, err := Parse(readTestdata(t, cf.file), Options{Format: cf.format})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if !r.OK() {
				continue
			}
			u := r.Upstream
			rw := rows[u.Type]
			if rw == nil {
				rw = &row{why: map[string]int{}}
				rows[u.Type] = rw
			}
			l, err := Link(u)
			if !validHost(u.Server) {
				rw.badHost++
				if err == nil || !strings.Contains(err.Error(), "server") {
					t.Errorf("%s:%d: server %q: Link = %q, %v; want an error naming the server", cf.file, r.Line, u.Server, l, err)
				}
				continue
			}
			rw.n++
			if err != nil {
				m := carryRE.FindStringSubmatch(err.Error())
				if m == nil {
					t.Errorf("%s:%d: %v: the error names no option", cf.file, r.Line, err)
					continue
				}
				rw.why[m[1]]++
				t.Logf("%s:%d: %v", cf.file, r.Line, err)
				continue
			}
			back, err := ParseURI(l)
			if err != nil || back.ID != u.ID || back.Name != u.Name || back.Type != u.Type {
				t.Errorf("%s:%d: %s reads back as %+v, %v; want %+v", cf.file, r.Line, l, back, err, u)
				continue
			}
			rw.ok++
			if x, _ := extrasOf(string(u.Type), l); x != "" {
				rw.extras++
			}
		}
	}
	var kinds []string
	for k := range rows {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	t.Logf("%-10s %7s %10s %6s %7s %9s  %s", "kind", "records", "round-trip", "rate", "extras", "bad host", "errors (option: records)")
	for _, k := range kinds {
		rw := rows[upstream.Kind(k)]
		var why []string
		for w, c := range rw.why {
			why = append(why, fmt.Sprintf("%s: %d", w, c))
		}
		sort.Strings(why)
		rate := 100 * float64(rw.ok) / float64(max(rw.n, 1))
		t.Logf("%-10s %7d %10d %5.1f%% %7d %9d  %s", k, rw.n, rw.ok, rate, rw.extras, rw.badHost, strings.Join(why, ", "))
		if rate < 99 {
			t.Errorf("%s: %d of %d records round-trip (%.1f%%), want >= 99%%", k, rw.ok, rw.n, rate)
		}
	}
	for _, k := range []upstream.Kind{upstream.VMess, upstream.VLESS, upstream.SS, upstream.SSR, upstream.Trojan, upstream.Hysteria, upstream.Hysteria2, upstream.TUIC, upstream.WireGuard, upstream.AnyTLS, upstream.HTTP, upstream.SOCKS4, upstream.SOCKS5} {
		if rows[k] == nil || rows[k].n == 0 {
			t.Errorf("%s: no corpus record (the table would not cover it)", k)
		}
	}
}
