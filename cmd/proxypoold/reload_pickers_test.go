package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/config"
	"github.com/proxypool/proxypool/internal/gateway/failover"
	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/reload"
)

// TestReloadPickers: a reload's gateway.strategy, rotate-every and
// ports[].strategy reach the listeners as pickers built the way startup
// builds them (portPickers); a listener whose strategy and rotation did
// not change keeps its picker, so its round-robin counters and sticky
// sessions survive the reload, and the main port picks through the pool
// again once the config is back to what the pool was built with.
func TestReloadPickers(t *testing.T) {
	conf := func(strategy, rotate string) *env {
		t.Helper()
		cfg, err := config.Parse([]byte(fmt.Sprintf(`gateway:
  listen: 127.0.0.1:24500
  strategy: %s
  rotate-every: %s
  ports:
    - {listen: "127.0.0.1:24501", strategy: sticky}
    - {listen: "127.0.0.1:24502", group: us}
groups:
  us: {countries: [US]}
`, strategy, rotate)), "t.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return &env{cfg: cfg, log: logrus.New()}
	}
	start := conf("round-robin", "0")
	p, err := pool.New(poolOptions(start, fourUpstreams{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	have, err := portPickers(start, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	// want per listener: "" absent (the pool's own), "kept", or the new
	// picker's strategy
	type want map[string]string
	steps := []struct {
		name             string
		strategy, rotate string
		want             want
		rotation         time.Duration // of every picker made
	}{
		{"nothing changed", "round-robin", "0", want{mainListener: "", "port-24501": "kept", "port-us": "kept"}, 0},
		{"gateway.strategy", "sticky", "0", want{mainListener: pool.Sticky, "port-24501": "kept", "port-us": pool.Sticky}, 0},
		{"rotate-every", "sticky", "2s", want{mainListener: pool.Sticky, "port-24501": pool.Sticky, "port-us": pool.Sticky}, 2 * time.Second},
		{"back to the start", "round-robin", "0", want{mainListener: "", "port-24501": pool.Sticky, "port-us": pool.RoundRobin}, 0},
	}
	for _, st := range steps {
		got, err := portPickers(conf(st.strategy, st.rotate), p, have)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		n := 0
		for _, w := range st.want {
			if w != "" {
				n++
			}
		}
		if len(got) != n {
			t.Errorf("%s: pickers for %v, want %v", st.name, keys(got), st.want)
		}
		for name, w := range st.want {
			pk, ok := got[name].(*pool.Picker)
			switch {
			case w == "":
				if got[name] != nil {
					t.Errorf("%s: %s has a picker of its own, want the pool's", st.name, name)
				}
			case !ok:
				t.Errorf("%s: %s has no picker, want %s", st.name, name, w)
			case w == "kept":
				if got[name] != have[name] {
					t.Errorf("%s: %s got a new picker, want its old one kept", st.name, name)
				}
			case got[name] == have[name]:
				t.Errorf("%s: %s kept its picker, want a new %s", st.name, name, w)
			case pk.Strategy() != w || pk.Rotation().Period != st.rotation:
				t.Errorf("%s: %s picks %s every %v, want %s every %v", st.name, name, pk.Strategy(), pk.Rotation().Period, w, st.rotation)
			}
		}
		have = got
	}
}

// TestReloadLiveKeys: which changed keys each process applies on a
// reload and which wait for its restart (and are named in the log, the
// status and `proxypoold reload`'s output). A key a process does not use
// is neither.
func TestReloadLiveKeys(t *testing.T) {
	const live, restart, unused = "live", "restart", "-"
	procs := []struct {
		name string
		keys reloadKeys
	}{{"gateway", gatewayKeys}, {"probe", probeKeys}, {"run", runKeys}}
	tests := []struct {
		key  string
		want [3]string // gateway, probe, run
	}{
		{"gateway.strategy", [3]string{live, unused, live}},
		{"gateway.rotate-every", [3]string{live, unused, live}},
		{"gateway.ports", [3]string{live, live, live}}, // the probe's: the Clash API's listeners
		{"gateway.listen", [3]string{live, live, live}},
		{"gateway.client-timeout", [3]string{restart, unused, restart}},
		{"gateway.upstream-handshake-timeout", [3]string{restart, unused, restart}},
		{"gateway.max-attempts", [3]string{restart, unused, restart}},
		{"gateway.max-tries", [3]string{restart, unused, restart}},
		{"groups.us.countries", [3]string{live, restart, live}},
		{"groups.us.min-healthy", [3]string{live, restart, restart}},
		{"groups.us.min-exits", [3]string{live, restart, restart}},
		{"sources", [3]string{unused, live, live}},
		{"probe.judges", [3]string{unused, live, live}},
		{"probe.interval", [3]string{unused, restart, restart}},
		{"log.level", [3]string{live, live, live}},
		{"groups.us.asn", [3]string{live, restart, live}},
		{"groups.us.exclude-asn", [3]string{live, restart, live}},
		{"groups.us.class", [3]string{live, restart, live}},
		{"groups.us.min-throughput", [3]string{live, restart, live}},
		{"groups.us.require-targets", [3]string{live, restart, live}},
		{"probe.targets.shop.url", [3]string{unused, live, live}},
		{"probe.speed.url", [3]string{unused, live, live}},
		{"probe.asn-database", [3]string{unused, live, live}},
		{"probe.ipv6-judge", [3]string{unused, live, live}},
		{"api.clash.pin-ttl", [3]string{unused, restart, restart}},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			for i, p := range procs {
				o := p.keys.options()
				got := unused
				switch {
				case o.NeedsRestart(tt.key):
					got = restart
				case reload.Any([]string{tt.key}, o.Live...):
					got = live
				}
				if got != tt.want[i] {
					t.Errorf("%s: %s, want %s", p.name, got, tt.want[i])
				}
			}
		})
	}
}

func keys(m map[string]failover.Picker) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
