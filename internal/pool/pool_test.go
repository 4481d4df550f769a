package pool

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// memLoader is an in-memory store: the pool's Loader over a slice.
type memLoader struct {
	mu   sync.Mutex
	recs []upstream.Record
	ver  atomic.Uint64
}

func (m *memLoader) Healthy(context.Context) ([]upstream.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]upstream.Record(nil), m.recs...), nil
}

func (m *memLoader) Version(context.Context) (uint64, error) { return m.ver.Load(), nil }

func (m *memLoader) set(recs []upstream.Record) {
	m.mu.Lock()
	m.recs = recs
	m.mu.Unlock()
	m.ver.Add(1)
}

func rec(i int, country, exit string) upstream.Record {
	server := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	// built directly: upstream.New's JSON normalisation dominates 100k-row tests
	u := upstream.Upstream{ID: fmt.Sprintf("%016x", hash64(server)), Type: upstream.SOCKS5, Server: server, Port: 1080}
	return upstream.Record{Upstream: u, Status: upstream.Status{State: upstream.Healthy, Country: country, ExitIP: exit, LatencyMS: float64(10 + i%50), OKs: 1, Checks: 1}}
}

func newPool(t testing.TB, recs []upstream.Record, o Options) (*Pool, *memLoader) {
	t.Helper()
	m := &memLoader{}
	m.set(recs)
	o.Loader = m
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p, m
}

func TestRoundRobinSpreadsOverDistinctExits(t *testing.T) {
	// 10 records, but records 0..5 share one exit: rotation must alternate
	// exits, not records.
	var recs []upstream.Record
	for i := range 10 {
		exit := fmt.Sprintf("192.0.2.%d", i)
		if i < 6 {
			exit = "192.0.2.100"
		}
		recs = append(recs, rec(i, "US", exit))
	}
	p, _ := newPool(t, recs, Options{})
	exits := map[string]int{}
	for range 5 {
		c, err := p.Pick(&upstream.Selector{})
		if err != nil {
			t.Fatal(err)
		}
		exits[c.ExitIP]++
	}
	if len(exits) != 5 {
		t.Fatalf("5 picks saw %d distinct exits: %v", len(exits), exits)
	}
}

func TestSelection(t *testing.T) {
	var recs []upstream.Record
	for i := range 30 {
		c := []string{"US", "DE", "FR"}[i%3]
		recs = append(recs, rec(i, c, fmt.Sprintf("198.51.100.%d", i)))
	}
	tor := rec(100, "US", "203.0.113.1")
	tor.Group = "tor-us"
	recs = append(recs, tor)
	dead := rec(101, "US", "203.0.113.2")
	dead.State = upstream.Dead
	recs = append(recs, dead)
	groups := []Group{{Name: "us", Countries: []string{"US"}}, {Name: "nonus", ExcludeCountries: []string{"US"}}, {Name: "one", IDs: []string{recs[4].ID}}, {Name: "empty", Countries: []string{"JP"}}}
	p, _ := newPool(t, recs, Options{Groups: groups})
	tests := []struct {
		name    string
		sel     upstream.Selector
		check   func(upstream.Choice) bool
		wantErr error
	}{
		{"group us", upstream.Selector{Group: "us"}, func(c upstream.Choice) bool { return c.Country == "US" }, nil},
		{"group nonus", upstream.Selector{Group: "nonus"}, func(c upstream.Choice) bool { return c.Country != "US" }, nil},
		{"country param", upstream.Selector{Country: "DE"}, func(c upstream.Choice) bool { return c.Country == "DE" }, nil},
		{"group+country", upstream.Selector{Group: "nonus", Country: "FR"}, func(c upstream.Choice) bool { return c.Country == "FR" }, nil},
		{"explicit group", upstream.Selector{Group: "tor-us"}, func(c upstream.Choice) bool { return c.ID == tor.ID }, nil},
		{"pinned id", upstream.Selector{Group: "one"}, func(c upstream.Choice) bool { return c.ID == recs[4].ID }, nil},
		{"dead never served", upstream.Selector{}, func(c upstream.Choice) bool { return c.ID != dead.ID }, nil},
		{"empty group", upstream.Selector{Group: "empty"}, nil, upstream.ErrNoUpstream},
		{"no such country", upstream.Selector{Country: "JP"}, nil, upstream.ErrNoUpstream},
		{"unknown group", upstream.Selector{Group: "nope"}, nil, upstream.ErrUnknownGroup},
		{"us and DE is empty", upstream.Selector{Group: "us", Country: "DE"}, nil, upstream.ErrNoUpstream},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 40 {
				c, err := p.Pick(&tt.sel)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("err %v, want %v", err, tt.wantErr)
					}
					return
				}
				if err != nil || !tt.check(c) {
					t.Fatalf("picked %s %s, %v", c.ID, c.Country, err)
				}
			}
		})
	}
}

