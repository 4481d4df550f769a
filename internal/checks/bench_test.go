package checks_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/checks"
	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/upstream"
)

// BenchmarkChecksBesideLiveness: on 2,000 fleet upstreams, a liveness
// pass alone and then with a target pass and a speed pass running at the
// same time, in one run. It reports both pass times and their ratio, and
// what the checks used against their budgets (upstreams, bytes, checks
// in flight). make bench-checks runs it once.
func BenchmarkChecksBesideLiveness(b *testing.B) {
	const n = 2000
	judge := fleet.StartJudgeT(b)
	var ms []member
	for i := range n {
		ms = append(ms, member{spec: fleet.MemberSpec{Kind: fleet.SOCKS5}, treat: []string{siteOK, siteBlocked, siteCaptcha}[i%3],
			source: "free", latency: int64(10 + i%50)})
	}
	r := startRigTB(b, ms)
	p, err := probe.New(r.d, probe.Options{Judges: []string{judge.URL + "/get"}, Timeout: 5 * time.Second, Concurrency: 256})
	if err != nil {
		b.Fatal(err)
	}
	ups := make([]upstream.Upstream, n)
	for i := range n {
		ups[i] = r.f.Member(i).Upstream
	}
	var sink discard
	ctx := context.Background()
	liveness := func() time.Duration {
		start := time.Now()
		if _, err := p.Pass(ctx, ups, &sink); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	const targetBudget, speedBudget, size = 500, 8 << 20, 64 << 10
	s, err := checks.New(r.st, r.d, r.st, checks.Options{
		Targets: []checks.Target{{Name: "t", URL: r.site.url + "/page", Headers: map[string]string{"X-Need": "1"},
			NotBody: nil, MaxTime: 2 * time.Second, Concurrency: 32, Budget: targetBudget}},
		Speed: &checks.Speed{URL: r.site.url + "/blob", Size: size, BudgetBytes: speedBudget, Concurrency: 4, MaxTime: 5 * time.Second},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		alone := liveness()
		var wg sync.WaitGroup
		var ts, ss checks.PassStats
		wg.Add(2)
		go func() { defer wg.Done(); ts, _ = s.TargetPass(ctx, "t") }()
		go func() { defer wg.Done(); ss, _ = s.SpeedPass(ctx) }()
		beside := liveness()
		wg.Wait()
		if ts.Checked > targetBudget || ts.Peak > 32 || ss.Bytes > speedBudget || ss.Peak > 4 {
			b.Errorf("over budget: target %+v, speed %+v", ts, ss)
		}
		b.ReportMetric(alone.Seconds(), "liveness-alone-s")
		b.ReportMetric(beside.Seconds(), "liveness-beside-s")
		b.ReportMetric(beside.Seconds()/alone.Seconds(), "ratio")
		b.ReportMetric(float64(ts.Checked), "target-upstreams")
		b.ReportMetric(float64(ts.Peak), "target-peak")
		b.ReportMetric(float64(ss.Bytes), "speed-bytes")
		b.ReportMetric(float64(ss.Peak), "speed-peak")
		b.ReportMetric(float64(ss.Passed), "speed-measured")
	}
}

type discard struct{}

func (discard) Submit(upstream.CheckResult) {}
