package pool

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TestReconfigure is a config reload reaching a running pool: the strategy
// and the groups change for the next picks, with no store reload.
func TestReconfigure(t *testing.T) {
	var recs []upstream.Record
	for i := range 40 {
		recs = append(recs, rec(i, []string{"US", "DE"}[i%2], fmt.Sprintf("198.51.100.%d", i)))
	}
	p, _ := newPool(t, recs, Options{Groups: []Group{{Name: "us", Countries: []string{"US"}}}})
	distinct := func(pk interface {
		Pick(*upstream.Selector) (upstream.Choice, error)
	}, group string) int {
		seen := map[string]bool{}
		for range 200 {
			c, err := pk.Pick(&upstream.Selector{Group: group, Client: "127.0.0.1"})
			if err != nil {
				t.Fatal(err)
			}
			seen[c.ID] = true
		}
		return len(seen)
	}
	if n := distinct(p, ""); n < 40 {
		t.Fatalf("round-robin used %d of 40 upstreams", n)
	}
	// A reload's new strategy is a new picker over the same snapshots
	// (the gateway's SetRoute / SetPorts take it): nothing reloads.
	sticky, err := p.NewPicker(Sticky, Rotation{})
	if err != nil {
		t.Fatal(err)
	}
	if n := distinct(sticky, ""); n != 1 {
		t.Fatalf("a sticky picker: one client used %d upstreams, want 1", n)
	}
	if _, err := p.NewPicker("fastest", Rotation{}); err == nil {
		t.Fatal("NewPicker took an unknown strategy")
	}
	if n := distinct(sticky, ""); n != 1 {
		t.Fatalf("a refused NewPicker changed the sticky picker: %d upstreams", n)
	}
	if n := distinct(p, ""); n < 40 {
		t.Fatalf("the pool's own picker changed with a new one: %d of 40 upstreams", n)
	}

	if err := p.SetGroups([]Group{{Name: "de", Countries: []string{"DE"}}}); err != nil {
		t.Fatal(err)
	}
	c, err := p.Pick(&upstream.Selector{Group: "de"})
	if err != nil || c.Country != "DE" {
		t.Fatalf("the group added by SetGroups: %+v, %v", c, err)
	}
	if _, err := p.Pick(&upstream.Selector{Group: "us"}); !errors.Is(err, upstream.ErrUnknownGroup) {
		t.Fatalf("the group SetGroups removed: %v, want unknown group", err)
	}
	if err := p.SetGroups([]Group{{Name: "x"}, {Name: "x"}}); err == nil {
		t.Fatal("SetGroups took a group defined twice")
	}
}

