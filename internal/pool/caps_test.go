package pool

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TestChoiceCarriesCaps: a pick answers with the caps the store gave the
// upstream, from a streamed load, a sliced one, and a snapshot rebuilt
// after an ejection.
func TestChoiceCarriesCaps(t *testing.T) {
	caps := []upstream.Caps{0, upstream.CapConnect, upstream.CapForward, upstream.CapConnect | upstream.CapPipeline}
	var recs []upstream.Record
	want := map[string]upstream.Caps{}
	for i := range 8 {
		r := rec(i, "US", "")
		r.Caps = caps[i%len(caps)]
		recs = append(recs, r)
		want[r.ID] = r.Caps
	}
	sliced, _ := newPool(t, recs, Options{EjectAfter: 1})
	streamed, _ := streamPool(t, recs, Options{})
	check := func(name string, p *Pool, n int) {
		t.Helper()
		for range 2 * n {
			c, err := p.Pick(&upstream.Selector{})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if c.Caps != want[c.ID] {
				t.Fatalf("%s: %s has caps %q, want %q", name, c.ID, c.Caps, want[c.ID])
			}
		}
	}
	check("sliced", sliced, len(recs))
	check("streamed", streamed, len(recs))
	sliced.Observe(upstream.CheckResult{ID: recs[0].ID, Passive: true, Cause: upstream.CauseRefused})
	sliced.rebuildSnapshot()
	if sliced.Len() != len(recs)-1 {
		t.Fatalf("after the ejection %d upstreams, want %d", sliced.Len(), len(recs)-1)
	}
	check("rebuilt", sliced, len(recs))
	if err := sliced.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("reloaded", sliced, len(recs))
}

// capsRec is an upstream of kind k whose last check proved c.
func capsRec(i int, k upstream.Kind, c upstream.Caps) upstream.Record {
	r := rec(i, "US", "")
	r.Type, r.Caps = k, c
	return r
}

