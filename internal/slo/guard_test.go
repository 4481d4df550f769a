package slo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// world is an in-memory pool the guard acts on: counts per group, and what
// each action does to them. The guard's logic is tested on it with a fake
// clock; the fleet tests prove the same logic against real parts.
type world struct {
	mu       sync.Mutex
	counts   map[string]Count
	calls    []string                          // "kind group"
	effect   map[string]func(group string) int // kind → what it did (0: nothing)
	countErr error
	notYet   int // ScaleUp calls still to answer ErrNotYet
}

func (w *world) Count(context.Context) (map[string]Count, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.countErr != nil {
		return nil, w.countErr
	}
	out := map[string]Count{}
	for k, v := range w.counts {
		out[k] = v
	}
	return out, nil
}

func (w *world) do(kind, group string) int {
	w.mu.Lock()
	w.calls = append(w.calls, kind+" "+group)
	f := w.effect[kind]
	w.mu.Unlock()
	if f == nil {
		return 1
	}
	return f(group)
}

func (w *world) Recheck(_ context.Context, g string) (int, error) { return w.do(KindRecheck, g), nil }
func (w *world) Refresh(_ context.Context, g string) (bool, error) {
	return w.do(KindRefresh, g) > 0, nil
}
func (w *world) NewNym(_ context.Context, g string) (int, error) { return w.do(KindNewNym, g), nil }
func (w *world) ScaleUp(_ context.Context, g string) (int, error) {
	w.mu.Lock()
	if w.notYet > 0 {
		w.notYet--
		w.calls = append(w.calls, KindInstance+" "+g)
		w.mu.Unlock()
		return 0, fmt.Errorf("tor@9062 started 20s ago may still bootstrap: %w", ErrNotYet)
	}
	w.mu.Unlock()
	return w.do(KindInstance, g), nil
}

func (w *world) set(group string, c Count) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.counts[group] = c
}

func (w *world) takeCalls() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.calls
	w.calls = nil
	return c
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Unix(1_700_000_000, 0)} }
func countEntries(h *test.Hook, substr string) int {
	n := 0
	for _, e := range h.AllEntries() {
		if strings.Contains(e.Message, substr) {
			n++
		}
	}
	return n
}

func newGuard(t *testing.T, w *world, clk *clock, o Options) (*Guard, *test.Hook, *[]string) {
	t.Helper()
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	var mu sync.Mutex
	actions := &[]string{}
	o.Counter, o.Logger, o.Now = w, log, clk.now
	if o.Rechecker == nil {
		o.Rechecker = w
	}
	if o.Refresher == nil {
		o.Refresher = w
	}
	if o.Tor == nil {
		o.Tor = w
	}
	o.CheckInterval = 30 * time.Second
	if o.MinActionInterval == 0 {
		o.MinActionInterval = 2 * time.Minute
	}
	o.OnAction = func(g, k string) {
		mu.Lock()
		defer mu.Unlock()
		*actions = append(*actions, k+" "+g)
	}
	g, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return g, hook, actions
}

