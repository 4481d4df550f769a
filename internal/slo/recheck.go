package slo

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// DefaultMaxRecheck is how many upstreams one Recheck makes due at most.
const DefaultMaxRecheck = 1024

// StoreRechecker is a Rechecker over the store: it makes a group's failing
// and dead upstreams due now, so the probe (which picks up due upstreams
// within about a second) re-checks them instead of waiting for their
// backoff. Failing ones go first, then dead ones that were healthy most
// recently; upstreams already due are left alone.
type StoreRechecker struct {
	// List returns the upstreams in one state: the store's List with
	// Filter{State: state}.
	List func(ctx context.Context, state upstream.State) ([]upstream.Record, error)
	// Reschedule is the store's Reschedule.
	Reschedule func(ctx context.Context, ids []string, at time.Time) error
	Groups     []Group          // membership by name; PoolName means every upstream
	Max        int              // DefaultMaxRecheck
	Now        func() time.Time // time.Now
}

// Recheck makes up to Max of the group's failing and dead upstreams due now
// and returns how many.
func (s *StoreRechecker) Recheck(ctx context.Context, group string) (int, error) {
	in := func(*upstream.Record) bool { return true }
	if group != PoolName {
		i := slices.IndexFunc(s.Groups, func(g Group) bool { return g.Name == group })
		if i < 0 {
			return 0, fmt.Errorf("re-checking group %q: %w", group, errUnknownGroup)
		}
		in = s.Groups[i].member()
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	t := now()
	var failing, dead []upstream.Record
	for _, st := range []upstream.State{upstream.Failing, upstream.Dead} {
		recs, err := s.List(ctx, st)
		if err != nil {
			return 0, fmt.Errorf("listing %s upstreams: %w", st, err)
		}
		for i := range recs {
			r := &recs[i]
			if r.State != st || !r.NextCheck.After(t) || !in(r) {
				continue
			}
			if st == upstream.Failing {
				failing = append(failing, *r)
			} else {
				dead = append(dead, *r)
			}
		}
	}
	slices.SortFunc(dead, func(a, b upstream.Record) int {
		if c := b.LastOK.Compare(a.LastOK); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	max := s.Max
	if max <= 0 {
		max = DefaultMaxRecheck
	}
	ids := make([]string, 0, min(max, len(failing)+len(dead)))
	for _, r := range append(failing, dead...) {
		if len(ids) == max {
			break
		}
		ids = append(ids, r.ID)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	if err := s.Reschedule(ctx, ids, t); err != nil {
		return 0, fmt.Errorf("rescheduling %d upstreams: %w", len(ids), err)
	}
	return len(ids), nil
}
