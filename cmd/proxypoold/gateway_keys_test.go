package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/config"
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
	pickers, err := portPickers(e, p)
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
