package torgen

import (
	"context"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/proxypool/proxypool/internal/torgen/exits"
	"github.com/proxypool/proxypool/internal/torgen/torrc"
	"github.com/proxypool/proxypool/internal/upstream"
)

// writtenTorrc is what one generated file says about exits.
type writtenTorrc struct {
	exitNodes, exclude []string
	strict             bool
}

func readTorrc(t *testing.T, dir string, port int) writtenTorrc {
	t.Helper()
	b, err := os.ReadFile(torrc.Path(dir, port))
	if err != nil {
		t.Fatal(err)
	}
	var w writtenTorrc
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, " ")
		switch k {
		case "ExitNodes":
			w.exitNodes = strings.Split(v, ",")
		case "ExcludeExitNodes":
			w.exclude = strings.Split(v, ",")
		case "StrictNodes":
			w.strict = v == "1"
		}
	}
	return w
}

// TestGroupedOnRecordedConsensus: tor.mode grouped on the recorded
// consensus with `us: {tor-instances: 8}` and an open nonus group under the
// default cap. us runs exactly 8 instances, the cap bounds the rest; each
// torrc's ExitNodes are /16 ranges of its own group's exits, every range
// of a group is served by exactly one of its instances, and the countries
// outside the group are excluded, which matters in the /16s a US exit
// shares with another country's. Raising us to 9 keeps the 8 ports and
// moves ranges only to the new instance.
func TestGroupedOnRecordedConsensus(t *testing.T) {
	ctx := context.Background()
	relays := recordedRelays(t)
	dir := t.TempDir()
	cfg := recordedConfig(dir, exits.ModeGrouped)
	cfg.Budget = map[string]int{"us": 8}
	p, err := Generate(ctx, cfg, relays, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := perGroup(p)
	if n["us"] != 8 || n["nonus"] == 0 || n["us"]+n["nonus"] > 64 {
		t.Fatalf("instances: us %d, nonus %d; want us 8 and nonus within the cap of 64", n["us"], n["nonus"])
	}

	// What the recorded data holds: each group's /16s, and per /16 the
	// countries of every relay in it.
	groups := map[string]exits.Group{}
	for _, g := range cfg.Groups {
		groups[g.Name] = g
	}
	rangesOf := map[string]map[string]bool{}
	countriesIn := map[string]map[string]bool{}
	for _, r := range exits.UsableExits(relays) {
		_, cidr, err := net.ParseCIDR(r.Address + "/16")
		if err != nil {
			t.Fatal(err)
		}
		rg := cidr.String()
		if countriesIn[rg] == nil {
			countriesIn[rg] = map[string]bool{}
		}
		countriesIn[rg][strings.ToLower(r.Country)] = true
		for name, g := range groups {
			if g.Match(r) {
				if rangesOf[name] == nil {
					rangesOf[name] = map[string]bool{}
				}
				rangesOf[name][rg] = true
			}
		}
	}
	served := map[string]map[string]int{"us": {}, "nonus": {}}
	shared := 0
	for _, in := range p.Instances {
		w := readTorrc(t, dir, in.Port)
		if !w.strict {
			t.Errorf("torrc.%d: no StrictNodes 1", in.Port)
		}
		for _, rg := range w.exitNodes {
			served[in.Group][rg]++
			if !rangesOf[in.Group][rg] {
				t.Errorf("torrc.%d (%s): ExitNodes %s is no /16 of a %s exit", in.Port, in.Group, rg, in.Group)
			}
			for cc := range countriesIn[rg] {
				if groups[in.Group].Match(upstream.Relay{Country: cc}) {
					continue
				}
				if in.Group == "us" {
					shared++
				}
				if !slices.Contains(w.exclude, "{"+cc+"}") {
					t.Errorf("torrc.%d (%s): range %s holds a %s exit but ExcludeExitNodes %v lacks {%s}", in.Port, in.Group, rg, cc, w.exclude, cc)
				}
			}
		}
		if in.Group == "nonus" {
			for _, cc := range []string{"{ch}", "{ua}", "{us}"} {
				if !slices.Contains(w.exclude, cc) {
					t.Errorf("torrc.%d (nonus): ExcludeExitNodes %v lacks %s", in.Port, w.exclude, cc)
				}
			}
		}
	}
	for g, want := range rangesOf {
		if len(served[g]) != len(want) {
			t.Errorf("group %s: %d of its %d /16 ranges served", g, len(served[g]), len(want))
		}
		for rg, k := range served[g] {
			if k != 1 {
				t.Errorf("group %s: range %s in %d torrc files, want 1", g, rg, k)
			}
		}
	}
	if shared == 0 {
		t.Error("no US /16 shared with another country's exit: the exclusion is not exercised")
	}
	t.Logf("us: %d instances over %d /16s (%d of them shared with other countries' exits); nonus: %d over %d",
		n["us"], len(rangesOf["us"]), shared, n["nonus"], len(rangesOf["nonus"]))

	// One more US instance: the 8 keep their ports, ranges move only to it.
	ownerBefore := map[string]int{}
	for _, in := range p.Instances {
		for _, rg := range in.ExitNodes {
			ownerBefore[in.Group+" "+rg] = in.Port
		}
	}
	cfg.Budget["us"] = 9
	q, err := Generate(ctx, cfg, relays, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := portsByKey(p)
	added := 0
	for _, in := range q.Instances {
		old, had := before[in.Key]
		if in.Group != "us" {
			continue
		}
		if !had {
			added = in.Port
			continue
		}
		if old != in.Port {
			t.Errorf("%s moved %d → %d", in.Key, old, in.Port)
		}
	}
	if perGroup(q)["us"] != 9 || added == 0 {
		t.Fatalf("after raising us to 9: us %d instances, new port %d", perGroup(q)["us"], added)
	}
	moved := 0
	for _, in := range q.Instances {
		for _, rg := range in.ExitNodes {
			if old := ownerBefore[in.Group+" "+rg]; old != in.Port && in.Group == "us" {
				moved++
				if in.Port != added {
					t.Errorf("range %s moved from port %d to the old port %d", rg, old, in.Port)
				}
			}
		}
	}
	t.Logf("us 8 → 9: %d of %d ranges moved to the new port %d", moved, len(rangesOf["us"]), added)
}
