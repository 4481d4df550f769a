package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/slo"
	"github.com/proxypool/proxypool/internal/store"
)

// wantRunner remembers the wanted ports (the process runner itself is
// proven in torgen's tests and TestSLOTorScaleUpE2E).
type wantRunner struct {
	mu   sync.Mutex
	want []int
}

func (r *wantRunner) Apply(_ context.Context, want, _ []int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.want = slices.Clone(want)
	return nil
}

func (r *wantRunner) wanted() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.want)
}

// TestTorManagerBudget: in grouped/single mode a floored tor group starts
// with as many instances as its floor asks; ScaleUp adds one from an unused
// exit once the running ones are past their bootstrap grace, never moves a
// running one and stops at tor.max-instances. In country mode, or for a
// group without a floor, it adds nothing.
func TestTorManagerBudget(t *testing.T) {
	tests := []struct {
		name      string
		mode      string
		floor     int
		wantStart int
		wantAdds  []int // ScaleUp results, one per round (each past the grace)
		wantEnd   int
	}{
		{"grouped, floor 1", "grouped", 1, 1, []int{1, 1, 0}, 3},
		{"single, floor 2", "single", 2, 2, []int{1, 0}, 3},
		{"grouped, no floor", "grouped", 0, 3, []int{0}, 3},
		{"country", "country", 1, 1, []int{0}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			dir := t.TempDir()
			// four US exits in four /16s, a DE one; max-instances 3
			csv := "Router Name,Country Code,Bandwidth (KB/s),IP Address,ORPort,Flag - Exit,Flag - Running,Flag - Valid,Flag - Fast\n"
			for i, bw := range []int{400, 300, 200, 100} {
				csv += fmt.Sprintf("us%d,US,%d,%d.1.0.1,9001,1,1,1,1\n", i, bw, 20+i)
			}
			csv += "de0,DE,500,30.1.0.1,9001,1,1,1,1\n"
			relays := filepath.Join(dir, "relays.csv")
			cfgPath := filepath.Join(dir, "proxypool.yaml")
			floor := ""
			if tc.floor > 0 {
				floor = fmt.Sprintf(", min-healthy: %d", tc.floor)
			}
			cfg := fmt.Sprintf(`database: %[1]s/pp.db
sources: []
groups:
  us: {countries: [US]%[2]s}
tor:
  enabled: true
  runner: process
  relays: %[3]s
  relays-format: csv
  mode: %[4]s
  groups: [us]
  port-base: 19160
  port-max: 19169
  max-instances: 3
  torrc-dir: %[1]s/etc
  data-dir: %[1]s/tor
log: {level: warn}
`, dir, floor, relays, tc.mode)
			e, st := loadWith(ctx, t, cfgPath, map[string]string{relays: csv, cfgPath: cfg})
			m := newTorManager(ctx, e, st)
			run := &wantRunner{}
			m.runner, m.wait = run, func() {}
			sc := newTorScaler(&daemonTor{e: e, st: st, dataDir: e.cfg.Tor.DataDir}, m.regenerate)
			var now time.Time
			sc.now = func() time.Time { return now }

			if _, err := m.generate(ctx); err != nil {
				t.Fatal(err)
			}
			// The instances' age counts from their first_seen, written
			// during generate: a loaded machine may spend seconds in it.
			now = time.Now()
			start := run.wanted()
			if len(start) != tc.wantStart {
				t.Fatalf("started %v, want %d instances", start, tc.wantStart)
			}
			// Within the bootstrap grace: "not yet" when there is
			// something to add, "nothing" (0, nil) otherwise.
			n, err := sc.ScaleUp(ctx, "us")
			if canAdd := tc.wantAdds[0] > 0; n != 0 || canAdd != errors.Is(err, slo.ErrNotYet) || (!canAdd && err != nil) {
				t.Errorf("ScaleUp within the bootstrap grace: %d, %v; want 0 and ErrNotYet %v", n, err, canAdd)
			}
			for i, want := range tc.wantAdds {
				now = now.Add(e.cfg.Tor.BootstrapGrace + time.Second)
				n, err := sc.ScaleUp(ctx, "us")
				if err != nil || n != want {
					t.Errorf("round %d: ScaleUp = %d, %v; want %d", i, n, err, want)
				}
			}
			end := run.wanted()
			if len(end) != tc.wantEnd {
				t.Errorf("running %v at the end, want %d instances", end, tc.wantEnd)
			}
			for _, p := range start {
				if !slices.Contains(end, p) {
					t.Errorf("instance on port %d was stopped by a scale-up (now %v)", p, end)
				}
			}
			recs, err := st.List(ctx, store.Filter{Source: "tor"})
			if err != nil || len(recs) != tc.wantEnd {
				t.Errorf("tor upstreams in the store: %d, %v; want %d", len(recs), err, tc.wantEnd)
			}
		})
	}
}
