package pool

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/proxypool/proxypool/internal/upstream"
)

// tier is a set of upstreams alike in speed and steadiness.
type tier struct {
	name       string
	latencyMS  float64
	failShare  float64 // of requests that fail
	throughput float64 // bytes/s, 0 unknown
}

// sharesByTier makes n upstreams per tier, sends picks requests through
// strategy, feeding each outcome back as the gateway does (a success with
// the tier's latency, or a failure), and returns each tier's share.
func sharesByTier(t *testing.T, strategy string, tiers []tier, n, picks int) map[string]float64 {
	t.Helper()
	var recs []upstream.Record
	of := map[string]tier{}
	speed := map[string]float64{}
	for k, tr := range tiers {
		for j := range n {
			r := rec(k*n+j, "US", fmt.Sprintf("198.51.%d.%d", k, j))
			r.LatencyMS = tr.latencyMS
			recs = append(recs, r)
			of[r.ID] = tr
			speed[r.ID] = tr.throughput
		}
	}
	// ejection would hide the error rate the strategy is to weigh
	p, _ := streamPoolThroughput(t, recs, speed, Options{Strategy: strategy, EjectAfter: 1 << 30})
	rng := rand.New(rand.NewPCG(1, 2))
	count := map[string]int{}
	for range picks {
		c, err := p.Pick(&upstream.Selector{})
		if err != nil {
			t.Fatal(err)
		}
		tr := of[c.ID]
		count[tr.name]++
		if rng.Float64() < tr.failShare {
			p.Observe(upstream.CheckResult{ID: c.ID, Passive: true, Cause: upstream.CauseTimeout})
		} else {
			p.Observe(upstream.CheckResult{ID: c.ID, Passive: true, OK: true, TotalMS: tr.latencyMS})
		}
	}
	shares := map[string]float64{}
	for name, c := range count {
		shares[name] = float64(c) / float64(picks)
	}
	return shares
}

// TestWeightedFavoursFastSteadyUpstreams: weighted sends more requests
// to faster tiers, fewer to a flaky one as fast, and more to a higher
// throughput; round-robin, in the same run, shares alike. Each case's
// order is best tier first.
func TestWeightedFavoursFastSteadyUpstreams(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tiers []tier // best first, as weighted must order them
	}{
		{"latency and errors", []tier{
			{name: "fast", latencyMS: 20},
			{name: "flaky-fast", latencyMS: 20, failShare: 0.4},
			{name: "medium", latencyMS: 200},
			{name: "slow", latencyMS: 600},
		}},
		{"throughput", []tier{
			{name: "4MiB/s", latencyMS: 50, throughput: 4 << 20},
			{name: "unknown", latencyMS: 50},
			{name: "64KiB/s", latencyMS: 50, throughput: 64 << 10},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const perTier, picks = 5, 20000
			w := sharesByTier(t, Weighted, tc.tiers, perTier, picks)
			rr := sharesByTier(t, RoundRobin, tc.tiers, perTier, picks)
			even := 1 / float64(len(tc.tiers))
			for k, tr := range tc.tiers {
				t.Logf("%-12s weighted %5.1f%%  round-robin %5.1f%%", tr.name, 100*w[tr.name], 100*rr[tr.name])
				if rr[tr.name] < even*0.9 || rr[tr.name] > even*1.1 {
					t.Errorf("round-robin gave %s %.1f%%, want about %.1f%%", tr.name, 100*rr[tr.name], 100*even)
				}
				if w[tr.name] == 0 {
					t.Errorf("weighted starved %s", tr.name)
				}
				if k > 0 && w[tr.name] >= w[tc.tiers[k-1].name] {
					t.Errorf("weighted gave %s %.1f%%, not less than %s's %.1f%%",
						tr.name, 100*w[tr.name], tc.tiers[k-1].name, 100*w[tc.tiers[k-1].name])
				}
			}
		})
	}
}

// TestErrRateForgets: failures raise the error rate, successes lower
// it, and a minute without outcomes halves it, so an upstream that
// failed once is not shunned for good.
func TestErrRateForgets(t *testing.T) {
	var e errRate
	at := int64(1e18)
	for range 5 {
		e.observe(true, at)
	}
	high := e.get(at)
	if high < 0.6 {
		t.Fatalf("after 5 failures: rate %.2f, want above 0.6", high)
	}
	if got := e.get(at + int64(errHalfLife)); got < high/2*0.99 || got > high/2*1.01 {
		t.Errorf("a half-life later: %.3f, want %.3f", got, high/2)
	}
	e.observe(false, at)
	if got := e.get(at); got >= high {
		t.Errorf("after a success: %.3f, not below %.3f", got, high)
	}
}
