package pool

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TestOnEject: the hook hears of an upstream once, when its failures in a
// row reach EjectAfter, with the failure that ejected it; a success in
// between starts the count again, and failures of an upstream already out
// report nothing more. This is the one count behind both the pool's
// ejection and the gateway's report to the store.
func TestOnEject(t *testing.T) {
	tests := []struct {
		name     string
		after    int
		outcomes string // per Observe: f failure, o success
		want     []string
	}{
		{"three in a row", 3, "fff", []string{"refused 3"}},
		{"a success resets the count", 3, "ffofff", []string{"refused 6"}},
		{"not enough", 3, "ffoff", nil},
		{"once while out", 2, "ffffff", []string{"refused 2"}},
		{"default after is 3", 0, "ffff", []string{"refused 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := []upstream.Record{rec(0, "US", "198.51.100.1"), rec(1, "US", "198.51.100.2")}
			got := make(chan upstream.CheckResult, 16)
			p, _ := newPool(t, recs, Options{EjectAfter: tt.after, PollInterval: 10 * time.Millisecond,
				OnEject: func(r upstream.CheckResult) { got <- r }})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go p.Run(ctx)
			bad := recs[1].ID
			for i, o := range tt.outcomes {
				r := upstream.CheckResult{ID: bad, Passive: true, OK: o == 'o'}
				if !r.OK {
					r.Cause, r.Detail = upstream.CauseRefused, fmt.Sprintf("refused %d", i+1)
				}
				p.Observe(r)
			}
			p.Observe(upstream.CheckResult{ID: recs[0].ID, Passive: true, Cause: upstream.CauseRefused}) // another upstream's one failure: no report
			var reports []string
			timeout := time.After(300 * time.Millisecond)
		collect:
			for {
				select {
				case r := <-got:
					if r.ID != bad || !r.Passive {
						t.Errorf("report %+v, want a passive result of %s", r, bad)
					}
					reports = append(reports, r.Detail)
				case <-timeout:
					break collect
				}
			}
			if fmt.Sprint(reports) != fmt.Sprint(tt.want) {
				t.Errorf("OnEject heard %q, want %q", reports, tt.want)
			}
		})
	}
}

// TestEjectBudgetPerClient: one client's failures eject at most
// EjectShare of the pool per window; past that its failures do not count
// (so they do not help another client's eject either), other clients keep
// their own budgets, and a new window gives the budget back.
func TestEjectBudgetPerClient(t *testing.T) {
	tests := []struct {
		name   string
		share  float64
		fails  []string // client of each failure, one upstream after another (EjectAfter 1)
		ejects int
	}{
		{"a tenth of 20 is 2", 0.1, []string{"a", "a", "a", "a", "a"}, 2},
		{"another client has its own", 0.1, []string{"a", "a", "a", "b", "b", "b"}, 4},
		{"at least one", 0.01, []string{"a", "a"}, 1},
		{"no address: not budgeted", 0.1, []string{"", "", "", ""}, 4},
		{"default share is a tenth", 0, []string{"a", "a", "a"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var recs []upstream.Record
			for i := range 20 {
				recs = append(recs, rec(i, "US", fmt.Sprintf("198.51.100.%d", i)))
			}
			p, _ := newPool(t, recs, Options{EjectAfter: 1, EjectShare: tt.share})
			for i, c := range tt.fails {
				p.Observe(upstream.CheckResult{ID: recs[i].ID, Passive: true, Cause: upstream.CauseOther, Client: c})
			}
			p.rebuildSnapshot()
			if got := 20 - p.Len(); got != tt.ejects {
				t.Errorf("%d ejected, want %d", got, tt.ejects)
			}
		})
	}
	t.Run("over budget counts nothing", func(t *testing.T) {
		var recs []upstream.Record
		for i := range 10 {
			recs = append(recs, rec(i, "US", fmt.Sprintf("198.51.100.%d", i)))
		}
		p, _ := newPool(t, recs, Options{EjectAfter: 2, EjectShare: 0.1})
		fail := func(i int, c string) {
			p.Observe(upstream.CheckResult{ID: recs[i].ID, Passive: true, Cause: upstream.CauseOther, Client: c})
		}
		fail(0, "a")
		fail(0, "a") // a's one ejection
		fail(1, "a")
		fail(1, "a") // over budget: not counted
		fail(1, "b") // b's first failure on 1 makes two counted: ejects
		p.rebuildSnapshot()
		if p.Len() != 8 {
			t.Fatalf("%d left, want 8 (0 by a, 1 by b)", p.Len())
		}
	})
	t.Run("window ends", func(t *testing.T) {
		var recs []upstream.Record
		for i := range 10 {
			recs = append(recs, rec(i, "US", fmt.Sprintf("198.51.100.%d", i)))
		}
		p, _ := newPool(t, recs, Options{EjectAfter: 1, EjectShare: 0.1, EjectWindow: 50 * time.Millisecond})
		p.Observe(upstream.CheckResult{ID: recs[0].ID, Passive: true, Cause: upstream.CauseOther, Client: "a"})
		p.Observe(upstream.CheckResult{ID: recs[1].ID, Passive: true, Cause: upstream.CauseOther, Client: "a"})
		time.Sleep(60 * time.Millisecond)
		p.Observe(upstream.CheckResult{ID: recs[2].ID, Passive: true, Cause: upstream.CauseOther, Client: "a"})
		p.rebuildSnapshot()
		if p.Len() != 8 {
			t.Fatalf("%d left, want 8 (one ejection per window)", p.Len())
		}
	})
}
