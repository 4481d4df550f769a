package exits

import (
	"hash/fnv"
	"net"
	"slices"
	"sort"
	"strings"

	"github.com/proxypool/proxypool/internal/upstream"
)

// outsideCountries is a grouped slot's ExcludeExitNodes: the group's own
// exclude-countries and every country of a relay in the list (any flags:
// a relay may become an exit later) that the group does not take. Relays
// of unknown country need no entry: tor's GeoIPExcludeUnknown (auto)
// excludes them as soon as any country is excluded.
func outsideCountries(g Group, relays []upstream.Relay) []string {
	out := slices.Clone(g.ExcludeCountries)
	for _, r := range relays {
		cc := strings.ToUpper(strings.TrimSpace(r.Country))
		if len(cc) != 2 || cc == "??" {
			continue
		}
		if !g.Match(upstream.Relay{Country: cc}) {
			out = append(out, cc)
		}
	}
	return braces(out)
}

// Spread hands the /16 ranges of grouped slots that got no instance
// (dropped) to their group's slots that did (kept): each range goes to the
// kept slot of its group that ranks highest for it (rendezvous hashing over
// the two keys). Every range of a group with an instance is then served;
// an added instance takes over only the ranges that now rank it first, and
// no slot changes its key, so no port moves. The kept slots come back in
// their order with their ExitNodes, Relays and Bandwidth extended; slots of
// the other modes are returned as they were.
func Spread(kept, dropped []Slot) []Slot {
	anchors := map[string][]int{} // group → indexes of its kept grouped slots
	for i, s := range kept {
		if s.Mode == ModeGrouped {
			anchors[s.Group] = append(anchors[s.Group], i)
		}
	}
	out := slices.Clone(kept)
	grown := map[int]bool{}
	for _, d := range dropped {
		idx := anchors[d.Group]
		if d.Mode != ModeGrouped || len(idx) == 0 {
			continue
		}
		best, bestScore := -1, uint64(0)
		for _, i := range idx {
			if sc := rank(d.Key, out[i].Key); best < 0 || sc > bestScore {
				best, bestScore = i, sc
			}
		}
		if !grown[best] {
			grown[best] = true
			out[best].ExitNodes = slices.Clone(out[best].ExitNodes)
			out[best].Relays = slices.Clone(out[best].Relays)
		}
		out[best].ExitNodes = append(out[best].ExitNodes, d.ExitNodes...)
		out[best].Relays = append(out[best].Relays, d.Relays...)
		out[best].Bandwidth += d.Bandwidth
	}
	for i := range grown {
		s := &out[i]
		sort.Slice(s.ExitNodes, func(a, b int) bool { return cidrLess(s.ExitNodes[a], s.ExitNodes[b]) })
		sortRelays(s.Relays)
	}
	return out
}

// rank scores the pair (a range's slot key, an instance's slot key).
func rank(rangeKey, slotKey string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(rangeKey))
	h.Write([]byte{0})
	h.Write([]byte(slotKey))
	return mix64(h.Sum64())
}

// cidrLess orders "a.b.0.0/16" (or bare addresses) by address.
func cidrLess(a, b string) bool {
	ip := func(s string) net.IP {
		h, _, _ := strings.Cut(s, "/")
		return net.ParseIP(h).To16()
	}
	pa, pb := ip(a), ip(b)
	if pa == nil || pb == nil {
		return a < b
	}
	return string(pa) < string(pb)
}
