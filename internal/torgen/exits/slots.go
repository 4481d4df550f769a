package exits

import (
	"fmt"
	"hash/fnv"
	"net"
	"slices"
	"sort"
	"strings"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Mode is how a group's exits become tor instances.
type Mode string

// The port modes.
const (
	// ModeCountry: one instance per group, ExitNodes {cc},{cc}… with StrictNodes.
	ModeCountry Mode = "country"
	// ModeGrouped: the group's /16 ranges spread over its instances
	// (Spread), ExitNodes the ranges as CIDRs, ExcludeExitNodes the
	// countries outside the group.
	ModeGrouped Mode = "grouped"
	// ModeSingle: one instance per exit relay, ExitNodes $FINGERPRINT.
	ModeSingle Mode = "single"
)

// ParseMode checks a configured mode name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case ModeCountry, ModeGrouped, ModeSingle:
		return m, nil
	case "":
		return ModeCountry, nil
	}
	return "", fmt.Errorf("tor mode %q: want country, grouped or single", s)
}

// Group is a configured geo group: exits in Countries (if any), and not in
// ExcludeCountries. Mode "" means the caller's default.
type Group struct {
	Name             string
	Countries        []string
	ExcludeCountries []string
	Mode             Mode
}

// Match reports whether relay r belongs to the group. A relay of unknown
// country matches no group that names countries, and no exclude-only group
// either (an unknown country could be an excluded one).
func (g Group) Match(r upstream.Relay) bool {
	cc := strings.ToUpper(r.Country)
	if cc == "" || cc == "??" {
		return false
	}
	if len(g.Countries) > 0 && !containsFold(g.Countries, cc) {
		return false
	}
	return !containsFold(g.ExcludeCountries, cc)
}

// Slot is one tor instance to be: its stable Key (which the port is bound
// to), the group it serves and its exit selection.
type Slot struct {
	Key              string // "country/us", "grouped/us/104.53.0.0/16", "single/us/<FP>"
	Group            string
	Mode             Mode
	ExitNodes        []string // torrc ExitNodes entries, one per element
	ExcludeExitNodes []string
	Relays           []upstream.Relay // the usable exits behind it
	Bandwidth        int64            // sum over Relays
	Port             int              // set by AssignPorts
}

// Slots turns the usable exits into slots for every group, in a
// deterministic order. def is the mode of groups that name none. A group
// with no matching exit yields no slot (and is listed in empty).
func Slots(groups []Group, relays []upstream.Relay, def Mode) (slots []Slot, empty []string, err error) {
	usable := UsableExits(relays)
	for _, g := range groups {
		if g.Name == "" || strings.ContainsAny(g.Name, "/ \t\n") {
			return nil, nil, fmt.Errorf("tor group %q: name must be non-empty without spaces or slashes", g.Name)
		}
		mode := g.Mode
		if mode == "" {
			mode = def
		}
		mode, err := ParseMode(string(mode))
		if err != nil {
			return nil, nil, fmt.Errorf("tor group %s: %w", g.Name, err)
		}
		var mine []upstream.Relay
		for _, r := range usable {
			if g.Match(r) {
				mine = append(mine, r)
			}
		}
		if len(mine) == 0 {
			empty = append(empty, g.Name)
			continue
		}
		exclude := braces(g.ExcludeCountries)
		switch mode {
		case ModeCountry:
			ccs := g.Countries
			if len(ccs) == 0 {
				seen := map[string]bool{}
				for _, r := range mine {
					if !seen[r.Country] {
						seen[r.Country] = true
						ccs = append(ccs, r.Country)
					}
				}
			}
			slots = append(slots, newSlot("country/"+g.Name, g.Name, mode, braces(ccs), exclude, mine))
		case ModeGrouped:
			// One slot per /16 of the group's exits, ExitNodes the range
			// itself: an exit that joins the range later is used too. The
			// countries outside the group are excluded, so an exit of
			// another country in a shared /16 is never used (StrictNodes).
			outside := outsideCountries(g, relays)
			buckets := map[string][]upstream.Relay{}
			for _, r := range mine {
				b := slash16(r.Address)
				buckets[b] = append(buckets[b], r)
			}
			for b, rs := range buckets {
				slots = append(slots, newSlot("grouped/"+g.Name+"/"+b, g.Name, mode, []string{b}, outside, rs))
			}
		case ModeSingle:
			for _, r := range mine {
				var key, node string
				if r.Fingerprint != "" {
					key, node = r.Fingerprint, "$"+r.Fingerprint
				} else { // CSV exports carry no fingerprint: fall back to the address
					key, node = r.Address, r.Address+"/32"
				}
				slots = append(slots, newSlot("single/"+g.Name+"/"+key, g.Name, mode, []string{node}, nil, []upstream.Relay{r}))
			}
		}
	}
	// Deterministic order: by key, merging duplicate keys (a relay listed twice).
	sort.SliceStable(slots, func(i, j int) bool { return slots[i].Key < slots[j].Key })
	out := slots[:0]
	for _, s := range slots {
		if n := len(out); n > 0 && out[n-1].Key == s.Key {
			continue
		}
		out = append(out, s)
	}
	return out, empty, nil
}

