package gateway_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/pool"
)

// TestInstantRefusalsDoNotUseUpTries: 4 of 17 upstreams refuse every
// connect at once (nothing listens) and stay in the pool (as the probe
// keeps re-admitting them); with max-tries 3, three refusals in a row
// used to fail a request (1 in ~170 with random picks). Refusals cost a
// round trip, so the request goes on: 0 failures in 3,000.
func TestInstantRefusalsDoNotUseUpTries(t *testing.T) {
	spec := fleet.Uniform(17, fleet.SOCKS5, fleet.Good)
	for _, i := range []int{2, 6, 10, 14} {
		spec.Members[i].Behavior = fleet.Refuse
	}
	w := newWorld(t, worldOpts{spec: spec, gw: gateway.Options{MaxTries: 3},
		pool: pool.Options{Strategy: pool.Random, EjectAfter: 1 << 30}})
	const workers, each = 8, 375
	var failed, ok atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client("socks5://"+w.addr, false)
			for range each {
				if _, err := get(c, w.judge); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed with 4 of 17 upstreams refusing at once (first: %v)", n, workers*each, first.Load())
	}
	t.Logf("%d requests ok in %v, %d retries", ok.Load(), time.Since(start).Round(time.Millisecond), w.gw.Stats().Retries.Load())
}
