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
}

// Census counts, from the store's one upstream per instance, what each tor
// group has. It reads the same for supervised children (`run`) and tor@
// units, so the metrics need not know which runs them.
func Census(ctx context.Context, st *store.Store) ([]GroupCensus, error) {
	recs, err := st.List(ctx, store.Filter{Source: SourceName})
	if err != nil {
		return nil, err
	}
	by := map[string]*GroupCensus{}
	exits := map[string]map[string]bool{}
	for _, r := range recs {
		c := by[r.Group]
		if c == nil {
			c = &GroupCensus{Group: r.Group}
			by[r.Group], exits[r.Group] = c, map[string]bool{}
		}
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
