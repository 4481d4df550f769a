package torops

import (
	"context"
	"sort"

	"github.com/proxypool/proxypool/internal/store"
)

// GroupCensus is one tor group's instances as the probe last saw them.
type GroupCensus struct {
	Group     string
	Instances int // upstreams of source "tor" in the group
	Working   int // bootstrapped and carrying traffic
	Exits     int // distinct exit IPs of the working ones
	// Planned is how many instances the last plan gave the group, Short
	// how many of its share it went without (tor.max-instances taken): a
	// starved group is listed with Instances 0, so an alert can see it.
	Planned, Short int
	Usable         int // usable exits the last discovery found for it
}

// Census counts, from the store's one upstream per instance, what each tor
// group has, and from the last plan what it was given and went without.
// It reads the same for supervised children (`run`) and tor@ units, so the
// metrics need not know which runs them.
func Census(ctx context.Context, st *store.Store) ([]GroupCensus, error) {
	recs, err := st.List(ctx, store.Filter{Source: SourceName})
	if err != nil {
		return nil, err
	}
	plans, err := st.TorGroups(ctx)
	if err != nil {
		return nil, err
	}
	by := map[string]*GroupCensus{}
	exits := map[string]map[string]bool{}
	group := func(g string) *GroupCensus {
		c := by[g]
		if c == nil {
			c = &GroupCensus{Group: g}
			by[g], exits[g] = c, map[string]bool{}
		}
		return c
	}
	for g, p := range plans {
		if p.Planned > 0 || p.Short > 0 || p.Usable > 0 {
			c := group(g)
			c.Planned, c.Short, c.Usable = p.Planned, p.Short, p.Usable
		}
	}
	for _, r := range recs {
		c := group(r.Group)
		c.Instances++
		if r.Servable() {
			c.Working++
			if r.ExitIP != "" && !exits[r.Group][r.ExitIP] {
				exits[r.Group][r.ExitIP] = true
				c.Exits++
			}
		}
	}
	out := make([]GroupCensus, 0, len(by))
	for _, c := range by {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out, nil
}
