package gateway_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/upstream"
)

// TestExitQualityGroups: through the gateway, a group of class
// residential serves only residential exits, one excluding an ASN never
// leaves through it, and one asking for ASNs only through those; over
// SOCKS5 and HTTP alike.
func TestExitQualityGroups(t *testing.T) {
	quals := []upstream.Quality{
		{ASN: 13335, Org: "Cloudflare, Inc.", Class: upstream.ClassDatacenter},
		{ASN: 7922, Org: "Comcast Cable Communications, LLC", Class: upstream.ClassResidential},
		{ASN: 31163, Org: "PJSC MegaFon", Class: upstream.ClassMobile},
		{ASN: 3320, Org: "Deutsche Telekom AG", Class: upstream.ClassResidential},
		{}, // no ASN database answer
	}
	spec := fleet.Uniform(10, fleet.SOCKS5, fleet.Good)
	w := newWorld(t, worldOpts{
		spec: spec,
		pool: pool.Options{Groups: []pool.Group{
			{Name: "home", Classes: []upstream.Class{upstream.ClassResidential}},
			{Name: "nocf", ExcludeASNs: []uint32{13335}},
			{Name: "carriers", ASNs: []uint32{31163, 3320}},
		}},
		pinned: map[string]string{"home": "home", "nocf": "nocf", "carriers": "carriers"},
		status: func(m *fleet.Member, s *upstream.Status) { s.Quality = quals[m.Index%len(quals)] },
	})
	quality := func(ip string) upstream.Quality { return quals[w.fleet.ByExitIP(ip).Index%len(quals)] }
	for _, tt := range []struct {
		name, group string
		ok          func(upstream.Quality) bool
		members     int // distinct exits the group has
	}{
		{"class residential", "home", func(q upstream.Quality) bool { return q.Class == upstream.ClassResidential }, 4},
		{"exclude-asn", "nocf", func(q upstream.Quality) bool { return q.ASN != 13335 }, 8},
		{"asn", "carriers", func(q upstream.Quality) bool { return q.ASN == 31163 || q.ASN == 3320 }, 4},
	} {
		for _, scheme := range []string{"socks5", "http"} {
			t.Run(tt.name+"/"+scheme, func(t *testing.T) {
				c := client(scheme+"://"+w.pinned[tt.group], false)
				seen := map[string]bool{}
				for range 3 * tt.members {
					ip, err := get(c, w.judge)
					if err != nil {
						t.Fatal(err)
					}
					if q := quality(ip); !tt.ok(q) {
						t.Fatalf("left through %s (AS%d %q, %s)", ip, q.ASN, q.Org, q.Class)
					}
					seen[ip] = true
				}
				if len(seen) != tt.members {
					t.Errorf("served %d distinct exits, want all %d of the group", len(seen), tt.members)
				}
			})
		}
	}
}

// TestWeightedSharesByTier is the weighted strategy's benchmark through
// the gateway (make bench-weighted prints the shares): a fleet of three
// speed tiers (the members delay their handshake reply) and one flaky
// tier (as fast as the fastest, resetting connections half the time),
// the same requests sent through a weighted and a round-robin port in
// the same run. Weighted must give the fast tier more than the medium,
// the medium more than the slow, the steady fast tier more than the
// flaky one, and the fast tier more than round-robin does.
func TestWeightedSharesByTier(t *testing.T) {
	tiers := []struct {
		name    string
		latency time.Duration
		flaky   bool
	}{
		{"fast", 0, false}, {"medium", 40 * time.Millisecond, false},
		{"slow", 160 * time.Millisecond, false}, {"flaky", 0, true},
	}
	const perTier, requests, parallel = 3, 240, 8
	spec := fleet.Spec{}
	for _, tr := range tiers {
		for range perTier {
			spec.Members = append(spec.Members, fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Good, Latency: tr.latency})
		}
	}
	w := newWorld(t, worldOpts{
		spec: spec,
		// no ejection: it would hide the error rate the strategy weighs
		pool:       pool.Options{EjectAfter: 1 << 20},
		pinned:     map[string]string{"weighted": "", "rr": ""},
		strategies: map[string]string{"weighted": pool.Weighted, "rr": pool.RoundRobin},
		status: func(m *fleet.Member, s *upstream.Status) {
			s.LatencyMS = 5 + float64(tiers[m.Index/perTier].latency.Milliseconds()) // as the probe measured
		},
	})
	tierOf := func(ip string) string { return tiers[w.fleet.ByExitIP(ip).Index/perTier].name }
	// The flaky members reset every other 25 ms.
	ctx, cancel := context.WithCancel(context.Background())
	var flipper sync.WaitGroup
	flipper.Add(1)
	go func() {
		defer flipper.Done()
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			b := fleet.Good
			if n%2 == 0 {
				b = fleet.Reset
			}
			for _, m := range w.fleet.Members()[3*perTier:] {
				if err := m.SetBehavior(b); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); flipper.Wait() })

	shares := map[string]map[string]float64{}
	for _, port := range []string{"weighted", "rr"} {
		c := client("socks5://"+w.pinned[port], false)
		count := map[string]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		jobs := make(chan struct{})
		for range parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range jobs {
					ip, err := get(c, w.judge)
					if err != nil {
						continue // every try failed: no tier served it
					}
					mu.Lock()
					count[tierOf(ip)]++
					mu.Unlock()
				}
			}()
		}
		for range requests {
			jobs <- struct{}{}
		}
		close(jobs)
		wg.Wait()
		shares[port] = map[string]float64{}
		for name, n := range count {
			shares[port][name] = float64(n) / requests
		}
	}
	for _, tr := range tiers {
		t.Logf("%-7s weighted %5.1f%%  round-robin %5.1f%%", tr.name, 100*shares["weighted"][tr.name], 100*shares["rr"][tr.name])
	}
	wt, rr := shares["weighted"], shares["rr"]
	for _, pair := range [][2]string{{"fast", "medium"}, {"medium", "slow"}, {"fast", "flaky"}} {
		if wt[pair[0]] <= wt[pair[1]] {
			t.Errorf("weighted gave %s %.1f%%, not more than %s's %.1f%%", pair[0], 100*wt[pair[0]], pair[1], 100*wt[pair[1]])
		}
	}
	if wt["fast"] <= rr["fast"] || wt["slow"] >= rr["slow"] {
		t.Errorf("weighted fast %.1f%% / slow %.1f%%, round-robin %.1f%% / %.1f%%: weighted must favour the fast tier more",
			100*wt["fast"], 100*wt["slow"], 100*rr["fast"], 100*rr["slow"])
	}
}
