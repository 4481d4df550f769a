package pool

import (
	"fmt"
	"testing"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TestGroupKeys proves groups.<name>.types and .sources (countries and
// exclude-countries: TestSelection): a group serves only the upstreams of
// its kinds and its sources, and every one of them.
func TestGroupKeys(t *testing.T) {
	var recs []upstream.Record
	kinds := []upstream.Kind{upstream.SOCKS5, upstream.HTTP, upstream.SOCKS4}
	for i := range 12 {
		r := rec(i, "US", fmt.Sprintf("198.51.100.%d", i))
		r.Type = kinds[i%3]
		r.Sources = []string{[]string{"free", "paid"}[i%2]}
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newPool(t, recs, Options{Groups: []Group{tt.group}})
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
