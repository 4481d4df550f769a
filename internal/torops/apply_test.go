package torops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/slo"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torgen"
	"github.com/proxypool/proxypool/internal/torgen/exits"
	"github.com/proxypool/proxypool/internal/torgen/torrc"
)

// wantRunner remembers the wanted ports (the process runner itself is

// usRelays writes a CSV export with n US exits, each in its own /16
// (one grouped slot each), and a DE one, and returns its path.
func usRelays(t *testing.T, dir string, n int) string {
	t.Helper()
	csv := "Router Name,Country Code,Bandwidth (KB/s),IP Address,ORPort,Flag - Exit,Flag - Running,Flag - Valid,Flag - Fast\n"
	for i := range n {
		csv += fmt.Sprintf("us%d,US,%d,%d.1.0.1,9001,1,1,1,1\n", i, 400-100*i, 20+i)
	}
	csv += "de0,DE,500,30.1.0.1,9001,1,1,1,1\n"
	path := filepath.Join(dir, "relays.csv")
	if err := os.WriteFile(path, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// testTor is a Tor over a fresh store in dir for group us (countries US,
// floor floor) in mode, choosing from usExits US exits, with ports from
// base and at most 3 instances.
func testTor(t *testing.T, dir, mode string, floor, usExits, base int, systemd bool, now func() time.Time) (*Tor, *store.Store) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(dir, "pp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m, err := exits.ParseMode(mode)
	if err != nil {
		t.Fatal(err)
	}
	relays := usRelays(t, dir, usExits)
	tor, err := New(Options{
		Store: st,
		Gen: torgen.Config{
			Groups: []exits.Group{{Name: "us", Countries: []string{"US"}}}, Mode: m,
			PortBase: base, PortMax: base + 9, MaxInstances: 3,
			TorrcDir: filepath.Join(dir, "etc"), DataDir: filepath.Join(dir, "tor"),
			MaxCircuitDirtiness: 10 * time.Minute, Verify: torrc.FindVerifier(),
		},
		Relays: exits.Source{URL: relays, Format: exits.CSV}, RelaysURL: relays,
		Floors: map[string]int{"us": floor}, BootstrapGrace: time.Minute,
		Systemd: systemd, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tor, st
}

// TestSupervisorBudget: in grouped/single mode a floored tor group starts
// with as many instances as its floor asks; ScaleUp adds one from an unused
// exit once the running ones are past their bootstrap grace, never moves a
// running one and stops at the instance cap. In country mode, or for a
// group without a floor, it adds nothing.
func TestSupervisorBudget(t *testing.T) {
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
			var now time.Time
			tor, st := testTor(t, t.TempDir(), tc.mode, tc.floor, 4, 19160, false, func() time.Time { return now })
			run := &torgen.DryRun{}
			sup := &Supervisor{t: tor, runner: run, wait: func() {}}
			sc := sup.Scaler()

			if _, err := sup.generate(ctx); err != nil {
				t.Fatal(err)
			}
			// The instances' age counts from their first_seen, written
			// during generate: a loaded machine may spend seconds in it.
			now = time.Now()
			start := run.Wanted()
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
				now = now.Add(time.Minute + time.Second)
				n, err := sc.ScaleUp(ctx, "us")
				if err != nil || n != want {
					t.Errorf("round %d: ScaleUp = %d, %v; want %d", i, n, err, want)
				}
			}
			end := run.Wanted()
			if len(end) != tc.wantEnd {
				t.Errorf("running %v at the end, want %d instances", end, tc.wantEnd)
			}
			for _, p := range start {
				if !slices.Contains(end, p) {
					t.Errorf("instance on port %d was stopped by a scale-up (now %v)", p, end)
				}
			}
			recs, err := st.List(ctx, store.Filter{Source: SourceName})
			if err != nil || len(recs) != tc.wantEnd {
				t.Errorf("tor upstreams in the store: %d, %v; want %d", len(recs), err, tc.wantEnd)
			}
		})
	}
}

// TestApplyKeepsStoredBudget: a budget the guard raised in an earlier run
// (or before an upgrade moved it out of settings) is what the next
// generation plans for, not the floor.
func TestApplyKeepsStoredBudget(t *testing.T) {
	ctx := context.Background()
	tor, st := testTor(t, t.TempDir(), "grouped", 1, 4, 19160, false, nil)
	if err := st.SetTorBudget(ctx, "us", 2); err != nil {
		t.Fatal(err)
	}
	run := &torgen.DryRun{}
	if _, err := tor.Apply(ctx, run); err != nil {
		t.Fatal(err)
	}
	if w := run.Wanted(); len(w) != 2 {
		t.Errorf("runs %v, want 2 instances (the stored budget, above the floor's 1)", w)
	}
	if g, _ := st.TorGroups(ctx); g["us"].Unused != 2 {
		t.Errorf("unused slots %+v, want us: 2 (four US exits, budget 2)", g)
	}
}
