package pool

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/proxypool/proxypool/internal/upstream"
)

// streamLoaderT is a memLoader that also streams (as the store does):
// the servable records as one upstream.Served reused between calls.
type streamLoaderT struct {
	*memLoader
	streams int
	fail    error // returned by GatewayHealthy after the first record
	// throughput is the speed check's figure by id (upstream.Served's;
	// a Record carries none)
	throughput map[string]float64
}

func (s *streamLoaderT) GatewayHealthy(ctx context.Context, fn func(n int, r *upstream.Served) error) error {
	recs, _ := s.memLoader.Healthy(ctx)
	recs = slices.DeleteFunc(slices.Clone(recs), func(r upstream.Record) bool { return !r.Servable() })
	s.streams++
	for i := range recs {
		if i == 1 && s.fail != nil {
			return s.fail
		}
		r, err := recs[i].Served()
		if err != nil {
			return err
		}
		r.Throughput = s.throughput[r.ID]
		if err := fn(len(recs), &r); err != nil {
			return err
		}
		r = upstream.Served{Choice: upstream.Choice{ExitIP: "poison"}} // a reused value: the pool kept nothing of it
	}
	return nil
}

func streamPool(t *testing.T, recs []upstream.Record, o Options) (*Pool, *streamLoaderT) {
	t.Helper()
	return streamPoolThroughput(t, recs, nil, o)
}

// streamPoolThroughput is streamPool with upstreams' throughput by id.
func streamPoolThroughput(t *testing.T, recs []upstream.Record, throughput map[string]float64, o Options) (*Pool, *streamLoaderT) {
	t.Helper()
	m := &memLoader{}
	m.set(recs)
	sl := &streamLoaderT{memLoader: m, throughput: throughput}
	o.Loader = sl
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sl.streams != 1 {
		t.Fatalf("%d streamed loads, want 1", sl.streams)
	}
	return p, sl
}

// picks is what a client sees of a pool: a run of round-robin picks per
// selector.
func picks(t *testing.T, p *Pool, sels []upstream.Selector) []string {
	t.Helper()
	var out []string
	for _, sel := range sels {
		for range 12 {
			c, err := p.Pick(&sel)
			if err != nil {
				out = append(out, err.Error())
				continue
			}
			out = append(out, fmt.Sprintf("%s %s:%d %s %s %v %v", c.ID, c.Server, c.Port, c.ExitIP, c.Country, c.LatencyMS, c.Options))
		}
	}
	return out
}

func streamFixture() []upstream.Record {
	var recs []upstream.Record
	for i := range 30 {
		r := rec(i, []string{"us", "DE", "fr"}[i%3], fmt.Sprintf("198.51.100.%d", i%7))
		r.Options = map[string]any{"type": "socks5", "server": r.Server, "port": r.Port}
		r.Sources = []string{"list"}
		if i%4 == 0 {
			r.Sources = []string{"list", "subs"}
		}
		if i == 5 {
			r.Group = "tor-a"
		}
		recs = append(recs, r)
	}
	recs = append(recs, recs[3]) // a duplicate: the first counts
	bad := rec(99, "US", "203.0.113.9")
	bad.State = upstream.Failing
	return append(recs, bad)
}

var streamSelectors = []upstream.Selector{{}, {Country: "DE"}, {Group: "subs"}, {Group: "tor-a"}, {Group: "subs", Country: "US"}, {Group: "none"}}

// TestStreamedLoadIsTheSlicedOne: a loader that streams gives the pool the
// snapshot its Healthy slice would (members, order, groups, countries,
// duplicates, unservable records), keeping nothing of the reused record.
func TestStreamedLoadIsTheSlicedOne(t *testing.T) {
	recs := streamFixture()
	o := Options{Groups: []Group{{Name: "subs", Sources: []string{"subs"}}}}
	sliced, _ := newPool(t, recs, o)
	streamed, _ := streamPool(t, recs, o)
	if sliced.Len() != 30 || streamed.Len() != 30 {
		t.Fatalf("pools hold %d (sliced) and %d (streamed) upstreams, want 30", sliced.Len(), streamed.Len())
	}
	if a, b := picks(t, sliced, streamSelectors), picks(t, streamed, streamSelectors); !reflect.DeepEqual(a, b) {
		t.Fatalf("picks differ:\n sliced   %q\n streamed %q", a, b)
	}
}

// TestReloadSharesUnchangedUpstreams: a reload serves what changed (a new
// server, latency, exit, caps, options, sources) and shares every unchanged
// upstream with the previous snapshot instead of copying it; a failed
// streamed load keeps the snapshot serving.
func TestReloadSharesUnchangedUpstreams(t *testing.T) {
	recs := streamFixture()[:30]
	p, sl := streamPool(t, recs, Options{Groups: []Group{{Name: "subs", Sources: []string{"subs"}}}})
	before := p.snap.Load()
	next := append([]upstream.Record(nil), recs...)
	next[1].Server = "10.9.9.9" // and its options, as New keeps them
	next[1].Options = map[string]any{"type": "socks5", "server": next[1].Server, "port": next[1].Port}
	next[2].LatencyMS = 999
	next[3].ExitIP = "203.0.113.3"
	next[4].Options = map[string]any{"type": "socks5", "server": next[4].Server, "port": next[4].Port, "udp": true}
	next[6].Sources = []string{"subs"}
	next[7].Caps = upstream.CapConnect | upstream.CapPipeline
	sl.set(next)
	if err := p.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := p.snap.Load()
	changed := map[int]bool{1: true, 2: true, 3: true, 4: true, 6: true, 7: true}
	for i, r := range next {
		old, cur := before.entries[before.byID[r.ID]], after.entries[after.byID[r.ID]]
		if shared := old.item == cur.item; shared == changed[i] {
			t.Errorf("record %d (changed %v): item shared %v", i, changed[i], shared)
		}
		if old.h != cur.h {
			t.Errorf("record %d: passive health not carried over", i)
		}
		c := cur.choice
		opts, err := c.Decode()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if c.Server != r.Server || c.LatencyMS != r.LatencyMS || c.ExitIP != r.ExitIP || c.Caps != r.Caps || !reflect.DeepEqual(opts, r.Options) ||
			!reflect.DeepEqual(cur.sources, r.Sources) {
			t.Errorf("record %d serves %+v %v, want %+v %v", i, c, cur.sources, r.Upstream, r.Sources)
		}
	}
	seen := map[string]bool{}
	for range 16 {
		c, err := p.Pick(&upstream.Selector{Group: "subs", Country: "US"})
		if err != nil {
			t.Fatal(err)
		}
		seen[c.ID] = true
	}
	if !seen[next[6].ID] {
		t.Errorf("subs ∩ US after the reload never picked %s, listed by subs now: %v", next[6].ID, seen)
	}

	sl.fail = errors.New("disk on fire")
	sl.set(recs[:2])
	if err := p.Load(context.Background()); !errors.Is(err, sl.fail) {
		t.Fatalf("Load = %v, want %v", err, sl.fail)
	}
	if p.snap.Load() != after || p.Len() != 30 {
		t.Fatalf("a failed load replaced the snapshot (%d upstreams)", p.Len())
	}
}
