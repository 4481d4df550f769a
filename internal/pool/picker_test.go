package pool

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

func fiveExits() []upstream.Record {
	var recs []upstream.Record
	for i := range 5 {
		recs = append(recs, rec(i, "US", fmt.Sprintf("198.51.100.%d", i)))
	}
	return recs
}

// TestRotationPeriod: rotate-every 2s keeps one exit for every request of
// the period, across a reload of the store, and moves on after it.
func TestRotationPeriod(t *testing.T) {
	const period = 300 * time.Millisecond
	p, m := newPool(t, fiveExits(), Options{Rotate: Rotation{Period: period}})
	first, err := p.Pick(&upstream.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 20 {
		if i == 10 {
			m.set(fiveExits()) // the store changed: a new snapshot
			if err := p.Load(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		c, _ := p.Pick(&upstream.Selector{})
		if c.ID != first.ID && time.Since(start) < period*2/3 {
			t.Fatalf("pick %d within the period left by %s, not %s", i, c.ID, first.ID)
		}
	}
	time.Sleep(period)
	if c, _ := p.Pick(&upstream.Selector{}); c.ID == first.ID {
		t.Fatalf("after the period the pick is still %s", c.ID)
	}
	// a request that already tried the held one moves the hold on at once
	c, _ := p.Pick(&upstream.Selector{})
	next, _ := p.Pick(&upstream.Selector{Tried: []string{c.ID}})
	if next.ID == c.ID {
		t.Fatalf("failover got the upstream it had tried, %s", c.ID)
	}
	if again, _ := p.Pick(&upstream.Selector{}); again.ID != next.ID {
		t.Fatalf("after a failover the hold is %s, want the new %s", again.ID, next.ID)
	}
}

// TestPickersKeepTheirOwnState: two ports over one pool have their own
// strategy, round-robin counter and sessions.
func TestPickersKeepTheirOwnState(t *testing.T) {
	recs := fiveExits()
	recs[3].Status.LatencyMS = 1 // the fastest by far
	p, _ := newPool(t, recs, Options{})
	a, err := p.NewPicker(RoundRobin, Rotation{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.NewPicker(RoundRobin, Rotation{})
	fast, _ := p.NewPicker(LeastLatency, Rotation{})
	var seqA []string
	for range 3 {
		c, _ := a.Pick(&upstream.Selector{})
		seqA = append(seqA, c.ID)
	}
	if c, _ := b.Pick(&upstream.Selector{}); c.ID != seqA[0] {
		t.Fatalf("picker b's first pick %s follows a's counter (a: %v)", c.ID, seqA)
	}
	if c, _ := p.Pick(&upstream.Selector{}); c.ID != seqA[0] {
		t.Fatalf("the pool's own first pick %s follows a picker's counter (a: %v)", c.ID, seqA)
	}
	hits := 0
	for range 1000 {
		if c, _ := fast.Pick(&upstream.Selector{}); c.ID == recs[3].ID {
			hits++
		}
	}
	// power of two choices: the fastest of 5 wins whenever drawn, ~36 %
	if hits < 280 {
		t.Fatalf("least-latency picked the 1 ms upstream %d times in 1000; round-robin would give 200", hits)
	}
	if _, err := a.Pick(&upstream.Selector{Session: "z1"}); err != nil {
		t.Fatal(err)
	}
	if a.Sessions() != 1 || b.Sessions() != 0 || p.Sessions() != 0 {
		t.Fatalf("a session opened on picker a: a %d, b %d, pool %d; want 1, 0, 0", a.Sessions(), b.Sessions(), p.Sessions())
	}
	if _, err := p.NewPicker("fastest", Rotation{}); err == nil {
		t.Fatal("unknown strategy accepted")
	}
}
