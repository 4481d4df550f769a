package pool

import (
	"context"
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
	sliced.Observe(upstream.CheckResult{ID: recs[0].ID, Passive: true, Err: "refused"})
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
