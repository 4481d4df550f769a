package pool

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// servedLoader streams fixed upstream.Served values, targets included,
// as the store's GatewayHealthy does.
type servedLoader struct{ served []upstream.Served }

func (l *servedLoader) Healthy(context.Context) ([]upstream.Record, error) { return nil, nil }
func (l *servedLoader) Version(context.Context) (uint64, error)            { return 1, nil }
func (l *servedLoader) GatewayHealthy(_ context.Context, fn func(int, *upstream.Served) error) error {
	for i := range l.served {
		r := l.served[i]
		if err := fn(len(l.served), &r); err != nil {
			return err
		}
	}
	return nil
}

// TestRequireTargets: a group requiring a target and a request naming
// one ("-target-") get only upstreams whose result passes and has not
// expired, at the pick, not only at the load.
func TestRequireTargets(t *testing.T) {
	now := time.Now()
	const soon = 300 * time.Millisecond
	pass := func(name string, d time.Duration) upstream.TargetPass {
		return upstream.TargetPass{Name: name, Until: now.Add(d)}
	}
	served := func(i int, ts ...upstream.TargetPass) upstream.Served {
		r := rec(i, "US", "")
		s, err := r.Served()
		if err != nil {
			t.Fatal(err)
		}
		s.Targets = ts
		return s
	}
	ups := []upstream.Served{
		served(0, pass("imot", time.Hour)), // passes
		served(1, pass("imot", soon)),      // passes, expires during the test
		served(2),                          // never checked (or failed)
		served(3, pass("shop", time.Hour)), // another target only
		served(4, pass("imot", time.Hour), pass("shop", time.Hour)), // both
	}
	p, err := New(Options{Loader: &servedLoader{ups}, Groups: []Group{
		{Name: "scrape", RequireTargets: []string{"imot"}},
		{Name: "us", Countries: []string{"US"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := func(i int) string { return ups[i].ID }
	cases := []struct {
		name  string
		sel   upstream.Selector
		want  []int // upstreams that may serve, before the expiry
		after []int // and after it
	}{
		{"group requiring imot", upstream.Selector{Group: "scrape"}, []int{0, 1, 4}, []int{0, 4}},
		{"-target-imot", upstream.Selector{Targets: []string{"imot"}}, []int{0, 1, 4}, []int{0, 4}},
		{"-target-imot in group us", upstream.Selector{Group: "us", Targets: []string{"imot"}}, []int{0, 1, 4}, []int{0, 4}},
		{"two targets", upstream.Selector{Targets: []string{"imot", "shop"}}, []int{4}, []int{4}},
		{"unchecked target", upstream.Selector{Targets: []string{"nosuch"}}, nil, nil},
		{"no target", upstream.Selector{}, []int{0, 1, 2, 3, 4}, []int{0, 1, 2, 3, 4}},
	}
	check := func(phase string, pick func(c int) []int) {
		for c, tc := range cases {
			want := pick(c)
			allowed := map[string]bool{}
			for _, i := range want {
				allowed[id(i)] = true
			}
			seen := map[string]bool{}
			for range 200 {
				sel := tc.sel
				ch, err := p.Pick(&sel)
				if len(want) == 0 {
					if !errors.Is(err, upstream.ErrNoUpstream) {
						t.Errorf("%s, %s: picked %s, %v; want ErrNoUpstream", phase, tc.name, ch.ID, err)
					}
					break
				}
				if err != nil {
					t.Fatalf("%s, %s: %v", phase, tc.name, err)
				}
				if !allowed[ch.ID] {
					t.Fatalf("%s, %s: picked %s, which does not pass", phase, tc.name, ch.ID)
				}
				seen[ch.ID] = true
			}
			if len(want) > 0 && len(seen) != len(want) {
				t.Errorf("%s, %s: 200 picks used %d upstreams, want all %d passing", phase, tc.name, len(seen), len(want))
			}
		}
	}
	check("before expiry", func(c int) []int { return cases[c].want })
	time.Sleep(time.Until(now.Add(soon + 50*time.Millisecond)))
	check("after expiry", func(c int) []int { return cases[c].after })
}