// TestLadder: a group below its floor gets one action per evaluation, in
// order of cost; actions stop as soon as the floor is met.
func TestLadder(t *testing.T) {
	w := &world{counts: map[string]Count{"us": {Healthy: 3, Exits: 3}, PoolName: {Healthy: 30, Exits: 30}}}
	clk := newClock()
	g, hook, actions := newGuard(t, w, clk, Options{Groups: []Group{
		{Name: "us", Floor: Floor{MinHealthy: 10}, Tor: true},
		{Name: "de", Floor: Floor{MinHealthy: 1}}, // empty: acted on, no tor steps
		{Name: "any"}, // no floor: never acted on
	}, Pool: Floor{MinHealthy: 1}})
	ctx := context.Background()
	want := [][]string{
		{"recheck de", "recheck us"},
		{"refresh de", "refresh us"},
		{"newnym us"},
		{"instance us"},
		nil, // round over; next round one min-action-interval after the first
	}
	for i, w2 := range want {
		if err := g.Check(ctx); err != nil {
			t.Fatal(err)
		}
		got := sorted(w.takeCalls())
		if strings.Join(got, ",") != strings.Join(w2, ",") {
			t.Fatalf("check %d: calls %q, want %q", i, got, w2)
		}
		clk.add(30 * time.Second)
	}
	if n := len(*actions); n != 6 {
		t.Errorf("OnAction called %d times, want 6: %q", n, *actions)
	}
	st := statusOf(g, "us")
	if !st.Below || st.LastAction != KindInstance || !strings.Contains(st.LastActionDetail, "started 1 more tor instances") {
		t.Errorf("status: %+v", st)
	}
	if !strings.Contains(g.Summary(), "us below floor (3/10 healthy, 3/0 exits), last action instance") {
		t.Errorf("summary %q", g.Summary())
	}
	if n := countEntries(hook, "group us is below its floor; acting"); n != 1 {
		t.Errorf("'below its floor' logged %d times, want once", n)
	}

	// The floor is met: no more actions, one line saying so.
	w.set("us", Count{Healthy: 10, Exits: 10})
	w.set("de", Count{Healthy: 1, Exits: 1})
	for range 10 {
		g.Check(ctx)
		clk.add(30 * time.Second)
	}
	if c := w.takeCalls(); len(c) != 0 {
		t.Fatalf("floor met, still acting: %q", c)
	}
	if n := countEntries(hook, "group us is back at its floor"); n != 1 {
		t.Errorf("'back at its floor' logged %d times, want once", n)
	}
	if g.Summary() != "every floor met" {
		t.Errorf("summary %q", g.Summary())
	}
	for _, e := range hook.AllEntries() {
		if strings.HasPrefix(e.Message, "group us") && e.Data["group"] != "us" {
			t.Errorf("log line %q lacks the GROUP field: %v", e.Message, e.Data)
		}
	}
}

// TestInstanceNotYet: while one of the group's tor instances may still
// bootstrap, the instance step waits (one try per evaluation, shown in
// Status) instead of ending the round as "did not help"; once ScaleUp can
// act the round ends normally and the next one is not delayed by a backoff.
func TestInstanceNotYet(t *testing.T) {
	w := &world{counts: map[string]Count{"us": {Healthy: 1, Exits: 1}}, notYet: 2}
	clk := newClock()
	g, hook, actions := newGuard(t, w, clk, Options{
		Groups:            []Group{{Name: "us", Floor: Floor{MinHealthy: 4}, Tor: true}},
		MinActionInterval: 2 * time.Minute,
	})
	ctx := context.Background()
	// check 6, 3 min after the round began: it helped, so the next round
	// starts one min-action-interval after the first began, not after a
	// doubled backoff.
	want := []string{"recheck us", "refresh us", "newnym us", "instance us", "instance us", "instance us", "recheck us"}
	for i, w2 := range want {
		g.Check(ctx)
		got := strings.Join(w.takeCalls(), ",")
		if got != w2 {
			t.Fatalf("check %d: calls %q, want %q", i, got, w2)
		}
		st := statusOf(g, "us")
		if waiting := i == 3 || i == 4; waiting != (st.Waiting != "") {
			t.Errorf("check %d: Waiting %q", i, st.Waiting)
		}
		if st.Exhausted || st.LastError != "" {
			t.Errorf("check %d: a wait is neither a failure nor a round that did not help: %+v", i, st)
		}
		if i == 5 {
			w.set("us", Count{Healthy: 2, Exits: 2}) // the new instance helped
		}
		clk.add(30 * time.Second)
	}
	if got := strings.Join(*actions, ","); got != "recheck us,refresh us,newnym us,instance us,recheck us" {
		t.Errorf("actions %q: a wait is not an action", got)
	}
	if n := countEntries(hook, "waiting before another tor instance"); n != 1 {
		t.Errorf("the wait was logged at info %d times, want once", n)
	}
}