func newSlot(key, group string, mode Mode, exit, exclude []string, rs []upstream.Relay) Slot {
	s := Slot{Key: key, Group: group, Mode: mode, ExitNodes: exit, ExcludeExitNodes: exclude, Relays: rs}
	sortRelays(s.Relays)
	for _, r := range rs {
		s.Bandwidth += r.Bandwidth
	}
	return s
}

// Ports is the port range and instance cap for AssignPorts.
type Ports struct {
	Base, Max    int   // inclusive range
	MaxInstances int   // 0: no cap beyond the range
	Reserved     []int // ports in the range something else listens on (gateway, metrics)
	// Budget is single groups' instances (the floor, tor-instances, the
	// SLO guard's raise): reserved for the group before the rest is
	// shared, and its cap. A group missing from it, or at 0, takes a
	// bandwidth share of the rest (Allot).
	Budget map[string]int
}

// limit is how many instances fit: the free ports, at most MaxInstances.
func (p Ports) limit() int {
	n := p.Max - p.Base + 1
	rs := slices.Clone(p.Reserved)
	slices.Sort(rs)
	for _, r := range slices.Compact(rs) {
		if r >= p.Base && r <= p.Max {
			n--
		}
	}
	if p.MaxInstances > 0 && p.MaxInstances < n {
		n = p.MaxInstances
	}
	return max(n, 0)
}

// Held is the port a slot's generated torrc pins now.
type Held struct {
	Port int
	// Hashed: the port came from this assignment (torrc.HashedPorts). A
	// file of the older lowest-free-port scheme still counts as running
	// (its slot keeps its place in the selection) but its port is
	// migrated to the hashed one.
	Hashed bool
}

// AssignPorts chooses the slots that get an instance and gives each a
// port. Selection: each group gets its share (Allot); within a group the
// slots that hold a port (in held) come first, then the highest
// bandwidth. The rest are returned in dropped, without a port; a held
// slot of a group over its share is dropped too (its port given up).
//
// Ports are stateless: a slot's port is a function of its key (group and
// exit identity), see HashedPort, so two hosts with the same relay list
// agree. A slot whose hashed port is taken (a hash collision, resolved in
// key order) takes its next-ranked port; a slot that already holds a
// hashed port keeps it, so an exit leaving never moves another's port.
// Kept slots come back sorted by port.
func AssignPorts(slots []Slot, held map[string]Held, p Ports) (kept, dropped []Slot, err error) {
	if p.Base < 1 || p.Max > 65535 || p.Max < p.Base {
		return nil, nil, fmt.Errorf("tor port range %d-%d is invalid", p.Base, p.Max)
	}
	reserved := map[int]bool{}
	for _, r := range p.Reserved {
		if r >= p.Base && r <= p.Max {
			reserved[r] = true
		}
	}
	share := map[string]int{}
	for _, sh := range Allot(slots, p) {
		share[sh.Group] = sh.Got
	}
	order := slices.Clone(slots)
	sort.SliceStable(order, func(i, j int) bool {
		_, hi := held[order[i].Key]
		_, hj := held[order[j].Key]
		if hi != hj {
			return hi
		}
		return order[i].Bandwidth > order[j].Bandwidth
	})
	var chosen []Slot
	for _, s := range order {
		if share[s.Group] == 0 {
			dropped = append(dropped, s)
			continue
		}
		share[s.Group]--
		chosen = append(chosen, s)
	}
	kept = placePorts(chosen, held, p.Base, p.Max, reserved)
	sort.Slice(kept, func(i, j int) bool { return kept[i].Port < kept[j].Port })
	sort.Slice(dropped, func(i, j int) bool { return dropped[i].Key < dropped[j].Key })
	return kept, dropped, nil
}

