package exits

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TestSpread: the ranges of grouped slots without an instance land on
// exactly one instance of their own group; a new instance takes ranges
// only from the others (none moves between old instances); single-mode
// slots and groups with no instance are left alone.
func TestSpread(t *testing.T) {
	var relays []upstream.Relay
	for i := 1; i <= 12; i++ {
		relays = append(relays, exit(fmt.Sprintf("%x", i), "US", fmt.Sprintf("10.%d.0.1", i), int64(i)))
	}
	relays = append(relays, exit("d", "DE", "10.1.0.9", 3), exit("e", "DE", "20.1.0.1", 3))
	groups := []Group{{Name: "us", Countries: []string{"US"}}, {Name: "de", Countries: []string{"DE"}}, {Name: "pin", Countries: []string{"US"}, Mode: ModeSingle}}
	slots, _, err := Slots(groups, relays, ModeGrouped)
	if err != nil {
		t.Fatal(err)
	}
	split := func(n int) (kept, dropped []Slot) {
		us := 0
		for _, s := range slots {
			switch {
			case s.Group == "us" && us < n:
				us++
				kept = append(kept, s)
			case s.Group == "pin" && len(kept) < n+1:
				kept = append(kept, s)
			default:
				dropped = append(dropped, s) // all of de, the rest of us and pin
			}
		}
		return kept, dropped
	}
	owner := func(out []Slot) map[string]string { // range → slot key
		m := map[string]string{}
		for _, s := range out {
			for _, n := range s.ExitNodes {
				if prev, ok := m[n]; ok {
					t.Errorf("%s in both %s and %s", n, prev, s.Key)
				}
				m[n] = s.Key
			}
		}
		return m
	}
	tests := []struct {
		name string
		kept int
	}{{"three instances", 3}, {"four instances", 4}, {"one instance", 1}}
	var before map[string]string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kept, dropped := split(tt.kept)
			out := Spread(kept, dropped)
			if len(out) != len(kept) {
				t.Fatalf("%d slots back, want %d", len(out), len(kept))
			}
			own := owner(out)
			var usBW int64
			for i, s := range out {
				if s.Key != kept[i].Key {
					t.Errorf("slot %d key %s, want %s", i, s.Key, kept[i].Key)
				}
				if s.Mode == ModeSingle && len(s.ExitNodes) != 1 {
					t.Errorf("single slot %s got ranges %v", s.Key, s.ExitNodes)
				}
				if s.Group == "us" {
					usBW += s.Bandwidth
					if !slices.Contains(s.ExitNodes, strings.TrimPrefix(s.Key, "grouped/us/")) {
						t.Errorf("%s lost its own range: %v", s.Key, s.ExitNodes)
					}
					if !slices.IsSortedFunc(s.ExitNodes, func(a, b string) int {
						if cidrLess(a, b) {
							return -1
						}
						return 1
					}) {
						t.Errorf("%s ranges not in address order: %v", s.Key, s.ExitNodes)
					}
					for _, r := range s.Relays {
						if r.Country != "US" {
							t.Errorf("%s carries the %s relay %s", s.Key, r.Country, r.Address)
						}
					}
				}
			}
			for i := 1; i <= 12; i++ {
				if k := own[fmt.Sprintf("10.%d.0.0/16", i)]; !strings.HasPrefix(k, "grouped/us/") {
					t.Errorf("US range 10.%d.0.0/16 served by %q", i, k)
				}
			}
			if usBW != 78+0 { // 1+…+12: every US exit's bandwidth, once
				t.Errorf("us bandwidth %d over its instances, want 78", usBW)
			}
			if k, ok := own["20.1.0.0/16"]; ok {
				t.Errorf("the de range without an instance of its group landed on %s", k)
			}
			if tt.kept == 4 {
				for r, k := range own {
					if old, ok := before[r]; ok && old != k && k != kept[3].Key {
						t.Errorf("adding %s moved %s from %s to %s", kept[3].Key, r, old, k)
					}
				}
			}
			before = own
		})
	}
}
