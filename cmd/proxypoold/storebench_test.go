package main

import (
	"context"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/store/storetest"
	"github.com/proxypool/proxypool/internal/upstream"
)

// BenchmarkProbePassStores: one probe pass over a 10,000-member fleet
// (30 % bad, every kind Mixed makes), its results submitted to a store
// on each backend in turn, same run, same fleet. Reported per backend:
// the pass (until every upstream has a verdict), the flush of what was
// still queued after it, and the healthy count (never more than the fleet's good members) and the
// good ones the pass missed (timeouts on a loaded machine, not the store).
//
//	go test -run '^$' -bench ProbePassStores -benchtime 1x ./cmd/proxypoold/
func BenchmarkProbePassStores(b *testing.B) {
	const n, conc, timeout = 10000, 1024, 2 * time.Second
	ctx := context.Background()
	judge := fleet.StartJudgeT(b)
	f, err := fleet.Start(ctx, fleet.Mixed(n, 0.3))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	ups := make([]upstream.Upstream, 0, n)
	good := 0
	for _, m := range f.Members() {
		ups = append(ups, m.Upstream)
		if m.Behavior() == fleet.Good {
			good++
		}
	}
	// An untimed pass first: the fleet's and the dialer's first
	// connections are slower, and whichever backend went first would pay.
	newProber := func() (*dial.Pool, *probe.Prober) {
		d := dial.New(dial.Options{})
		p, err := probe.New(d, probe.Options{Judges: []string{judge.URL + "/get"}, Timeout: timeout,
			Concurrency: conc, Classify: dial.Classify})
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Uplink(ctx); err != nil {
			b.Fatal(err)
		}
		return d, p
	}
	d, p := newProber()
	if _, err := p.Pass(ctx, ups, discard{}); err != nil {
		b.Fatal(err)
	}
	d.Close()
	for _, be := range storetest.Backends {
		b.Run(be.Name, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				st := storetest.OpenOn(b, be, store.Options{})
				if _, err := st.Add(ctx, "fleet", ups...); err != nil {
					b.Fatal(err)
				}
				d, p := newProber()
				b.StartTimer()
				start := time.Now()
				if _, err := p.Pass(ctx, ups, st); err != nil {
					b.Fatal(err)
				}
				pass := time.Since(start)
				if err := st.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				flush := time.Since(start) - pass
				b.StopTimer()
				c, err := st.Counts(ctx)
				if err != nil {
					b.Fatal(err)
				}
				ws := st.WriterStats()
				if ws.Results != n {
					b.Errorf("%s: %d results committed, want %d", be.Name, ws.Results, n)
				}
				// Fewer is the probe's (a check timed out on a loaded
				// machine); more is a bad member served.
				if c.Healthy > good {
					b.Errorf("%s: %d healthy after the pass, more than the fleet's %d good members", be.Name, c.Healthy, good)
				}
				b.ReportMetric(float64(good-c.Healthy), "missed")
				b.ReportMetric(pass.Seconds(), "pass_s")
				b.ReportMetric(flush.Seconds(), "flush_s")
				b.ReportMetric(float64(c.Healthy), "healthy")
				b.ReportMetric(float64(ws.Commits), "commits")
				d.Close()
			}
		})
	}
}

// discard is a result sink that keeps nothing.
type discard struct{}

func (discard) Submit(upstream.CheckResult) {}
