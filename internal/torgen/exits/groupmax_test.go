package exits

import (
	"fmt"
	"slices"
	"testing"
)

// TestAssignPortsGroupMax: a per-group cap limits that group only; the
// slot that held a port keeps it, then the highest-bandwidth ones get the
// rest; raising the cap by one adds exactly one instance of that group
// and moves no running one.
func TestAssignPortsGroupMax(t *testing.T) {
	var slots []Slot
	for _, g := range []string{"us", "de"} {
		for i := 0; i < 4; i++ {
			slots = append(slots, Slot{Key: fmt.Sprintf("single/%s/%d", g, i), Group: g, Bandwidth: int64(10 * i)})
		}
	}
	prev := map[string]Held{"single/us/0": {Port: 9065, Hashed: true}} // the lowest bandwidth, but running
	tests := []struct {
		name     string
		groupMax map[string]int
		max      int
		wantUS   []string
		wantDE   int
	}{
		{"no cap", nil, 0, []string{"single/us/0", "single/us/1", "single/us/2", "single/us/3"}, 4},
		{"us 1: the running one stays", map[string]int{"us": 1}, 0, []string{"single/us/0"}, 4},
		{"us 2: plus the best fresh one", map[string]int{"us": 2}, 0, []string{"single/us/0", "single/us/3"}, 4},
		{"zero is no cap", map[string]int{"us": 0, "de": 1}, 0, []string{"single/us/0", "single/us/1", "single/us/2", "single/us/3"}, 1},
		{"global cap still applies", map[string]int{"us": 2}, 4, []string{"single/us/0", "single/us/3"}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kept, dropped, err := AssignPorts(slices.Clone(slots), prev, Ports{Base: 9060, Max: 9069, MaxInstances: tc.max, Budget: tc.groupMax})
			if err != nil {
				t.Fatal(err)
			}
			var us []string
			de := 0
			for _, s := range kept {
				switch s.Group {
				case "us":
					us = append(us, s.Key)
					if s.Key == "single/us/0" && s.Port != 9065 {
						t.Errorf("running slot moved to port %d", s.Port)
					}
				case "de":
					de++
				}
			}
			slices.Sort(us)
			if !slices.Equal(us, tc.wantUS) || de != tc.wantDE {
				t.Errorf("kept us %v, de %d; want us %v, de %d", us, de, tc.wantUS, tc.wantDE)
			}
			if len(kept)+len(dropped) != len(slots) {
				t.Errorf("kept %d + dropped %d != %d slots", len(kept), len(dropped), len(slots))
			}
		})
	}
}
