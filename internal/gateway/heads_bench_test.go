package gateway_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/upstream"
)

// rssBytes is this process's resident set (VmRSS).
func rssBytes(b *testing.B) uint64 {
	s, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(s), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// BenchmarkPendingHeadsRSS holds PROXYPOOL_BENCH_HEADS connections (1000
// by default; the figure is 8000) each with a 64 KiB request head
// in PROXYPOOL_BENCH_LINE byte fields (1000) that never ends, and reports
// the process's RSS per connection once the gateway read them: the figure behind MemoryMax= in
// proxy-gateway.service. Run it alone:
//
//	go test -run '^$' -bench PendingHeadsRSS -benchtime 1x ./internal/gateway/
func BenchmarkPendingHeadsRSS(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("PROXYPOOL_BENCH_HEADS")); err == nil && v > 0 {
		n = v
	}
	o := gateway.Options{ClientTimeout: 5 * time.Minute, MaxConns: n + 100,
		Picker: funcPicker{pick: func(*upstream.Selector) (upstream.Choice, error) { return upstream.Choice{}, upstream.ErrNoUpstream }}}
	if !loopsOn() {
		o.GoroutinesOnly = true
	}
	addr, _, stop := miniGW(b, o)
	defer stop()
	lineLen := 1000 // PROXYPOOL_BENCH_LINE: 65000 sends the head as one field
	if v, err := strconv.Atoi(os.Getenv("PROXYPOOL_BENCH_LINE")); err == nil && v > 0 {
		lineLen = min(v, 64<<10-200)
	}
	head := pendingHead(64<<10-100, lineLen)
	for range b.N {
		baseLive := liveBytes()
		base := rssBytes(b)
		closeAll := openPending(b, addr, n, head)
		// until the RSS stops growing: the gateway has read the heads
		peak := rssBytes(b)
		for range 100 {
			time.Sleep(200 * time.Millisecond)
			now := rssBytes(b)
			if now <= peak+uint64(n)*256 && now > base+uint64(n)*(32<<10) {
				peak = max(peak, now)
				break
			}
			peak = max(peak, now)
		}
		live := liveBytes()
		b.ReportMetric(float64(live-baseLive)/float64(n)/1024, "live-KiB/conn")
		b.ReportMetric(float64(base)/(1<<20), "base-MiB")
		b.ReportMetric(float64(peak)/(1<<20), "rss-MiB")
		b.ReportMetric(float64(peak-base)/float64(n)/1024, "KiB/conn")
		closeAll()
	}
}