// TestNothingLoops: a group that stays below its floor whatever is done
// gets each kind of action at most once per min-action-interval, backs off,
// and is logged once per round, not once per tick.
func TestNothingLoops(t *testing.T) {
	w := &world{counts: map[string]Count{"us": {Healthy: 0}}}
	clk := newClock()
	g, hook, _ := newGuard(t, w, clk, Options{
		Groups:            []Group{{Name: "us", Floor: Floor{MinHealthy: 10, MinExits: 5}, Tor: true}},
		MinActionInterval: 2 * time.Minute, MaxBackoff: 8 * time.Minute,
	})
	ctx := context.Background()
	const window = time.Hour
	byKind := map[string][]time.Time{}
	for start := clk.t; clk.t.Sub(start) < window; clk.add(30 * time.Second) {
		g.Check(ctx)
		for _, c := range w.takeCalls() {
			kind := strings.Fields(c)[0]
			byKind[kind] = append(byKind[kind], clk.t)
		}
	}
	for _, kind := range []string{KindRecheck, KindRefresh, KindNewNym, KindInstance} {
		ts := byKind[kind]
		if len(ts) == 0 {
			t.Fatalf("%s never ran", kind)
		}
		for i := 1; i < len(ts); i++ {
			if d := ts[i].Sub(ts[i-1]); d < 2*time.Minute {
				t.Errorf("%s ran twice within %v", kind, d)
			}
		}
		// backing off 2, 4, 8, 8, … minutes: far fewer than an hour of 2-minute rounds
		if len(ts) > 9 {
			t.Errorf("%s ran %d times in %v, want backoff to keep it at most 9", kind, len(ts), window)
		}
	}
	rounds := len(byKind[KindRecheck])
	if n := countEntries(hook, "still below its floor after every action"); n < rounds-1 || n > rounds {
		t.Errorf("exhausted line logged %d times over %d rounds", n, rounds)
	}
	if st := statusOf(g, "us"); !st.Exhausted || st.NextRound.IsZero() {
		t.Errorf("status after fruitless rounds: %+v", st)
	}

	// Something finally helps: the backoff resets.
	w.set("us", Count{Healthy: 4, Exits: 4})
	for range 20 {
		g.Check(ctx)
		clk.add(30 * time.Second)
	}
	w.takeCalls()
	w.set("us", Count{Healthy: 5, Exits: 5}) // improved again, still below
	var ran []time.Time
	for start := clk.t; clk.t.Sub(start) < 20*time.Minute; clk.add(30 * time.Second) {
		g.Check(ctx)
		for _, c := range w.takeCalls() {
			if strings.HasPrefix(c, KindRecheck) {
				ran = append(ran, clk.t)
			}
		}
		w.mu.Lock()
		w.counts["us"] = Count{Healthy: w.counts["us"].Healthy + 1, Exits: 5} // every round helps a little
		w.mu.Unlock()
		if w.counts["us"].Healthy >= 9 {
			break
		}
	}
	if len(ran) >= 2 && ran[1].Sub(ran[0]) > 2*time.Minute+30*time.Second {
		t.Errorf("rounds that help are %v apart, want the min-action-interval", ran[1].Sub(ran[0]))
	}
}

// TestSkipsWhatFindsNothing: a step with nothing to do (no failing
// upstream, every source within its min-interval) gives way to the next in
// the same evaluation and is not counted as an action.
func TestSkipsWhatFindsNothing(t *testing.T) {
	w := &world{counts: map[string]Count{"us": {}}, effect: map[string]func(string) int{
		KindRecheck: func(string) int { return 0 },
		KindRefresh: func(string) int { return 0 },
	}}
	clk := newClock()
	g, _, actions := newGuard(t, w, clk, Options{Groups: []Group{{Name: "us", Floor: Floor{MinHealthy: 1}, Tor: true}}})
	g.Check(context.Background())
	if got := w.takeCalls(); strings.Join(got, ",") != "recheck us,refresh us,newnym us" {
		t.Fatalf("calls %q", got)
	}
	if strings.Join(*actions, ",") != "newnym us" {
		t.Fatalf("actions %q", *actions)
	}
}

// TestFlappingGroup: a group that dips below its floor, recovers and dips
// again gets no more than one round per min-action-interval.
func TestFlappingGroup(t *testing.T) {
	w := &world{counts: map[string]Count{"us": {}}}
	clk := newClock()
	g, _, _ := newGuard(t, w, clk, Options{Groups: []Group{{Name: "us", Floor: Floor{MinHealthy: 1}}}})
	ctx := context.Background()
	var rechecks int
	for i := range 16 { // 8 minutes, below every other evaluation
		if i%2 == 0 {
			w.set("us", Count{})
		} else {
			w.set("us", Count{Healthy: 1, Exits: 1})
		}
		g.Check(ctx)
		for _, c := range w.takeCalls() {
			if strings.HasPrefix(c, KindRecheck) {
				rechecks++
			}
		}
		clk.add(30 * time.Second)
	}
	if rechecks > 4 {
		t.Errorf("%d rechecks in 8 minutes of flapping, want at most 4 (one per 2m)", rechecks)
	}
}

