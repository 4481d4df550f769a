package gateway_test

import (
	"slices"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/pool"
)

// exitSeq is the exits the judge saw for n requests through proxy, each
// on a new connection.
func exitSeq(t *testing.T, proxy, judge string, n int) []string {
	t.Helper()
	var seq []string
	for range n {
		ip, err := get(client(proxy, false), judge)
		if err != nil {
			t.Fatalf("through %s: %v", proxy, err)
		}
		seq = append(seq, ip)
	}
	return seq
}

func distinct(seq []string) int {
	s := slices.Clone(seq)
	slices.Sort(s)
	return len(slices.Compact(s))
}

// TestPortStrategies: a pinned port's strategy is its own, with its own
// counter, on both engines: the sticky port keeps one client on one exit,
// the random port does not walk the round-robin cycle, and a round-robin
// port counts apart from the main port serving the same upstreams.
func TestPortStrategies(t *testing.T) {
	w := newWorld(t, worldOpts{
		spec:       fleet.Uniform(4, fleet.SOCKS5, fleet.Good),
		pinned:     map[string]string{"sticky": "", "random": "", "rr": ""},
		strategies: map[string]string{"sticky": pool.Sticky, "random": pool.Random, "rr": pool.RoundRobin},
	})
	for _, proto := range []string{"socks5", "http"} {
		t.Run(proto, func(t *testing.T) {
			if seq := exitSeq(t, proto+"://"+w.pinned["sticky"], w.judge, 8); distinct(seq) != 1 {
				t.Errorf("sticky port: one client left by %d exits %v, want 1", distinct(seq), seq)
			}
			seq := exitSeq(t, proto+"://"+w.pinned["random"], w.judge, 12)
			cyclic := distinct(seq[:4]) == 4
			for i := 4; i < len(seq); i++ {
				cyclic = cyclic && seq[i] == seq[i-4]
			}
			if cyclic {
				t.Errorf("random port walked the round-robin cycle %v", seq)
			}
			// interleaved: with one shared counter each port would see
			// every other exit only
			var main, rr []string
			for range 4 {
				main = append(main, exitSeq(t, proto+"://"+w.addr, w.judge, 1)...)
				rr = append(rr, exitSeq(t, proto+"://"+w.pinned["rr"], w.judge, 1)...)
			}
			if distinct(main) != 4 || distinct(rr) != 4 {
				t.Errorf("4 requests each, interleaved: main port left by %v, round-robin port by %v; want all 4 exits on each", main, rr)
			}
		})
	}
}

// TestLeastLatencyPort: a port set to least-latency sends most requests
// to the faster of two upstreams (measured by the gateway itself), where
// round-robin would split them evenly.
func TestLeastLatencyPort(t *testing.T) {
	spec := fleet.Spec{Members: []fleet.MemberSpec{
		{Kind: fleet.SOCKS5, Behavior: fleet.Good},
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Latency: 30 * time.Millisecond},
	}}
	w := newWorld(t, worldOpts{spec: spec, pinned: map[string]string{"fast": ""}, strategies: map[string]string{"fast": pool.LeastLatency}})
	fast := w.fleet.Members()[0].ExitIP
	seq := exitSeq(t, "socks5://"+w.pinned["fast"], w.judge, 100)
	n := 0
	for _, ip := range seq {
		if ip == fast {
			n++
		}
	}
	// two random draws, the faster wins: 75 expected
	if n < 62 {
		t.Errorf("least-latency port: %d of 100 requests through the fast upstream, want at least 62 (round-robin: 50)", n)
	}
}

// TestRotateEvery: rotate-every keeps one exit for a period or a number
// of requests, on both engines.
func TestRotateEvery(t *testing.T) {
	tests := []struct {
		name string
		rot  pool.Rotation
		n    int
		want func(seq []string) bool
	}{
		{"2s: 4 requests in a row, one exit", pool.Rotation{Period: 2 * time.Second}, 4,
			func(seq []string) bool { return distinct(seq) == 1 }},
		{"3 requests: runs of 3", pool.Rotation{Requests: 3}, 9, func(seq []string) bool {
			for i := range seq {
				if seq[i] != seq[i/3*3] || i%3 == 0 && i > 0 && seq[i] == seq[i-1] {
					return false
				}
			}
			return true
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, worldOpts{spec: fleet.Uniform(4, fleet.SOCKS5, fleet.Good), pool: pool.Options{Rotate: tt.rot}})
			if seq := exitSeq(t, "socks5://"+w.addr, w.judge, tt.n); !tt.want(seq) {
				t.Errorf("rotate-every %+v: exits %v", tt.rot, seq)
			}
		})
	}
}

// TestSetRouteSwapsAPortsStrategy: a reload's new strategy for a port
// (SetRoute) serves its next connections.
func TestSetRouteSwapsAPortsStrategy(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(4, fleet.SOCKS5, fleet.Good), pinned: map[string]string{"p": ""}})
	if seq := exitSeq(t, "socks5://"+w.pinned["p"], w.judge, 4); distinct(seq) != 4 {
		t.Fatalf("round-robin port before the swap: %v", seq)
	}
	sticky, err := w.pool.NewPicker(pool.Sticky, pool.Rotation{})
	if err != nil {
		t.Fatal(err)
	}
	if !w.gw.SetRoute("p", "", sticky) || w.gw.SetRoute("nosuch", "", sticky) {
		t.Fatal("SetRoute: want true for the served listener p only")
	}
	if seq := exitSeq(t, "socks5://"+w.pinned["p"], w.judge, 6); distinct(seq) != 1 {
		t.Errorf("after the swap to sticky one client left by %v", seq)
	}
}

// TestUpstreamHandshakeTimeout: with auto a try is bounded by 3× the
// upstream's recorded latency (floored), so an upstream that has become
// slower than that is cut off; a fixed upstream-handshake-timeout
// (TryTimeout) gives every try its full bound.
func TestUpstreamHandshakeTimeout(t *testing.T) {
	spec := fleet.Spec{Members: []fleet.MemberSpec{{Kind: fleet.SOCKS5, Behavior: fleet.Good, Latency: 700 * time.Millisecond}}}
	for _, tt := range []struct {
		name   string
		try    time.Duration
		wantOK bool
	}{
		{"auto: 3x 5 ms floored at 300 ms", 0, false},
		{"fixed 3s", 3 * time.Second, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, worldOpts{spec: spec, gw: gateway.Options{MaxTries: 1, TryTimeout: tt.try, DialTimeout: 5 * time.Second}})
			start := time.Now()
			_, err := get(client("socks5://"+w.addr, false), w.judge)
			if (err == nil) != tt.wantOK {
				t.Errorf("a 700 ms handshake: err %v after %v, want ok %v", err, time.Since(start).Round(time.Millisecond), tt.wantOK)
			}
		})
	}
}
