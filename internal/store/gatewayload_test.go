package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/upstream"
)

// gatewayLoadEnv names the database TestGatewayLoadHelper loads; unset,
// the helper skips (it runs only as BenchmarkGatewayLoad100k's child).
const gatewayLoadEnv = "PROXYPOOL_GATEWAY_LOAD_DB"

// BenchmarkGatewayLoad100k measures what the gateway process pays for a
// 100k-upstream pool, in a fresh child process per iteration (peak RSS is
// per process): open the store, load the pool (the store streams
// GatewayHealthy into the snapshot build) as serveGateway does, then
// reload twice (the old snapshot stays published while the new one is
// built, as in Pool.Run). It reports the cold first load and a reload
// (wall and CPU, and the part spent in the store before the first record
// reaches the pool), the peak RSS (VmHWM; rss-file-MiB of it is
// file-backed: the binary, and the database's memory map if a scan used
// it), the Go heap live after a GC, and the peak RSS again with
// GOMEMLIMIT=250MiB (the Go heap otherwise grows to twice what was live at
// the last GC, and old and new snapshot are both live during a reload).
//
// go test -run '^$' -bench GatewayLoad100k -benchtime 2x ./internal/store/
// (figures over time are in the commits that moved them).
// BenchmarkGatewayProcess100k measures the real gateway process.
func BenchmarkGatewayLoad100k(b *testing.B) {
	path := healthyFixture(b, 100_000)
	run := func(env ...string) map[string]float64 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestGatewayLoadHelper$", "-test.count=1", "-test.v")
		cmd.Env = append(append(os.Environ(), gatewayLoadEnv+"="+path), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("helper: %v\n%s", err, out)
		}
		return parseGatewayLoad(b, string(out))
	}
	var last, limited map[string]float64
	for b.Loop() {
		last = run()
		limited = run("GOMEMLIMIT=250MiB")
	}
	for _, k := range []string{"first-load-ms", "first-load-cpu-ms", "first-healthy-ms", "reload-ms", "reload-cpu-ms",
		"reload-healthy-ms", "peak-rss-MiB", "rss-file-MiB", "heap-live-MiB"} {
		b.ReportMetric(last[k], k)
	}
	b.ReportMetric(limited["peak-rss-MiB"], "peak-rss-memlimit250-MiB")
	b.ReportMetric(limited["reload-cpu-ms"], "reload-cpu-memlimit250-ms")
}

func parseGatewayLoad(b *testing.B, out string) map[string]float64 {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		_, rest, ok := strings.Cut(sc.Text(), "GATEWAY-LOAD ")
		if !ok {
			continue
		}
		m := map[string]float64{}
		for _, kv := range strings.Fields(rest) {
			k, v, _ := strings.Cut(kv, "=")
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("helper output %q: %v", kv, err)
			}
			m[k] = f
		}
		return m
	}
	b.Fatalf("no GATEWAY-LOAD line in helper output:\n%s", out)
	return nil
}

// timedLoader is the store as the pool's loader, timing Healthy.
type timedLoader struct {
	*Store
	took time.Duration
}

func (l *timedLoader) Healthy(ctx context.Context) ([]upstream.Record, error) {
	start := time.Now()
	recs, err := l.Store.Healthy(ctx)
	l.took = time.Since(start)
	return recs, err
}

// GatewayHealthy times the scan and sort, up to the first record handed
// over (the rest of the call is the pool's snapshot build).
func (l *timedLoader) GatewayHealthy(ctx context.Context, fn func(n int, r *upstream.Served) error) error {
	start, first := time.Now(), true
	return l.Store.GatewayHealthy(ctx, func(n int, r *upstream.Served) error {
		if first {
			l.took, first = time.Since(start), false
		}
		return fn(n, r)
	})
}

// TestGatewayLoadHelper is BenchmarkGatewayLoad100k's child process.
func TestGatewayLoadHelper(t *testing.T) {
	path := os.Getenv(gatewayLoadEnv)
	if path == "" {
		t.Skip("runs as BenchmarkGatewayLoad100k's child")
	}
	ctx := context.Background()
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l := &timedLoader{Store: st}
	p, err := pool.New(pool.Options{Loader: l, Groups: []pool.Group{
		{Name: "us", Countries: []string{"US"}}, {Name: "eu", Countries: []string{"DE", "FR", "NL"}},
		{Name: "non-us", ExcludeCountries: []string{"US"}}, {Name: "subs", Sources: []string{"subscription"}},
		{Name: "vmess", Types: []string{"vmess"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	load := func() (wall, cpu, healthy time.Duration) {
		start, c0 := time.Now(), cpuTime()
		if err := p.Load(ctx); err != nil {
			t.Fatal(err)
		}
		return time.Since(start), cpuTime() - c0, l.took
	}
	firstWall, firstCPU, firstHealthy := load()
	var wall, cpu, healthy time.Duration
	for range 2 {
		wall, cpu, healthy = load()
	}
	if p.Len() != 100_000 {
		t.Fatalf("pool holds %d upstreams, want 100000", p.Len())
	}
	hwm, file := procStatusKiB(t, "VmHWM"), procStatusKiB(t, "RssFile")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	runtime.KeepAlive(p)
	fmt.Printf("GATEWAY-LOAD first-load-ms=%d first-load-cpu-ms=%d first-healthy-ms=%d reload-ms=%d reload-cpu-ms=%d reload-healthy-ms=%d peak-rss-MiB=%.1f rss-file-MiB=%.1f heap-live-MiB=%.1f\n",
		firstWall.Milliseconds(), firstCPU.Milliseconds(), firstHealthy.Milliseconds(), wall.Milliseconds(), cpu.Milliseconds(),
		healthy.Milliseconds(), float64(hwm)/1024, float64(file)/1024, float64(ms.HeapAlloc)/(1<<20))
}

// procStatusKiB reads a "kB" field of /proc/self/status.
func procStatusKiB(t testing.TB, field string) int64 { return pidStatusKiB(t, "self", field) }

// pidStatusKiB reads a "kB" field of /proc/PID/status.
func pidStatusKiB(t testing.TB, pid, field string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%s/status", field, pid)
	return 0
}
