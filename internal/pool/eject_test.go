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
