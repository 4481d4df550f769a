package pool

import (
	"errors"
	"fmt"
	"testing"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TestReconfigure is a config reload reaching a running pool: the strategy
// and the groups change for the next picks, with no store reload.
func TestReconfigure(t *testing.T) {
	var recs []upstream.Record
	for i := range 40 {
		recs = append(recs, rec(i, []string{"US", "DE"}[i%2], fmt.Sprintf("198.51.100.%d", i)))
	}
	p, _ := newPool(t, recs, Options{Groups: []Group{{Name: "us", Countries: []string{"US"}}}})
	distinct := func(pk interface {
		Pick(*upstream.Selector) (upstream.Choice, error)
	}, group string) int {
		seen := map[string]bool{}
		for range 200 {
			c, err := pk.Pick(&upstream.Selector{Group: group, Client: "127.0.0.1"})
			if err != nil {
				t.Fatal(err)
			}
			seen[c.ID] = true
		}
		return len(seen)
	}
	if n := distinct(p, ""); n < 40 {
		t.Fatalf("round-robin used %d of 40 upstreams", n)
	}
	// A reload's new strategy is a new picker over the same snapshots
	// (the gateway's SetRoute / SetPorts take it): nothing reloads.
	sticky, err := p.NewPicker(Sticky, Rotation{})
	if err != nil {
		t.Fatal(err)
	}
	if n := distinct(sticky, ""); n != 1 {
		t.Fatalf("a sticky picker: one client used %d upstreams, want 1", n)
	}
	if _, err := p.NewPicker("fastest", Rotation{}); err == nil {
		t.Fatal("NewPicker took an unknown strategy")
	}
	if n := distinct(sticky, ""); n != 1 {
		t.Fatalf("a refused NewPicker changed the sticky picker: %d upstreams", n)
	}
	if n := distinct(p, ""); n < 40 {
		t.Fatalf("the pool's own picker changed with a new one: %d of 40 upstreams", n)
	}

	if err := p.SetGroups([]Group{{Name: "de", Countries: []string{"DE"}}}); err != nil {
		t.Fatal(err)
	}
	c, err := p.Pick(&upstream.Selector{Group: "de"})
	if err != nil || c.Country != "DE" {
		t.Fatalf("the group added by SetGroups: %+v, %v", c, err)
	}
	if _, err := p.Pick(&upstream.Selector{Group: "us"}); !errors.Is(err, upstream.ErrUnknownGroup) {
		t.Fatalf("the group SetGroups removed: %v, want unknown group", err)
	}
	if err := p.SetGroups([]Group{{Name: "x"}, {Name: "x"}}); err == nil {
		t.Fatal("SetGroups took a group defined twice")
	}
}
