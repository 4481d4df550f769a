package slo_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/slo"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torctl"
	"github.com/proxypool/proxypool/internal/torgen"
	"github.com/proxypool/proxypool/internal/torgen/exits"
	"github.com/proxypool/proxypool/internal/torgen/torrc"
	"github.com/proxypool/proxypool/internal/upstream"
)

// torScaler is a small real TorScaler over torgen, the shape cmd can wire:
// the instance budget starts below tor.max-instances and ScaleUp raises it
// by one and re-runs Generate, which plans the next unused exits (the
// highest-bandwidth slots that had no port) and hands the new wanted set to
// the runner; the new instances enter the store as tor upstreams. NewNym
// reaches each of the group's instances through torctl.
//
// Generate's cap is global (tor.max-instances), so with several tor groups
// a raised budget may go to another group's slot; the count of the asking
// group's instances before and after is what ScaleUp reports.
type torScaler struct {
	mu   sync.Mutex
	cfg  torgen.Config
	src  torgen.RelaySource
	run  torgen.Runner
	st   *store.Store
	max  int // tor.max-instances
	plan torgen.Plan
}

func (s *torScaler) generate(ctx context.Context) error {
	plan, err := torgen.Generate(ctx, s.cfg, s.src, s.run)
	if err != nil {
		return err
	}
	s.plan = plan
	if ups := torgen.Upstreams(plan); len(ups) > 0 {
		if _, err := s.st.Add(ctx, "tor", ups...); err != nil {
			return fmt.Errorf("adding tor instances to the store: %w", err)
		}
	}
	return nil
}

func (s *torScaler) instances(group string) []torgen.Instance {
	var out []torgen.Instance
	for _, in := range s.plan.Instances {
		if in.Group == group {
			out = append(out, in)
		}
	}
	return out
}

func (s *torScaler) NewNym(ctx context.Context, group string) (int, error) {
	s.mu.Lock()
	ins := s.instances(group)
	s.mu.Unlock()
	n := 0
	var errs []error
	for _, in := range ins {
		if err := torctl.NewNym(ctx, torgen.ControlAddr(in), ""); err != nil {
			errs = append(errs, fmt.Errorf("NEWNYM to %s: %w", in.Name, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func (s *torScaler) ScaleUp(ctx context.Context, group string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := len(s.instances(group))
	if s.cfg.MaxInstances >= s.max || !slices.ContainsFunc(s.plan.Dropped, func(sl exits.Slot) bool { return sl.Group == group }) {
		return 0, nil // at tor.max-instances, or no unused exit left for the group
	}
	s.cfg.MaxInstances++
	if err := s.generate(ctx); err != nil {
		return 0, err
	}
	return len(s.instances(group)) - before, nil
}

// recordRunner is a torgen.Runner that remembers the wanted set (the

func usExit(i int, bw int64) upstream.Relay {
	return upstream.Relay{
		Fingerprint: strings.Repeat(fmt.Sprintf("%X", i%16), 40),
		Nickname:    fmt.Sprintf("exit%d", i), Address: fmt.Sprintf("%d.1.0.1", 20+i), ORPort: 9001,
		Country: "US", Flags: []string{"Exit", "Running", "Valid", "Fast"}, Bandwidth: bw,
	}
}

// TestTorGroupScalesUp: a grouped-mode tor group below its floor (its
// instances are not healthy) gets NEWNYM tried and then one more instance
// per round from its unused exits, up to tor.max-instances, and then backs
// off. torgen writes real torrc files in a temp dir; no tor runs here (the
// NEWNYM attempt fails and is reported), see TestPrivateNetwork in torgen
// for instances on a private tor network.
func TestTorGroupScalesUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "pp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// four US exits in four /16s: four grouped slots
	relays := exits.Static{usExit(1, 400), usExit(2, 300), usExit(3, 200), usExit(4, 100)}
	run := &torgen.DryRun{}
	log := logrus.New()
	log.SetOutput(testWriter{t})
	sc := &torScaler{
		cfg: torgen.Config{
			Groups:   []exits.Group{{Name: "us", Countries: []string{"US"}, Mode: exits.ModeGrouped}},
			PortBase: 19060, PortMax: 19069, MaxInstances: 1,
			TorrcDir: filepath.Join(dir, "etc"), DataDir: filepath.Join(dir, "data"), Log: log,
		},
		src: relays, run: run, st: st, max: 3,
	}
	if err := sc.generate(ctx); err != nil {
		t.Fatal(err)
	}
	first := run.Wanted()
	if len(first) != 1 {
		t.Fatalf("first plan wants %v, want one instance", first)
	}

	groups := []slo.Group{{Name: "us", Floor: slo.Floor{MinHealthy: 2}, Tor: true}} // tor instances carry their group
	var mu sync.Mutex
	var actions []string
	g, err := slo.New(slo.Options{
		Groups: groups, CheckInterval: 10 * time.Millisecond, MinActionInterval: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Counter: slo.NewCounter(st, groups),
		Tor:     sc,
		OnAction: func(group, kind string) {
			mu.Lock()
			defer mu.Unlock()
			actions = append(actions, kind+" "+group)
		},
		Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); g.Run(ctx) }()
	waitFor(t, 5*time.Second, "three instances wanted", func() bool { return len(run.Wanted()) == 3 })
	time.Sleep(500 * time.Millisecond) // rounds keep coming: nothing more is started
	cancel()
	<-done

	// The three highest-bandwidth slots (exits 1-3), the first one still
	// on its port.
	w := run.Wanted()
	keys, _ := torrc.ReadKeys(filepath.Join(dir, "etc"))
	var got []string
	for _, p := range w {
		got = append(got, keys[p])
	}
	want := []string{"grouped/us/21.1.0.0/16", "grouped/us/22.1.0.0/16", "grouped/us/23.1.0.0/16"}
	slices.Sort(got)
	if !slices.Equal(got, want) || !slices.Contains(w, first[0]) {
		t.Errorf("wanted ports %v (keys %v), want the three highest-bandwidth slots %v with port %d kept", w, got, want, first[0])
	}
	files, _ := filepath.Glob(filepath.Join(dir, "etc", "torrc.*"))
	if len(files) != 3 {
		t.Errorf("torrc files %v, want 3 (tor.max-instances)", files)
	}
	recs, err := st.List(context.Background(), store.Filter{Group: "us"})
	if err != nil || len(recs) != 3 {
		t.Errorf("tor upstreams in the store: %d, %v; want 3", len(recs), err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := slices.Index(actions, "instance us"); n < 0 || slices.Contains(actions, "newnym us") {
		t.Errorf("actions %q: want instance (and no successful newnym without a running tor)", actions)
	}
	if n := countOf(actions, "instance us"); n != 2 {
		t.Errorf("%d instances started by the guard, want 2 (1 → max-instances 3)", n)
	}
	st0 := g.Status()[1]
	if !st0.Below || !st0.Exhausted || !strings.Contains(st0.LastError, "NEWNYM") {
		t.Errorf("status: %+v", st0)
	}
	for _, p := range w {
		if _, err := os.Stat(filepath.Join(dir, "data", fmt.Sprint(p))); err != nil {
			t.Errorf("data dir of instance %d: %v", p, err)
		}
	}
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}
