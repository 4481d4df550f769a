package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/config"
	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/upstream"
)

// fourUpstreams is a Loader of four healthy upstreams with distinct exits.
type fourUpstreams struct{}

func (fourUpstreams) Healthy(context.Context) ([]upstream.Record, error) {
	var recs []upstream.Record
	for i := range 4 {
		u := upstream.Upstream{ID: fmt.Sprintf("%016x", i+1), Type: upstream.SOCKS5, Server: fmt.Sprintf("192.0.2.%d", i+1), Port: 1080}
		recs = append(recs, upstream.Record{Upstream: u, Status: upstream.Status{State: upstream.Healthy, ExitIP: fmt.Sprintf("198.51.100.%d", i+1), Country: "US", LatencyMS: 5}})
	}
	return recs, nil
}

func (fourUpstreams) Version(context.Context) (uint64, error) { return 1, nil }

// TestGatewayKeysReachThePool: rotate-every and each port's strategy go
// from the config to the pool the gateway picks from (rotate-every was
// never passed on, port strategies were validated then ignored).
func TestGatewayKeysReachThePool(t *testing.T) {
	cfg, err := config.Parse([]byte(`
gateway:
  rotate-every: 2s
  ports:
    - {listen: "127.0.0.1:24501", strategy: sticky}
    - {listen: "127.0.0.1:24502", group: us, strategy: least-latency}
    - {listen: "127.0.0.1:24503", group: us}
groups:
  us: {countries: [US]}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := logrus.New()
	e := &env{cfg: cfg, log: l}
	p, err := pool.New(poolOptions(e, fourUpstreams{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	first, _ := p.Pick(&upstream.Selector{})
	for range 4 {
		if c, _ := p.Pick(&upstream.Selector{}); c.ID != first.ID {
			t.Fatalf("rotate-every 2s: the main port moved from %s to %s within the period", first.ID, c.ID)
		}
	}
	pickers, err := portPickers(e, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"port-24501": pool.Sticky, "port-us": pool.LeastLatency, "port-us-24503": pool.RoundRobin}
	if len(pickers) != len(want) {
		t.Errorf("pickers for %d ports, want %d", len(pickers), len(want))
	}
	for name, strategy := range want {
		pk, ok := pickers[name].(*pool.Picker)
		if !ok || pk.Strategy() != strategy {
			t.Errorf("port %s: picker %v, want strategy %s", name, pickers[name], strategy)
		}
	}
}

// TestRotateEveryE2E: through the real daemon, rotate-every: 2s keeps
// one exit for the period (the issue: 4 requests in 0.1 s left by 4
// exits) and moves on after it; the old handshake-timeout key still
// loads, with a warning naming file:line.
func TestRotateEveryE2E(t *testing.T) {
	judge := fleet.StartJudgeT(t)
	f := fleet.StartT(t, fleet.Uniform(4, fleet.SOCKS5, fleet.Good))
	dir := t.TempDir()
	const gw = "127.83.0.1:24510"
	rest := fmt.Sprintf(`gateway:
  listen: %s
  rotate-every: 2s
  handshake-timeout: 4s
metrics:
  listen: 127.83.0.1:24512
  gateway-listen: ""
log: {level: info, format: text}
`, gw)
	cfgPath := f.WriteConfigT(t, dir, judge.URL, time.Second, rest)
	text, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	before, _, _ := strings.Cut(string(text), "handshake-timeout:")
	oldKeyLine := strings.Count(before, "\n") + 1
	d := startDaemon(t, dir, cfgPath)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for healthyCount(ctx, filepath.Join(dir, "pp.db")) != 4 {
		select {
		case err := <-d.exited:
			d.stopped = true
			t.Fatalf("proxypoold exited early: %v", err)
		case <-ctx.Done():
			t.Fatal("pool never reached 4 healthy upstreams")
		case <-time.After(200 * time.Millisecond):
		}
	}
	// the gateway's pool follows the store within a poll
	time.Sleep(1500 * time.Millisecond)
	var exits []string
	start := time.Now()
	for range 4 {
		exits = append(exits, get(t, "socks5://"+gw, judge.URL+"/ip"))
	}
	took := time.Since(start)
	for _, e := range exits {
		if e != exits[0] && took < 2*time.Second {
			t.Errorf("rotate-every 2s: 4 requests in %v left by %v, want one exit", took.Round(time.Millisecond), exits)
			break
		}
	}
	time.Sleep(2100 * time.Millisecond)
	if next := get(t, "socks5://"+gw, judge.URL+"/ip"); next == exits[len(exits)-1] {
		t.Errorf("after the 2s period the exit is still %s", next)
	}
	d.stop(t, 20*time.Second)
	log, _ := os.ReadFile(d.logPath)
	want := fmt.Sprintf("%s:%d: gateway.handshake-timeout: deprecated", cfgPath, oldKeyLine)
	if !strings.Contains(string(log), want) {
		t.Errorf("daemon log lacks %q:\n%s", want, tail(d.logPath, 20))
	}
}
