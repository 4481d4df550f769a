package pool

import (
	"fmt"
	"testing"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TestGroupKeys proves groups.<name>.types, .sources, .asn,
// .exclude-asn, .class and .min-throughput (countries and
// exclude-countries: TestSelection): a group serves only the upstreams of
// its kinds, its sources, its exits' networks and its speed, and every
// one of them.
func TestGroupKeys(t *testing.T) {
	var recs []upstream.Record
	kinds := []upstream.Kind{upstream.SOCKS5, upstream.HTTP, upstream.SOCKS4}
	quals := []upstream.Quality{
		{ASN: 13335, Org: "Cloudflare, Inc.", Class: upstream.ClassDatacenter},
		{ASN: 7922, Org: "Comcast Cable Communications, LLC", Class: upstream.ClassResidential},
		{ASN: 31163, Org: "PJSC MegaFon", Class: upstream.ClassMobile},
		{ASN: 3320, Org: "Deutsche Telekom AG", Class: upstream.ClassResidential},
		{}, // the ASN database does not know the exit
	}
	speeds := []float64{0, 100 << 10, 2 << 20} // unknown, 100 KiB/s, 2 MiB/s
	throughput := map[string]float64{}
	for i := range 12 {
		r := rec(i, "US", fmt.Sprintf("198.51.100.%d", i))
		r.Type = kinds[i%3]
		r.Sources = []string{[]string{"free", "paid"}[i%2]}
		r.Quality = quals[i%5]
		throughput[r.ID] = speeds[i%3]
		recs = append(recs, r)
	}
	tests := []struct {
		name  string
		group Group
		want  func(upstream.Record) bool
	}{
		{"types", Group{Name: "g", Types: []string{"http", "socks4"}}, func(r upstream.Record) bool { return r.Type != upstream.SOCKS5 }},
		{"sources", Group{Name: "g", Sources: []string{"paid"}}, func(r upstream.Record) bool { return r.Sources[0] == "paid" }},
		{"types and sources", Group{Name: "g", Types: []string{"socks5"}, Sources: []string{"free"}},
			func(r upstream.Record) bool { return r.Type == upstream.SOCKS5 && r.Sources[0] == "free" }},
		{"asn", Group{Name: "g", ASNs: []uint32{13335, 31163}}, func(r upstream.Record) bool { return r.ASN == 13335 || r.ASN == 31163 }},
		{"exclude-asn", Group{Name: "g", ExcludeASNs: []uint32{13335}}, func(r upstream.Record) bool { return r.ASN != 13335 }},
		{"class", Group{Name: "g", Classes: []upstream.Class{upstream.ClassResidential}},
			func(r upstream.Record) bool { return r.Class == upstream.ClassResidential }},
		{"class and exclude-asn", Group{Name: "g", Classes: []upstream.Class{upstream.ClassResidential}, ExcludeASNs: []uint32{3320}},
			func(r upstream.Record) bool { return r.ASN == 7922 }},
		{"min-throughput", Group{Name: "g", MinThroughput: 1 << 20},
			func(r upstream.Record) bool { return throughput[r.ID] == 0 || throughput[r.ID] >= 1<<20 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := streamPoolThroughput(t, recs, throughput, Options{Groups: []Group{tt.group}})
			want := map[string]bool{}
			for _, r := range recs {
				if tt.want(r) {
					want[r.ID] = true
				}
			}
			got := map[string]bool{}
			for range 4 * len(recs) {
				c, err := p.Pick(&upstream.Selector{Group: "g"})
				if err != nil {
					t.Fatal(err)
				}
				if !want[c.ID] {
					t.Fatalf("group %+v served %s", tt.group, c.ID)
				}
				got[c.ID] = true
			}
			if len(got) != len(want) {
				t.Errorf("group %+v served %d of its %d upstreams", tt.group, len(got), len(want))
			}
		})
	}
}
