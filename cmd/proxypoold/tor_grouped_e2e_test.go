package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/tornet"
)

// TestTorGroupedE2E proves issue 18's grouped mode through the whole
// product: `proxypoold run` with tor.mode grouped, `us: {tor-instances: 2}`
// and an open nonus group on the private network, whose US exit1 shares
// 127.0.0.0/16 with the DE and NL exits (exit2 sits in 127.1.0.0/16). Each
// torrc names /16 ranges, and the countries outside its group are
// excluded; the gateway's us and nonus ports, and every instance sampled
// over isolated circuits, leave only through exits of their group, so the
// exclusion, not the range, keeps a US instance off DE and NL.
func TestTorGroupedE2E(t *testing.T) {
	n := tornet.StartT(t) // skips unless PROXYPOOL_TORNET=1 and tor is installed
	judge := fleet.StartJudgeT(t)
	exit := map[string]tornet.Exit{}
	for _, e := range n.Exits() {
		exit[e.Name] = e
	}
	w := writeTorWorld(t, n, judge, torWorld{mode: "grouped", groups: "us: {countries: [US], tor-instances: 2}\nnonus: {exclude-countries: [US, UA, CH]}",
		torGroups: "[us, nonus]", maxInstances: 4, pinned: true})
	dir, torrcDir, portAddr := w.dir, w.torrcDir, w.portAddr
	d := startDaemon(t, dir, w.cfgPath)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	// 1. us: two instances (tor-instances), nonus one (its only range).
	recs := waitTorHealthy(ctx, t, filepath.Join(dir, "proxypool.db"), 3, d.exited)
	healthyAfter := time.Since(d.started)
	allowed := map[string][]string{"us": {"exit1", "exit2"}, "nonus": {"exit3", "exit4"}}
	byGroup := map[string]int{}
	for _, r := range recs {
		byGroup[r.Group]++
		b, err := os.ReadFile(filepath.Join(torrcDir, fmt.Sprintf("torrc.%d", r.Port)))
		if err != nil {
			t.Fatal(err)
		}
		ranges, exclude := torrcList(string(b), "ExitNodes"), torrcList(string(b), "ExcludeExitNodes")
		// 2. The exits each instance's ranges take in: of its group, and
		// of others, which its exclusions must name.
		var own []string
		for name, e := range exit {
			if !inRanges(ranges, e.Address) {
				continue
			}
			if contains(allowed[r.Group], name) {
				own = append(own, name)
			} else if !contains(exclude, "{"+strings.ToLower(e.Country)+"}") {
				t.Errorf("%s: range of %s (%s) not excluded: ExitNodes %v ExcludeExitNodes %v", r.Name, name, e.Country, ranges, exclude)
			}
		}
		if len(own) == 0 {
			t.Fatalf("%s: ExitNodes %v take in no exit of group %s", r.Name, ranges, r.Group)
		}
		// 3. Isolated circuits straight through the instance: only those.
		seen := map[string]int{}
		for i := 0; i < 8; i++ {
			s, err := n.AskAs(ctx, fmt.Sprintf("127.0.0.1:%d", r.Port), fmt.Sprintf("g%d", i))
			if err != nil {
				t.Fatalf("%s: %v", r.Name, err)
			}
			seen[s.Exit]++
			if !contains(own, s.Exit) {
				t.Errorf("%s (ExitNodes %v, ExcludeExitNodes %v) left through %s (%s); want only %v", r.Name, ranges, exclude, s.Exit, exit[s.Exit].Country, own)
			}
		}
		t.Logf("%s: ExitNodes %v ExcludeExitNodes %v: %v", r.Name, ranges, exclude, seen)
	}
	if byGroup["us"] != 2 || byGroup["nonus"] != 1 {
		t.Errorf("instances: us %d, nonus %d; want 2 (tor-instances) and 1 (one range)", byGroup["us"], byGroup["nonus"])
	}

	// 4. The gateway's pinned ports: the group's exits only, both US ones
	// over the two us instances.
	for _, g := range []string{"us", "nonus"} {
		seen := map[string]int{}
		for i := 0; i < 12; i++ {
			s, err := throughSOCKS(ctx, portAddr[g], n.TargetAddr())
			if err != nil {
				t.Fatalf("port %s request %d: %v", g, i, err)
			}
			seen[s.Exit]++
		}
		for e := range seen {
			if !contains(allowed[g], e) {
				t.Errorf("port %s: a request left through %q (%s); want only %v", g, e, exit[e].Country, allowed[g])
			}
		}
		if g == "us" && len(seen) != 2 {
			t.Errorf("port us: exits %v; want both US exits (one per instance)", seen)
		}
		t.Logf("port %s over SOCKS5: %v", g, seen)
	}
	d.stop(t, 30*time.Second)
	t.Logf("figures: network bootstrap %v; grouped instances healthy %v after proxypoold started",
		n.Bootstrap.Round(100*time.Millisecond), healthyAfter.Round(100*time.Millisecond))
}

// torrcList is the comma-separated value of option key in a torrc.
func torrcList(torrc, key string) []string {
	for _, l := range strings.Split(torrc, "\n") {
		if v, ok := strings.CutPrefix(l, key+" "); ok {
			return strings.Split(v, ",")
		}
	}
	return nil
}

func inRanges(ranges []string, addr string) bool {
	for _, rg := range ranges {
		if _, cidr, err := net.ParseCIDR(rg); err == nil && cidr.Contains(net.ParseIP(addr)) {
			return true
		}
	}
	return false
}