// TestPickHonoursNeed: a request gets only upstreams that can do what it
// needs, under every strategy and in sessions; a pool where the fitting
// ones are rare still finds them; one with none answers "no upstream"
// saying why; records from before caps were stored count as able.
func TestPickHonoursNeed(t *testing.T) {
	const (
		tunnel = upstream.CapConnect
		either = upstream.CapConnect | upstream.CapForward
	)
	mixed := []upstream.Record{
		capsRec(1, upstream.HTTP, upstream.CapForward),                     // GET-only
		capsRec(2, upstream.HTTP, upstream.CapConnect),                     // CONNECT-only
		capsRec(3, upstream.HTTP, upstream.CapConnect|upstream.CapForward), // both
		capsRec(4, upstream.HTTP, 0),                                       // stored before caps: unknown, both
		capsRec(5, upstream.SOCKS5, 0),                                     // tunnels by construction
		capsRec(6, upstream.SOCKS5, upstream.CapPipeline),
	}
	getOnly := mixed[0].ID
	var rare []upstream.Record // 2000 GET-only proxies and one that tunnels
	for i := range 2000 {
		rare = append(rare, capsRec(100+i, upstream.HTTP, upstream.CapForward))
	}
	rare = append(rare, capsRec(99, upstream.HTTP, upstream.CapConnect))
	cases := []struct {
		name     string
		recs     []upstream.Record
		strategy string
		sel      upstream.Selector
		never    string // an id the picks must not return ("" none)
		want     int    // distinct upstreams the picks must reach at least, exactly when sticky (0: pick fails)
	}{
		{"tunnel, round-robin", mixed, RoundRobin, upstream.Selector{}, getOnly, 5},
		{"tunnel asked explicitly", mixed, RoundRobin, upstream.Selector{Need: tunnel}, getOnly, 5},
		{"tunnel, random", mixed, Random, upstream.Selector{}, getOnly, 5},
		{"tunnel, least-latency", mixed, LeastLatency, upstream.Selector{}, getOnly, 2}, // the slowest may lose every draw
		{"tunnel, sticky", mixed, Sticky, upstream.Selector{Client: "10.0.0.1"}, getOnly, 1},
		{"tunnel, session", mixed, RoundRobin, upstream.Selector{Session: "s1"}, getOnly, 1},
		{"plain http: any", mixed, RoundRobin, upstream.Selector{Need: either}, "", 6},
		{"tunnel among 2000 GET-only", rare, RoundRobin, upstream.Selector{}, "", 1},
		{"tunnel among 2000 GET-only, random", rare, Random, upstream.Selector{}, "", 1},
		{"tunnel, GET-only pool", mixed[:1], RoundRobin, upstream.Selector{}, "", 0},
		{"plain http, GET-only pool", mixed[:1], RoundRobin, upstream.Selector{Need: either}, "", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, _ := newPool(t, c.recs, Options{Strategy: c.strategy})
			seen := map[string]bool{}
			for range 60 {
				sel := c.sel
				ch, err := p.Pick(&sel)
				if c.want == 0 {
					if !errors.Is(err, upstream.ErrNoUpstream) || !strings.Contains(err.Error(), "tunnel") {
						t.Fatalf("Pick = %s, %v; want no upstream that can tunnel", ch.ID, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if ch.ID == c.never {
					t.Fatalf("picked %s (%s, caps %q) for need %q", ch.ID, ch.Type, ch.Caps, c.sel.Need)
				}
				if !fits(&ch, c.sel.Need) {
					t.Fatalf("picked %s with caps %q for need %q", ch.ID, ch.Caps, c.sel.Need)
				}
				seen[ch.ID] = true
			}
			sticky := c.strategy == Sticky || c.sel.Session != ""
			if len(seen) < c.want || sticky && len(seen) != c.want {
				t.Fatalf("picks reached %d upstreams, want %d: %v", len(seen), c.want, seen)
			}
		})
	}
}

// TestFailoverSkipsUnfit: failing over for a tunnel walks the upstreams
// that can tunnel and then runs out; the GET-only one is never tried and
// never reported.
func TestFailoverSkipsUnfit(t *testing.T) {
	recs := []upstream.Record{
		capsRec(1, upstream.HTTP, upstream.CapForward),
		capsRec(2, upstream.HTTP, upstream.CapConnect),
		capsRec(3, upstream.SOCKS5, 0),
	}
	p, _ := newPool(t, recs, Options{})
	var tried []string
	for attempt := range 3 {
		sel := upstream.Selector{Attempt: attempt, Tried: tried}
		ch, err := p.Pick(&sel)
		if attempt == 2 {
			if !errors.Is(err, upstream.ErrNoUpstream) {
				t.Fatalf("third try: %s, %v; want no upstream", ch.ID, err)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ch.ID == recs[0].ID {
			t.Fatalf("try %d went to the GET-only upstream", attempt)
		}
		tried = append(tried, ch.ID)
	}
}

// TestSessionKeepsItsForwardOnlyUpstream: a CONNECT in a session held by
// a GET-only upstream goes through another, and the session's plain
// requests stay on its own (the exit a session is for does not move).
func TestSessionKeepsItsForwardOnlyUpstream(t *testing.T) {
	recs := []upstream.Record{
		capsRec(1, upstream.HTTP, upstream.CapForward),
		capsRec(2, upstream.HTTP, upstream.CapForward),
		capsRec(3, upstream.HTTP, upstream.CapForward),
		capsRec(4, upstream.HTTP, upstream.CapConnect),
	}
	p, _ := newPool(t, recs, Options{})
	either := upstream.CapConnect | upstream.CapForward
	for k := range 40 {
		key := "s" + string(rune('a'+k%26)) + string(rune('a'+k/26))
		held, err := p.Pick(&upstream.Selector{Session: key, Need: either})
		if err != nil {
			t.Fatal(err)
		}
		if held.Caps.Has(upstream.CapConnect) {
			continue // held by the one that tunnels: nothing to show
		}
		tun, err := p.Pick(&upstream.Selector{Session: key})
		if err != nil || tun.ID != recs[3].ID {
			t.Fatalf("CONNECT in session %s: %s, %v; want %s", key, tun.ID, err, recs[3].ID)
		}
		again, err := p.Pick(&upstream.Selector{Session: key, Need: either})
		if err != nil || again.ID != held.ID {
			t.Fatalf("session %s moved from %s to %s (%v) after a CONNECT", key, held.ID, again.ID, err)
		}
		return
	}
	t.Fatal("no session landed on a GET-only upstream")
}
