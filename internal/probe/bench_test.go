package probe_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/upstream"
)

// The probe benchmark of issue 2/6 (make bench-probe): N upstreams on
// loopback, 30 % bad (a quarter each: reset, garbage, refused, black hole),
// 50–200 ms injected latency, a 2 s check timeout, concurrency 1024. The fleet
// and its judge run in a child process so the figures are the probe's own.
// Reported: time until every upstream has a verdict, checks/s, peak RSS and
// open fds of the probe process, the floor (Σ check durations ÷ concurrency)
// and the ratio to it, and wrong verdicts.

type benchMember struct {
	Upstream upstream.Upstream `json:"upstream"`
	Good     bool              `json:"good"`
}

// TestFleetChild is the fleet side of BenchmarkProbePass; it only runs in the
// child process the benchmark starts.
func TestFleetChild(t *testing.T) {
	if os.Getenv("PROBE_BENCH_CHILD") != "1" {
		t.Skip("runs only as the benchmark's child process")
	}
	n, _ := strconv.Atoi(os.Getenv("PROBE_BENCH_N"))
	rng := rand.New(rand.NewSource(1))
	bads := []fleet.Behavior{fleet.Reset, fleet.Garbage, fleet.Refuse, fleet.Blackhole}
	spec := fleet.Spec{Members: make([]fleet.MemberSpec, n)}
	for i := range spec.Members {
		b := fleet.Good
		if i%10 < 3 { // 30 %
			b = bads[(i/10)%4]
		}
		spec.Members[i] = fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: b,
			Latency: time.Duration(50+rng.Intn(151)) * time.Millisecond}
	}
	ctx := context.Background()
	judge, err := fleet.StartJudge(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := fleet.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "JUDGE %s\n", judge.URL)
	for _, m := range f.Members() {
		b, _ := json.Marshal(benchMember{m.Upstream, m.Spec.Behavior == fleet.Good})
		fmt.Fprintf(out, "M %s\n", b)
	}
	fmt.Fprintln(out, "READY")
	out.Flush()
	bufio.NewReader(os.Stdin).ReadString('\n') // until the parent is done
}

type rec struct {
	mu   sync.Mutex
	got  map[string]upstream.CheckResult
	dsum time.Duration
}

func (r *rec) Submit(c upstream.CheckResult) {
	r.mu.Lock()
	r.got[c.ID] = c
	r.dsum += time.Duration(c.TotalMS * float64(time.Millisecond))
	r.mu.Unlock()
}

func BenchmarkProbePass(b *testing.B) {
	n := 10000
	if s := os.Getenv("PROBE_BENCH_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	const conc, timeout = 1024, 2 * time.Second
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		child := exec.Command(os.Args[0], "-test.run=^TestFleetChild$", "-test.count=1")
		child.Env = append(os.Environ(), "PROBE_BENCH_CHILD=1", "PROBE_BENCH_N="+strconv.Itoa(n))
		child.Stderr = os.Stderr
		stdin, _ := child.StdinPipe()
		stdout, _ := child.StdoutPipe()
		if err := child.Start(); err != nil {
			b.Fatal(err)
		}
		var judge string
		var members []benchMember
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "JUDGE "):
				judge = strings.TrimPrefix(line, "JUDGE ")
			case strings.HasPrefix(line, "M "):
				var m benchMember
				json.Unmarshal([]byte(line[2:]), &m)
				members = append(members, m)
			}
			if line == "READY" {
				break
			}
		}
		if len(members) != n {
			b.Fatalf("fleet child gave %d members, want %d", len(members), n)
		}
		d := dial.New(dial.Options{})
		p, err := probe.New(d, probe.Options{Judges: []string{judge + "/get"}, Timeout: timeout, Concurrency: conc,
			Classify: dial.Classify})
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Uplink(context.Background()); err != nil { // learn the real IP before timing
			b.Fatal(err)
		}
		ups := make([]upstream.Upstream, n)
		for j, m := range members {
			ups[j] = m.Upstream
		}
		var peakFD atomic.Int64
		stop := make(chan struct{})
		go func() {
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					if ents, err := os.ReadDir("/proc/self/fd"); err == nil && int64(len(ents)) > peakFD.Load() {
						peakFD.Store(int64(len(ents)))
					}
				}
			}
		}()
		r := &rec{got: map[string]upstream.CheckResult{}}
		b.StartTimer()
		start := time.Now()
		if _, err := p.Pass(context.Background(), ups, r); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		close(stop)
		wrong := 0
		causes := map[string]int{}
		for _, m := range members {
			if got, ok := r.got[m.Upstream.ID]; !ok || got.OK != m.Good {
				wrong++
				causes[got.Cause.String()]++
			}
		}
		if wrong > 0 {
			b.Logf("wrong verdicts by cause: %v", causes)
		}
		floor := r.dsum / conc
		b.ReportMetric(elapsed.Seconds(), "verdict_s")
		b.ReportMetric(float64(n)/elapsed.Seconds(), "checks/s")
		b.ReportMetric(floor.Seconds(), "floor_s")
		b.ReportMetric(elapsed.Seconds()/floor.Seconds(), "x_floor")
		b.ReportMetric(float64(vmHWM())/1024, "peakRSS_MiB")
		b.ReportMetric(float64(peakFD.Load()), "peak_fds")
		b.ReportMetric(float64(wrong), "wrong")
		d.Close()
		stdin.Close()
		child.Wait()
	}
}

// vmHWM is the process's peak RSS in KiB.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v
			}
		}
	}
	return 0
}