func TestStrategies(t *testing.T) {
	var recs []upstream.Record
	for i := range 50 {
		recs = append(recs, rec(i, "US", fmt.Sprintf("198.51.100.%d", i)))
	}
	for _, st := range []string{RoundRobin, Random, LeastLatency, Sticky} {
		t.Run(st, func(t *testing.T) {
			p, _ := newPool(t, recs, Options{Strategy: st})
			seen := map[string]bool{}
			fast := 0
			for i := range 2000 {
				c, err := p.Pick(&upstream.Selector{Client: fmt.Sprintf("127.0.0.%d", i%4)})
				if err != nil {
					t.Fatal(err)
				}
				seen[c.ID] = true
				if c.LatencyMS < 35 {
					fast++
				}
			}
			switch st {
			case Sticky:
				if len(seen) > 4 {
					t.Fatalf("4 clients used %d upstreams", len(seen))
				}
			case LeastLatency:
				// two choices: the faster half wins 75 % (1500 ± 19); 1400 is 5 σ
				// below, while a strategy blind to latency scores 1000.
				if fast < 1400 {
					t.Fatalf("least-latency picked the faster half %d of 2000 times", fast)
				}
			default:
				if len(seen) < 40 {
					t.Fatalf("only %d distinct upstreams in 2000 picks", len(seen))
				}
			}
		})
	}
	if _, err := New(Options{Loader: &memLoader{}, Strategy: "fastest"}); err == nil {
		t.Fatal("unknown strategy accepted")
	}
}

func TestRotateEveryN(t *testing.T) {
	var recs []upstream.Record
	for i := range 5 {
		recs = append(recs, rec(i, "US", fmt.Sprintf("198.51.100.%d", i)))
	}
	p, _ := newPool(t, recs, Options{Rotate: Rotation{Requests: 3}})
	var ids []string
	for range 9 {
		c, _ := p.Pick(&upstream.Selector{})
		ids = append(ids, c.ID)
	}
	for i := range 9 {
		if (ids[i] == ids[i/3*3]) != true || (i%3 == 0 && i > 0 && ids[i] == ids[i-1]) {
			t.Fatalf("rotate-every-3 sequence %v", ids)
		}
	}
}

