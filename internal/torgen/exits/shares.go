package exits

import (
	"sort"
)

// Share is one group's part of tor.max-instances in a plan.
type Share struct {
	Group string
	Slots int // slots it could use (exits, /16 ranges, one per country group)
	// Reserve is its budget: instances set aside for it before the rest
	// is shared, and also its cap (floor, tor-instances or the SLO
	// guard's raise; 0: none, it takes a bandwidth share of the rest).
	Reserve int
	Want    int // what it should get: min(Reserve, Slots), or at least 1 of the rest
	Got     int // what it gets
}

// Short is how many instances of its share the group goes without.
func (s Share) Short() int { return max(s.Want-s.Got, 0) }

// Allot splits the instance limit (tor.max-instances within the free
// ports) across the groups of slots: each group with a budget
// (Ports.Budget) is given min(budget, slots) first (when those alone pass
// the limit, levelled so the smallest are served whole); every other group
// then gets one instance, and the rest goes by the groups' exit bandwidth
// (highest averages, so a group with a third of the bandwidth gets about a
// third). Groups come back sorted by name.
func Allot(slots []Slot, p Ports) []Share {
	by := map[string]*Share{}
	bw := map[string]int64{}
	for _, s := range slots {
		sh := by[s.Group]
		if sh == nil {
			sh = &Share{Group: s.Group, Reserve: max(p.Budget[s.Group], 0)}
			by[s.Group] = sh
		}
		sh.Slots++
		bw[s.Group] += s.Bandwidth
	}
	var budgeted, open []*Share
	for _, sh := range by {
		if sh.Reserve > 0 {
			sh.Want = min(sh.Reserve, sh.Slots)
			budgeted = append(budgeted, sh)
		} else {
			sh.Want = 1
			open = append(open, sh)
		}
	}
	byName := func(l []*Share) {
		sort.Slice(l, func(i, j int) bool { return l[i].Group < l[j].Group })
	}
	byName(budgeted)
	byName(open)
	left := level(budgeted, p.limit())
	// Every open group one first, the heaviest first; then the highest
	// average bandwidth per instance takes the next one.
	sort.SliceStable(open, func(i, j int) bool { return bw[open[i].Group] > bw[open[j].Group] })
	for _, sh := range open {
		if left == 0 {
			break
		}
		sh.Got++
		left--
	}
	for ; left > 0; left-- {
		var best *Share
		for _, sh := range open {
			if sh.Got >= sh.Slots {
				continue
			}
			// bw/(got+1) > best's, compared without division
			if best == nil || bw[sh.Group]*int64(best.Got+1) > bw[best.Group]*int64(sh.Got+1) {
				best = sh
			}
		}
		if best == nil {
			break
		}
		best.Got++
	}
	out := make([]Share, 0, len(by))
	for _, sh := range by {
		if sh.Reserve == 0 {
			sh.Want = max(sh.Want, sh.Got)
		}
		out = append(out, *sh)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out
}

// level gives each budgeted group its Want when they fit in limit, else
// the same level L to all (less to those that want less), the remainder
// one each in name order; it returns what is left of limit.
func level(groups []*Share, limit int) int {
	total := 0
	for _, sh := range groups {
		total += sh.Want
	}
	if total <= limit {
		for _, sh := range groups {
			sh.Got = sh.Want
		}
		return limit - total
	}
	// The highest level whose sum fits.
	lvl := 0
	for {
		sum := 0
		for _, sh := range groups {
			sum += min(sh.Want, lvl+1)
		}
		if sum > limit {
			break
		}
		lvl++
	}
	left := limit
	for _, sh := range groups {
		sh.Got = min(sh.Want, lvl)
		left -= sh.Got
	}
	for _, sh := range groups {
		if left > 0 && sh.Want > sh.Got {
			sh.Got++
			left--
		}
	}
	return left
}
