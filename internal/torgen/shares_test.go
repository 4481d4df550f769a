package torgen

import (
	"context"
	"testing"

	"github.com/proxypool/proxypool/internal/torgen/exits"
)

func perGroup(p Plan) map[string]int {
	n := map[string]int{}
	for _, in := range p.Instances {
		n[in.Group]++
	}
	return n
}

// TestSharesOnRecordedConsensus: with the contract's us and nonus groups
// and the default tor.max-instances (64), both groups get instances in
// every mode, about as their exits' bandwidth splits; then a floor of 20
// on us (the budget torops derives from min-healthy) takes effect in one
// run on the same dir: us gets 20, nonus gives up the held ports over its
// new share, and nothing is short.
func TestSharesOnRecordedConsensus(t *testing.T) {
	ctx := context.Background()
	relays := recordedRelays(t)
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			cfg := recordedConfig(t.TempDir(), mode)
			p, err := Generate(ctx, cfg, relays, nil)
			if err != nil {
				t.Fatal(err)
			}
			n := perGroup(p)
			t.Logf("%s: us %d, nonus %d; shares %+v", mode, n["us"], n["nonus"], p.Shares)
			if n["us"] == 0 || n["nonus"] == 0 {
				t.Fatalf("us %d / nonus %d instances: a group got none", n["us"], n["nonus"])
			}
			if mode != exits.ModeCountry && n["us"]+n["nonus"] != 64 {
				t.Errorf("%d instances, want the cap's 64", n["us"]+n["nonus"])
			}
			for _, sh := range p.Shares {
				if sh.Short() != 0 {
					t.Errorf("%s short of its share: %+v", sh.Group, sh)
				}
			}
			if mode == exits.ModeCountry {
				return
			}
			before := portsByKey(p)
			cfg.Budget = map[string]int{"us": 20}
			q, err := Generate(ctx, cfg, relays, nil)
			if err != nil {
				t.Fatal(err)
			}
			m := perGroup(q)
			if m["us"] != 20 || m["nonus"] != 44 {
				t.Errorf("after the floor: us %d, nonus %d; want 20 and 44", m["us"], m["nonus"])
			}
			// A kept instance stays on its port; nonus only gives up its
			// lowest-bandwidth instances, it gains none.
			after := portsByKey(q)
			for key, port := range after {
				if old, ok := before[key]; ok && old != port {
					t.Errorf("%s moved %d → %d", key, old, port)
				}
			}
			givenUp := 0
			for _, in := range p.Instances {
				if _, ok := after[in.Key]; !ok && in.Group == "nonus" {
					givenUp++
				}
			}
			for _, in := range q.Instances {
				if _, ok := before[in.Key]; !ok && in.Group == "nonus" {
					t.Errorf("nonus gained %s while giving up instances", in.Key)
				}
			}
			if givenUp != n["nonus"]-44 {
				t.Errorf("nonus gave up %d instances, want the %d over its share", givenUp, n["nonus"]-44)
			}
		})
	}
}

// TestSharesStarvedGroupSaysSo: a cap smaller than the groups' budgets
// levels them and reports what each goes without.
func TestSharesStarvedGroupSaysSo(t *testing.T) {
	relays := recordedRelays(t)
	slots, _, err := exits.Slots(recordedConfig("", exits.ModeSingle).Groups, relays, exits.ModeSingle)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name            string
		budget          map[string]int
		max             int
		wantUS, wantNon exits.Share
	}{
		{"cap 2, no budget: one each", nil, 2,
			exits.Share{Group: "us", Want: 1, Got: 1}, exits.Share{Group: "nonus", Want: 1, Got: 1}},
		{"cap 1, no budget: the heavier group only", nil, 1,
			exits.Share{Group: "us", Want: 1, Got: 0}, exits.Share{Group: "nonus", Want: 1, Got: 1}},
		{"budgets over the cap are levelled", map[string]int{"us": 5, "nonus": 50}, 12,
			exits.Share{Group: "us", Reserve: 5, Want: 5, Got: 5}, exits.Share{Group: "nonus", Reserve: 50, Want: 50, Got: 7}},
		{"a budget takes from the open group", map[string]int{"us": 60}, 64,
			exits.Share{Group: "us", Reserve: 60, Want: 60, Got: 60}, exits.Share{Group: "nonus", Want: 4, Got: 4}},
		{"a budget over the cap leaves the open group nothing", map[string]int{"us": 70}, 64,
			exits.Share{Group: "us", Reserve: 70, Want: 70, Got: 64}, exits.Share{Group: "nonus", Want: 1, Got: 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]exits.Share{}
			for _, sh := range exits.Allot(slots, exits.Ports{Base: 9060, Max: 9999, MaxInstances: tc.max, Budget: tc.budget}) {
				sh.Slots = 0 // compared apart
				got[sh.Group] = sh
			}
			if got["us"] != tc.wantUS || got["nonus"] != tc.wantNon {
				t.Errorf("shares us %+v nonus %+v; want %+v, %+v", got["us"], got["nonus"], tc.wantUS, tc.wantNon)
			}
		})
	}
}
