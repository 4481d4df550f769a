package store

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// benchStore opens a store holding n upstreams (socks5, one source).
func benchStore(b *testing.B, n int, opts Options) (*Store, []string) {
	b.Helper()
	s, _ := openT(b, opts)
	us := make([]upstream.Upstream, n)
	ids := make([]string, n)
	for i := range us {
		us[i] = up(i)
		ids[i] = us[i].ID
	}
	if _, err := s.UpsertSource(context.Background(), upstream.SourceMeta{Name: "bench"}, us); err != nil {
		b.Fatal(err)
	}
	return s, ids
}

// submitN pushes n ok results through the writer and waits for them.
func submitN(b *testing.B, s *Store, ids []string, n, off int) {
	now := time.Now()
	for i := 0; i < n; i++ {
		s.Submit(upstream.CheckResult{ID: ids[(off+i)%len(ids)], At: now, OK: true, TotalMS: float64(50 + i%200),
			ExitIP: "1.1.1.1", Country: "US", Anonymity: upstream.AnonElite})
	}
	if err := s.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// cpuTime is the process's user+system CPU time: on a shared machine it
// is a steadier cost measure than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSubmit measures results/s through the batching writer and the
// commits (= WAL fsyncs) spent per 10k results, batched (the default) and
// with one transaction per result.
func BenchmarkSubmit(b *testing.B) {
	for _, c := range []struct {
		name  string
		batch int
	}{{"batched", 0}, {"tx-per-result", 1}} {
		b.Run(c.name, func(b *testing.B) {
			s, ids := benchStore(b, 10_000, Options{BatchSize: c.batch})
			before := s.WriterStats().Commits
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			submitN(b, s, ids, b.N, 0)
			el, cpu := time.Since(start), cpuTime()-cpu0
			b.StopTimer()
			commits := s.WriterStats().Commits - before
			b.ReportMetric(float64(b.N)/el.Seconds(), "results/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/result")
			b.ReportMetric(float64(commits)*10_000/float64(b.N), "commits/10k")
		})
	}
}

// BenchmarkSubmitRatio runs both modes in each iteration and reports how
// many times more results/s batching gives, measured in the same run.
func BenchmarkSubmitRatio(b *testing.B) {
	batched, _ := benchStore(b, 2_000, Options{})
	single, ids := benchStore(b, 2_000, Options{BatchSize: 1})
	const nb, ns = 4_000, 100
	var tb, ts time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		submitN(b, batched, ids, nb, i*nb)
		tb += time.Since(start)
		start = time.Now()
		submitN(b, single, ids, ns, i*ns)
		ts += time.Since(start)
	}
	rb := float64(nb*b.N) / tb.Seconds()
	rs := float64(ns*b.N) / ts.Seconds()
	b.ReportMetric(rb, "batched-results/s")
	b.ReportMetric(rs, "per-tx-results/s")
	b.ReportMetric(rb/rs, "x-speedup")
}

// BenchmarkHealthy100k loads the gateway snapshot of 100k servable
// upstreams. ns/op is a reload (options already decoded once);
// first-load-ms is the cold first call. CPU times are reported too: on a
// shared machine they are steadier than wall time.
func BenchmarkHealthy100k(b *testing.B) {
	const n = 100_000
	s, ids := benchStore(b, n, Options{BatchSize: 4096})
	submitN(b, s, ids, n, 0)
	ctx := context.Background()
	start, cpu0 := time.Now(), cpuTime()
	if recs, err := s.Healthy(ctx); err != nil || len(recs) != n {
		b.Fatalf("%d healthy (%v), want %d", len(recs), err, n)
	}
	first, firstCPU := time.Since(start), cpuTime()-cpu0
	b.ResetTimer()
	cpu0 = cpuTime()
	for i := 0; i < b.N; i++ {
		recs, err := s.Healthy(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(recs) != n {
			b.Fatalf("%d healthy, want %d", len(recs), n)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(first.Milliseconds()), "first-load-ms")
	b.ReportMetric(float64(firstCPU.Milliseconds()), "first-load-cpu-ms")
}

// BenchmarkUpsertSource measures one refresh of a 10k-line source.
func BenchmarkUpsertSource(b *testing.B) {
	s, _ := openT(b, Options{})
	us := make([]upstream.Upstream, 10_000)
	for i := range us {
		us[i] = up(i)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// alternate halves so every refresh has new, seen and gone upstreams
		lo := (i % 2) * 5_000
		if _, err := s.UpsertSource(ctx, upstream.SourceMeta{Name: fmt.Sprint("bench")}, us[lo:lo+5_000]); err != nil {
			b.Fatal(err)
		}
	}
}