// TestSetGroupsFilters: a reload's groups reach the running pool with
// every filter the config has (asn, exclude-asn, class, min-throughput,
// require-targets, weighted picks inside them), over the upstreams the
// pool already holds, and a pin ends when its group goes or its upstream
// leaves the group, but not otherwise.
func TestSetGroupsFilters(t *testing.T) {
	now := time.Now()
	quals := []upstream.Quality{
		{ASN: 13335, Class: upstream.ClassDatacenter},
		{ASN: 7922, Class: upstream.ClassResidential},
		{ASN: 31163, Class: upstream.ClassMobile},
	}
	var ups []upstream.Served
	for i := range 12 {
		r := rec(i, "US", fmt.Sprintf("198.51.100.%d", i))
		r.Quality = quals[i%3]
		s, err := r.Served()
		if err != nil {
			t.Fatal(err)
		}
		s.Throughput = []float64{0, 100 << 10, 2 << 20, 4 << 20}[i%4]
		if i%2 == 0 {
			s.Targets = []upstream.TargetPass{{Name: "shop", Until: now.Add(time.Hour)}}
		}
		ups = append(ups, s)
	}
	p, err := New(Options{Loader: &servedLoader{ups}, Groups: []Group{{Name: "g"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	weighted, err := p.NewPicker(Weighted, Rotation{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		group Group
		want  func(s upstream.Served) bool
	}{
		{"asn", Group{Name: "g", ASNs: []uint32{13335}}, func(s upstream.Served) bool { return s.ASN == 13335 }},
		{"exclude-asn", Group{Name: "g", ExcludeASNs: []uint32{13335}}, func(s upstream.Served) bool { return s.ASN != 13335 }},
		{"class", Group{Name: "g", Classes: []upstream.Class{upstream.ClassMobile}}, func(s upstream.Served) bool { return s.Class == upstream.ClassMobile }},
		{"min-throughput", Group{Name: "g", MinThroughput: 1 << 20}, func(s upstream.Served) bool { return s.Throughput == 0 || s.Throughput >= 1<<20 }},
		{"require-targets", Group{Name: "g", RequireTargets: []string{"shop"}}, func(s upstream.Served) bool { return len(s.Targets) > 0 }},
		{"back to every US exit", Group{Name: "g", Countries: []string{"US"}}, func(upstream.Served) bool { return true }},
	}
	for _, tt := range tests {
		if err := p.SetGroups([]Group{tt.group}); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		want := map[string]bool{}
		for _, s := range ups {
			if tt.want(s) {
				want[s.ID] = true
			}
		}
		for _, pk := range []interface {
			Pick(*upstream.Selector) (upstream.Choice, error)
		}{p, weighted} {
			got := map[string]bool{}
			for range 200 {
				c, err := pk.Pick(&upstream.Selector{Group: "g"})
				if err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				if !want[c.ID] {
					t.Fatalf("%s: group %+v served %s", tt.name, tt.group, c.ID)
				}
				got[c.ID] = true
			}
			if len(got) != len(want) {
				t.Errorf("%s: %d of the group's %d upstreams served", tt.name, len(got), len(want))
			}
		}
	}

	// Pins: mobile is pinned to ups[2]; the group is kept, then its
	// filter leaves ups[2] out, then the group goes.
	mobile := Group{Name: "mobile", Classes: []upstream.Class{upstream.ClassMobile}}
	steps := []struct {
		name   string
		groups []Group
		pinned string // Pinned("mobile") afterwards
	}{
		{"unchanged group", []Group{{Name: "g"}, mobile}, ups[2].ID},
		{"another group changed", []Group{{Name: "g", ASNs: []uint32{7922}}, mobile}, ups[2].ID},
		{"the group changed, the upstream still a member", []Group{{Name: "g"}, {Name: "mobile", Classes: mobile.Classes, MinThroughput: 1 << 20}}, ups[2].ID},
		{"the upstream left the group", []Group{{Name: "g"}, {Name: "mobile", ASNs: []uint32{7922}}}, ""},
	}
	if err := p.SetGroups([]Group{{Name: "g"}, mobile}); err != nil {
		t.Fatal(err)
	}
	for _, st := range steps {
		if err := p.Pin("mobile", ups[2].ID, time.Hour); err != nil {
			t.Fatalf("%s: pinning: %v", st.name, err)
		}
		if err := p.SetGroups(st.groups); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if id, _ := p.Pinned("mobile"); id != st.pinned {
			t.Fatalf("%s: mobile pinned to %q, want %q", st.name, id, st.pinned)
		}
		if st.pinned != "" {
			if c, err := p.Pick(&upstream.Selector{Group: "mobile"}); err != nil || c.ID != st.pinned {
				t.Fatalf("%s: the pinned group picked %s, %v; want %s", st.name, c.ID, err, st.pinned)
			}
		}
	}
	if err := p.SetGroups([]Group{{Name: "g"}, mobile}); err != nil {
		t.Fatal(err)
	}
	if err := p.Pin("mobile", ups[2].ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := p.Pin("", ups[1].ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := p.SetGroups([]Group{{Name: "g"}}); err != nil {
		t.Fatal(err)
	}
	if id, _ := p.Pinned("mobile"); id != "" {
		t.Fatalf("the group the reload removed is still pinned to %s", id)
	}
	if id, _ := p.Pinned(""); id != ups[1].ID {
		t.Fatalf("the whole pool's pin after a reload: %q, want %s kept", id, ups[1].ID)
	}
	if got := p.GroupNames(); !reflect.DeepEqual(got, []string{"g"}) {
		t.Fatalf("GroupNames after the reload: %q", got)
	}
}
