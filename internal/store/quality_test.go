package store

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TestQualityRoundTrip: the exit quality a check found reaches every read
// the daemon, proxypoolctl and the gateway use, a passive result leaves
// it alone, a change of it reloads gateways, and a database from before
// the columns (schema 10) migrates with none.
func TestQualityRoundTrip(t *testing.T) {
	id := up(1).ID
	s, path := openWith(t, up(1))
	submit(t, s, ok(id, t0, "1.1.1.1", "US"))
	s = asOlderBuild(t, s, path, 10, "")
	ctx := context.Background()
	if got, err := s.Get(ctx, id); err != nil || got.Quality != (upstream.Quality{}) {
		t.Fatalf("migrated from 10: %+v %v, want no quality", got.Quality, err)
	}

	want := upstream.Quality{ASN: 13335, Org: "Cloudflare, Inc.", Class: upstream.ClassDatacenter, IPv6: true}
	r := ok(id, t0.Add(time.Second), "1.1.1.1", "US")
	r.Quality = want
	submit(t, s, r)
	v1 := version(t, s)
	passive := ok(id, t0.Add(2*time.Second), "1.1.1.1", "US")
	passive.Passive = true // learns nothing of the exit: must not clear it
	submit(t, s, passive)
	everyReadHas(t, s, id, want, func(r *upstream.Record) upstream.Quality { return r.Quality },
		func(r *upstream.Served) upstream.Quality { return r.Quality })

	r = ok(id, t0.Add(3*time.Second), "1.1.1.1", "US")
	r.Quality = upstream.Quality{ASN: 7922, Org: "Comcast Cable Communications, LLC", Class: upstream.ClassResidential}
	submit(t, s, r)
	if v2 := version(t, s); v2 == v1 {
		t.Errorf("version stayed %d when the exit's class changed: gateways would serve the old class", v1)
	}
	if got, _ := s.Get(ctx, id); got.Quality != r.Quality {
		t.Errorf("after the second check: %+v, want %+v", got.Quality, r.Quality)
	}
}

// everyReadHas checks that what a check found of the one upstream id
// (of it: from a record, served: from the gateway's stream) is want in
// every read the daemon, proxypoolctl and the gateway use.
func everyReadHas[T comparable](t *testing.T, s *Store, id string, want T, of func(*upstream.Record) T, served func(*upstream.Served) T) {
	t.Helper()
	ctx := context.Background()
	if got, err := s.Get(ctx, id); err != nil || of(&got) != want {
		t.Errorf("Get: %v, %v; want %v", of(&got), err, want)
	}
	hs, err := s.Healthy(ctx)
	if err != nil || len(hs) != 1 || of(&hs[0]) != want {
		t.Errorf("Healthy: %+v, %v; want one record with %v", hs, err, want)
	}
	var gw []T
	if err := s.GatewayHealthy(ctx, func(_ int, r *upstream.Served) error { gw = append(gw, served(r)); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(gw) != 1 || gw[0] != want {
		t.Errorf("GatewayHealthy: %v, want [%v]", gw, want)
	}
}

// version is the store's pool version.
func version(t *testing.T, s *Store) uint64 {
	t.Helper()
	v, err := s.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestListByQuality: list's --asn and --class filters and a group's asn,
// exclude-asn and class select what the checks found.
func TestListByQuality(t *testing.T) {
	ctx := context.Background()
	s, _ := openWith(t, ups(1, 2, 3, 4)...)
	quals := []upstream.Quality{
		{ASN: 13335, Org: "Cloudflare, Inc.", Class: upstream.ClassDatacenter},
		{ASN: 7922, Org: "Comcast Cable Communications, LLC", Class: upstream.ClassResidential},
		{ASN: 31163, Org: "PJSC MegaFon", Class: upstream.ClassMobile},
		{}, // no ASN database answer
	}
	for i, q := range quals {
		r := ok(up(i+1).ID, t0, "1.1.1."+string(rune('1'+i)), "US")
		r.Quality = q
		submit(t, s, r)
	}
	listed := func(f Filter) []string {
		recs, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range recs {
			out = append(out, r.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    Filter
		want []int // up(n)
	}{
		{"asn", Filter{ASN: 7922}, []int{2}},
		{"class", Filter{Class: upstream.ClassMobile}, []int{3}},
		{"group asn", Filter{Members: &Members{Name: "g", ASNs: []uint32{13335, 31163}}}, []int{1, 3}},
		{"group exclude-asn", Filter{Members: &Members{Name: "g", ExcludeASNs: []uint32{13335}}}, []int{2, 3, 4}},
		{"group class", Filter{Members: &Members{Name: "g", Classes: []string{"residential", "mobile"}}}, []int{2, 3}},
	} {
		var want []string
		for _, n := range tc.want {
			want = append(want, up(n).ID)
		}
		got := listed(tc.f)
		if !sameSet(got, want) {
			t.Errorf("%s: %v, want %v", tc.name, got, want)
		}
	}
}

// TestCountsByClass: the metrics' per-class count is of servable
// upstreams, "" for those of unknown class.
func TestCountsByClass(t *testing.T) {
	ctx := context.Background()
	s, _ := openWith(t, ups(1, 2, 3, 4)...)
	for i, c := range []upstream.Class{upstream.ClassDatacenter, upstream.ClassDatacenter, upstream.ClassMobile, ""} {
		r := ok(up(i+1).ID, t0, "1.1.1.1", "US")
		r.Class = c
		submit(t, s, r)
	}
	submit(t, s, fail(up(3).ID, t0.Add(time.Second))) // failing: not servable
	c, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"datacenter": 2, "": 1}; !maps.Equal(c.ByClass, want) {
		t.Errorf("ByClass = %v, want %v", c.ByClass, want)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}