func TestHooksAndErrors(t *testing.T) {
	w := &world{counts: map[string]Count{"us": {Healthy: 2, Exits: 1}, PoolName: {Healthy: 7, Exits: 6}}}
	clk := newClock()
	var floors []string
	log, hook := test.NewNullLogger()
	g, err := New(Options{Counter: w, Logger: log, Now: clk.now,
		Groups: []Group{{Name: "us", Floor: Floor{MinHealthy: 2, MinExits: 2}}, {Name: "nl"}},
		Pool:   Floor{MinHealthy: 5},
		OnFloor: func(group string, h, e, mh, me int) {
			floors = append(floors, strings.Join([]string{group, itoa(h), itoa(e), itoa(mh), itoa(me)}, "/"))
		}})
	if err != nil {
		t.Fatal(err)
	}
	g.Check(context.Background())
	if got := strings.Join(floors, " "); got != "/7/6/5/0 us/2/1/2/2 nl/0/0/0/0" {
		t.Errorf("OnFloor calls %q", got)
	}
	if !statusOf(g, "us").Below || statusOf(g, PoolName).Below {
		t.Errorf("status %+v", g.Status())
	}
	w.countErr = errors.New("database is locked")
	for range 5 {
		if err := g.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "database is locked") {
			t.Fatalf("check error %v", err)
		}
	}
	if n := countEntries(hook, "database is locked"); n != 1 {
		t.Errorf("counter error logged %d times in a row, want once", n)
	}
	if st := statusOf(g, "us"); st.LastError == "" {
		t.Errorf("counter error not in status: %+v", st)
	}

	for _, bad := range []Options{
		{},
		{Counter: w, Groups: []Group{{Name: ""}}},
		{Counter: w, Groups: []Group{{Name: "a"}, {Name: "a"}}},
		{Counter: w, Groups: []Group{{Name: "a", Floor: Floor{MinHealthy: -1}}}},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}

func statusOf(g *Guard, name string) GroupStatus {
	for _, s := range g.Status() {
		if s.Group == name {
			return s
		}
	}
	return GroupStatus{}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestStatusNowCountsOnRead: status shows the pool as it is, not as the
// last check (up to a check interval ago) saw it, and acts on nothing.
func TestStatusNowCountsOnRead(t *testing.T) {
	w := &world{counts: map[string]Count{"us": {Healthy: 0}, PoolName: {Healthy: 0}}}
	g, _, _ := newGuard(t, w, newClock(), Options{Groups: []Group{{Name: "us", Floor: Floor{MinHealthy: 5}}}})
	ctx := context.Background()
	if err := g.Check(ctx); err != nil {
		t.Fatal(err)
	}
	w.takeCalls()
	w.set("us", Count{Healthy: 7, Exits: 7}) // a full pass later
	w.set(PoolName, Count{Healthy: 7, Exits: 7})
	for _, s := range g.StatusNow(ctx) {
		if s.Group == "us" && (s.Healthy != 7 || s.Below) {
			t.Errorf("StatusNow us: healthy %d below %v, want 7, met", s.Healthy, s.Below)
		}
	}
	if old := g.Status(); old[1].Healthy != 0 {
		t.Errorf("Status (the last check's) changed: %+v", old[1])
	}
	if calls := w.takeCalls(); len(calls) != 0 {
		t.Errorf("StatusNow acted: %v", calls)
	}
}

// TestPoolFloors proves slo.min-healthy and slo.min-exits: the whole pool
// below either floor is shown below and acted on (its first step, a
// re-check); at or above both it is left alone.
func TestPoolFloors(t *testing.T) {
	tests := []struct {
		name  string
		pool  Floor
		below bool
	}{
		{"min-healthy met", Floor{MinHealthy: 7}, false},
		{"min-healthy missed", Floor{MinHealthy: 8}, true},
		{"min-exits met", Floor{MinExits: 3}, false},
		{"min-exits missed", Floor{MinExits: 4}, true},
		{"no floor", Floor{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &world{counts: map[string]Count{PoolName: {Healthy: 7, Exits: 3}}}
			g, _, actions := newGuard(t, w, newClock(), Options{Pool: tt.pool})
			if err := g.Check(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := statusOf(g, PoolName).Below; got != tt.below {
				t.Errorf("7 healthy over 3 exits, floor %+v: below %v, want %v", tt.pool, got, tt.below)
			}
			if acted := len(*actions) > 0; acted != tt.below {
				t.Errorf("floor %+v: actions %s, want some: %v", tt.pool, strings.Join(*actions, ", "), tt.below)
			}
		})
	}
}