func TestStickyIsTheSameOnEveryReplica(t *testing.T) {
	var recs []upstream.Record
	for i := range 100 {
		recs = append(recs, rec(i, "US", fmt.Sprintf("198.51.100.%d", i)))
	}
	a, _ := newPool(t, recs, Options{Strategy: Sticky})
	// another replica loaded the same pool in another order
	rev := append([]upstream.Record(nil), recs...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	b, _ := newPool(t, rev, Options{Strategy: Sticky})
	for i := range 50 {
		sel := upstream.Selector{Session: fmt.Sprintf("s%d", i)}
		ca, _ := a.Pick(&sel)
		cb, _ := b.Pick(&sel)
		if ca.ID != cb.ID {
			t.Fatalf("session s%d: %s vs %s", i, ca.ID, cb.ID)
		}
		sel = upstream.Selector{Client: fmt.Sprintf("10.0.0.%d", i)}
		ca, _ = a.Pick(&sel)
		cb, _ = b.Pick(&sel)
		if ca.ID != cb.ID {
			t.Fatalf("client %d: %s vs %s", i, ca.ID, cb.ID)
		}
	}
}

func TestSessionTTLAndFailover(t *testing.T) {
	var recs []upstream.Record
	for i := range 20 {
		recs = append(recs, rec(i, "US", fmt.Sprintf("198.51.100.%d", i)))
	}
	p, _ := newPool(t, recs, Options{})
	sel := upstream.Selector{Session: "abc", SessionTTL: 50 * time.Millisecond}
	first, _ := p.Pick(&sel)
	for range 10 {
		if c, _ := p.Pick(&sel); c.ID != first.ID {
			t.Fatalf("session moved from %s to %s", first.ID, c.ID)
		}
	}
	// failover: the held upstream failed for this request
	retry := sel
	retry.Attempt, retry.Tried = 1, []string{first.ID}
	second, _ := p.Pick(&retry)
	if second.ID == first.ID {
		t.Fatal("failover picked the tried upstream")
	}
	if c, _ := p.Pick(&sel); c.ID != second.ID {
		t.Fatalf("after failover the session should hold %s, got %s", second.ID, c.ID)
	}
	time.Sleep(60 * time.Millisecond)
	moved := false
	for range 3 { // a new generation hashes elsewhere (19 of 20 times)
		if c, _ := p.Pick(&sel); c.ID != second.ID {
			moved = true
		}
		time.Sleep(60 * time.Millisecond)
	}
	if !moved {
		t.Fatal("session never moved after its ttl")
	}
}

func TestEjectionAndReadmission(t *testing.T) {
	var recs []upstream.Record
	for i := range 4 {
		recs = append(recs, rec(i, "US", fmt.Sprintf("198.51.100.%d", i)))
	}
	p, m := newPool(t, recs, Options{EjectAfter: 2, PollInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	bad := recs[1].ID
	p.Observe(upstream.CheckResult{ID: bad, Passive: true, Cause: upstream.CauseRefused})
	p.Observe(upstream.CheckResult{ID: bad, Passive: true, Cause: upstream.CauseRefused})
	for range 100 {
		if c, _ := p.Pick(&upstream.Selector{}); c.ID == bad {
			t.Fatal("ejected upstream picked")
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for p.Len() != 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if p.Len() != 3 {
		t.Fatalf("snapshot has %d upstreams after ejection", p.Len())
	}
	// a store reload without a newer check keeps it out
	m.set(recs)
	time.Sleep(50 * time.Millisecond)
	if p.Len() != 3 {
		t.Fatalf("reload re-admitted an ejected upstream without a new check")
	}
	// the probe checked it again: back in
	recs2 := append([]upstream.Record(nil), recs...)
	recs2[1].LastCheck = time.Now()
	m.set(recs2)
	deadline = time.Now().Add(2 * time.Second)
	for p.Len() != 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if p.Len() != 4 {
		t.Fatalf("re-checked upstream not re-admitted: %d", p.Len())
	}
}

func TestLoad100k(t *testing.T) {
	recs := make([]upstream.Record, 100_000)
	for i := range recs {
		recs[i] = rec(i, []string{"US", "DE", "FR", "NL", "JP"}[i%5], fmt.Sprintf("198.%d.%d.%d", i>>16, i>>8&255, i&255))
	}
	m := &memLoader{}
	m.set(recs)
	p, err := New(Options{Loader: m, Groups: []Group{{Name: "us", Countries: []string{"US"}}, {Name: "nonus", ExcludeCountries: []string{"US"}}}})
	if err != nil {
		t.Fatal(err)
	}
	// CPU time, not wall time: the test machine is shared.
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	runtime.GC()
	start, c0 := time.Now(), cpu()
	if err := p.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The goal is under a second (measured 0.44–0.68 s of CPU on a quiet
	// run; `go test -run TestLoad100k -v` prints it). The test fails only
	// past 3 s, so a loaded CI machine does not make it flaky while a
	// regression to a per-record scan still shows.
	if d := cpu() - c0; d > 3*time.Second {
		t.Fatalf("loading 100k upstreams took %v of CPU", d)
	}
	t.Logf("loading 100k upstreams: %v CPU, %v wall", cpu()-c0, time.Since(start))
	if p.Len() != 100_000 {
		t.Fatalf("loaded %d", p.Len())
	}
	start = time.Now()
	for i := range 10_000 {
		if _, err := p.Pick(&upstream.Selector{Group: "nonus", Session: fmt.Sprint(i % 1000)}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("10k sticky picks in group+session (first builds the ring): %v", time.Since(start))
}

func BenchmarkPickRoundRobin(b *testing.B) {
	recs := make([]upstream.Record, 100_000)
	for i := range recs {
		recs[i] = rec(i, "US", fmt.Sprintf("198.%d.%d.%d", i>>16, i>>8&255, i&255))
	}
	p, _ := newPool(b, recs, Options{})
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		sel := &upstream.Selector{}
		for pb.Next() {
			p.Pick(sel)
		}
	})
}

// TestRebuildsKeepGroupsAndEjections: snapshots rebuilt after ejections
// (from the previous snapshot, not the store's records) keep group
// membership by source, keep a group whose members are all ejected known,
// and keep every earlier ejection until a fresh check.
func TestRebuildsKeepGroupsAndEjections(t *testing.T) {
	var recs []upstream.Record
	for i := range 6 {
		r := rec(i, "de", fmt.Sprintf("198.51.100.%d", i))
		r.Sources = []string{"list"}
		if i >= 4 {
			r.Sources = []string{"subs"}
		}
		recs = append(recs, r)
	}
	recs[0].Group = "tor-a"
	p, m := newPool(t, recs, Options{EjectAfter: 1, Groups: []Group{{Name: "subs", Sources: []string{"subs"}}}})
	eject := func(id string) {
		p.Observe(upstream.CheckResult{ID: id, Passive: true, Cause: upstream.CauseRefused})
		p.rebuildSnapshot()
	}
	eject(recs[0].ID)
	eject(recs[4].ID)
	if p.Len() != 4 {
		t.Fatalf("%d upstreams after two ejections, want 4", p.Len())
	}
	if _, err := p.Pick(&upstream.Selector{Group: "tor-a"}); !errors.Is(err, upstream.ErrNoUpstream) {
		t.Fatalf("group with its only member ejected: %v, want ErrNoUpstream", err)
	}
	for range 20 {
		c, err := p.Pick(&upstream.Selector{Group: "subs", Country: "DE"})
		if err != nil || c.ID != recs[5].ID {
			t.Fatalf("subs group after rebuilds picked %v (%v), want %s", c.ID, err, recs[5].ID)
		}
	}
	// a store reload without newer checks keeps both out
	m.set(recs)
	if err := p.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.Len() != 4 {
		t.Fatalf("reload re-admitted ejected upstreams: %d", p.Len())
	}
}

// Sessions past MaxSessions forget the least recently used one, not the
// newest: a busy session keeps its upstream through a flood of new ids.
func TestSessionsBoundedLRU(t *testing.T) {
	var recs []upstream.Record
	for i := range 50 {
		recs = append(recs, rec(i, "US", fmt.Sprintf("198.51.100.%d", i)))
	}
	p, _ := newPool(t, recs, Options{MaxSessions: 100})
	busy := upstream.Selector{Session: "busy"}
	held, _ := p.Pick(&busy)
	// the held upstream moves off the hash ring's choice (a failover), so
	// only a remembered session still picks it
	retry := busy
	retry.Attempt, retry.Tried = 1, []string{held.ID}
	moved, _ := p.Pick(&retry)
	for i := range 1000 {
		sel := upstream.Selector{Session: fmt.Sprintf("flood-%d", i)}
		if _, err := p.Pick(&sel); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			if c, _ := p.Pick(&busy); c.ID != moved.ID {
				t.Fatalf("after %d new sessions the busy one moved from %s to %s", i, moved.ID, c.ID)
			}
		}
	}
	if n := p.Sessions(); n != 100 {
		t.Fatalf("%d sessions remembered, want the bound 100", n)
	}
	// a new session in a full table is remembered too (an old one goes):
	// it keeps the upstream it failed over to
	late := upstream.Selector{Session: "late"}
	first, _ := p.Pick(&late)
	lateRetry := late
	lateRetry.Attempt, lateRetry.Tried = 1, []string{first.ID}
	second, _ := p.Pick(&lateRetry)
	if c, _ := p.Pick(&late); c.ID != second.ID {
		t.Fatalf("a session started in a full table is not remembered: %s, want %s", c.ID, second.ID)
	}
	if n := p.Sessions(); n != 100 {
		t.Fatalf("%d sessions after adding one to a full table, want 100", n)
	}
}