// placePorts gives each chosen slot (at most as many as free ports) its
// port: the hashed one it holds, else its best-ranked free one, slots in
// key order so the outcome does not depend on the input's order.
func placePorts(chosen []Slot, held map[string]Held, base, pmax int, reserved map[int]bool) []Slot {
	used := map[int]bool{}
	for p := range reserved {
		used[p] = true
	}
	var rest []int
	for i, s := range chosen {
		h, ok := held[s.Key]
		if ok && h.Hashed && h.Port >= base && h.Port <= pmax && !used[h.Port] {
			chosen[i].Port = h.Port
			used[h.Port] = true
			continue
		}
		rest = append(rest, i)
	}
	sort.Slice(rest, func(a, b int) bool { return chosen[rest[a]].Key < chosen[rest[b]].Key })
	for _, i := range rest {
		chosen[i].Port = HashedPort(chosen[i].Key, base, pmax, used)
		used[chosen[i].Port] = true
	}
	return chosen
}

// HashedPort is the port in [base, pmax] that ranks highest for key among
// those not in used (rendezvous hashing: each port scores hash(key, port)),
// 0 when every port is used. Growing or shrinking the range moves only the
// keys whose best port is the one added or removed.
func HashedPort(key string, base, pmax int, used map[int]bool) int {
	k := fnv.New64a()
	k.Write([]byte(key))
	seed := k.Sum64()
	best, bestScore := 0, uint64(0)
	for port := base; port <= pmax; port++ {
		if used[port] {
			continue
		}
		if sc := mix64(seed ^ uint64(port)*0x9E3779B97F4A7C15); best == 0 || sc > bestScore {
			best, bestScore = port, sc
		}
	}
	return best
}

// mix64 is SplitMix64's finalizer: every input bit moves every output
// bit, so neighbouring ports score independently.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func braces(ccs []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range ccs {
		c = strings.ToLower(strings.TrimSpace(c))
		if c == "" || seen[c] {
			continue
		}
		seen[c] = true
		out = append(out, "{"+c+"}") // one {} per country: tor rejects {de,nl}
	}
	sort.Strings(out)
	return out
}

func slash16(ip string) string {
	v4 := net.ParseIP(ip).To4()
	if v4 == nil {
		return ip
	}
	return fmt.Sprintf("%d.%d.0.0/16", v4[0], v4[1])
}

// sortRelays orders relays by address, then fingerprint.
func sortRelays(rs []upstream.Relay) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Address != rs[j].Address {
			return ipLess(rs[i].Address, rs[j].Address)
		}
		return rs[i].Fingerprint < rs[j].Fingerprint
	})
}

func ipLess(a, b string) bool {
	pa := net.ParseIP(strings.TrimSuffix(a, "/32")).To4()
	pb := net.ParseIP(strings.TrimSuffix(b, "/32")).To4()
	if pa == nil || pb == nil {
		return a < b
	}
	return string(pa) < string(pb)
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(strings.TrimSpace(x), s) {
			return true
		}
	}
	return false
}
