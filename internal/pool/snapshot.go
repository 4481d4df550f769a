package pool

import (
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Group selects upstreams by exit country, kind and source, plus the
// upstreams whose own Group field names it and those listed by ID. A group
// with no filter at all holds only its explicit members.
type Group struct {
	Name             string
	Countries        []string // exit countries (ISO alpha-2); empty for any
	ExcludeCountries []string
	Types            []string // upstream kinds (socks5, vmess, tor, …); empty for any
	Sources          []string // source names; empty for any
	IDs              []string // explicit upstream IDs (a pinned single exit)
}

func (g Group) filtered() bool {
	return len(g.Countries)+len(g.ExcludeCountries)+len(g.Types)+len(g.Sources) > 0
}

func (g Group) matches(r *upstream.Record) bool {
	if r.Group != "" && r.Group == g.Name {
		return true
	}
	if slices.Contains(g.IDs, r.ID) {
		return true
	}
	if !g.filtered() {
		return false
	}
	if len(g.Countries) > 0 && !containsFold(g.Countries, r.Country) {
		return false
	}
	if containsFold(g.ExcludeCountries, r.Country) {
		return false
	}
	if len(g.Types) > 0 && !containsFold(g.Types, string(r.Type)) {
		return false
	}
	if len(g.Sources) > 0 {
		ok := false
		for _, s := range r.Sources {
			if slices.Contains(g.Sources, s) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// health is this gateway's passive view of one upstream; it survives
// snapshot swaps.
type health struct {
	fails     atomic.Int32
	ejectedAt atomic.Int64  // unix nanos; 0 when not ejected
	latency   atomic.Uint64 // float64 bits: EWMA of dial latency (ms); 0 unknown
}

func (h *health) latencyMS() float64 { return math.Float64frombits(h.latency.Load()) }

type entry struct {
	choice  upstream.Choice
	sources []string // for group matching when rebuilt after an ejection
	h       *health
	exit    int32 // index of its distinct exit IP in the snapshot
}

// record is the part of a loaded record a rebuild needs, back in Record
// form: the snapshot keeps entries, not the (much larger) records.
func (e *entry) record() upstream.Record {
	return upstream.Record{Upstream: e.choice.Upstream, Sources: e.sources, Status: upstream.Status{
		State: upstream.Healthy, ExitIP: e.choice.ExitIP, Country: e.choice.Country, LatencyMS: e.choice.LatencyMS}}
}

// latency is the EWMA the least-latency strategy compares: the gateway's
// own observations when it has any, else the probe's.
func (e *entry) latency() float64 {
	if l := e.h.latencyMS(); l > 0 {
		return l
	}
	if e.choice.LatencyMS > 0 {
		return e.choice.LatencyMS
	}
	return 1e9
}

// view is one selectable subset (all, a group, a country, or both), its
// entries bucketed by distinct exit IP so that rotation spreads over exits.
type view struct {
	exits [][]int32
	n     int
	rr    atomic.Uint64

	ringOnce sync.Once
	ring     []ringPoint
}

// snapshot is immutable once published, except for the round-robin
// counters and lazily built views/rings.
type snapshot struct {
	version uint64
	entries []entry
	byID    map[string]int32
	all     *view
	groups  map[string]*view
	country map[string]*view
	combos  sync.Map // group+"\x00"+country → *view
	known   map[string]bool
	// ejected are the servable upstreams left out because ejected: with
	// entries, what a rebuild after an ejection starts from.
	ejected []entry

	mu  sync.Mutex // lazy combos: guards pos
	pos []int32    // scratch for newView
}

// newView buckets idx by exit. pos is scratch space with one slot per
// distinct exit in the snapshot, all -1; it is left that way.
func newView(entries []entry, idx []int32, pos []int32) *view {
	v := &view{n: len(idx)}
	for _, i := range idx {
		x := entries[i].exit
		p := pos[x]
		if p < 0 {
			p = int32(len(v.exits))
			pos[x] = p
			v.exits = append(v.exits, nil)
		}
		v.exits[p] = append(v.exits[p], i)
	}
	for _, i := range idx {
		pos[entries[i].exit] = -1
	}
	return v
}

// build makes a snapshot of the servable records rec(0) … rec(n-1) (rec
// may reuse one Record), skipping excluded ones. known seeds the group
// names that exist even with no servable member.
func build(version uint64, n int, rec func(i int) *upstream.Record, known map[string]bool, groups []Group,
	healthOf func(id string) *health, excluded func(r *upstream.Record, h *health) bool) *snapshot {
	s := &snapshot{
		version: version,
		entries: make([]entry, 0, n),
		byID:    make(map[string]int32, n),
		groups:  make(map[string]*view, len(groups)),
		country: map[string]*view{},
		known:   make(map[string]bool, len(known)+len(groups)),
	}
	for g := range known {
		s.known[g] = true
	}
	all := make([]int32, 0, n)
	gidx := make(map[string][]int32, len(groups))
	cidx := map[string][]int32{}
	for _, g := range groups {
		s.known[g.Name] = true
	}
	exits := make(map[string]int32, n)
	var ejected map[string]bool // ids in s.ejected
	for i := range n {
		r := rec(i)
		if r.Group != "" {
			s.known[r.Group] = true
		}
		if !r.Status.Servable() {
			continue
		}
		if _, dup := s.byID[r.ID]; dup {
			continue
		}
		h := healthOf(r.ID)
		if excluded(r, h) {
			if !ejected[r.ID] {
				if ejected == nil {
					ejected = map[string]bool{}
				}
				ejected[r.ID] = true
				s.ejected = append(s.ejected, entry{choice: upstream.Choice{Upstream: r.Upstream, ExitIP: r.ExitIP,
					Country: r.Country, LatencyMS: r.LatencyMS}, sources: r.Sources, h: h})
			}
			continue
		}
		n := int32(len(s.entries))
		x := int32(len(exits))
		if r.ExitIP == "" {
			exits["id:"+r.ID] = x
		} else if old, ok := exits[r.ExitIP]; ok {
			x = old
		} else {
			exits[r.ExitIP] = x
		}
		s.entries = append(s.entries, entry{
			choice:  upstream.Choice{Upstream: r.Upstream, ExitIP: r.ExitIP, Country: strings.ToUpper(r.Country), LatencyMS: r.LatencyMS},
			sources: r.Sources,
			h:       h,
			exit:    x,
		})
		s.byID[r.ID] = n
		all = append(all, n)
		if r.Country != "" {
			c := strings.ToUpper(r.Country)
			cidx[c] = append(cidx[c], n)
		}
		if r.Group != "" {
			gidx[r.Group] = append(gidx[r.Group], n)
		}
		for gi := range groups {
			g := &groups[gi]
			if g.Name != r.Group && g.matches(r) {
				gidx[g.Name] = append(gidx[g.Name], n)
			}
		}
	}
	s.pos = make([]int32, len(exits))
	for i := range s.pos {
		s.pos[i] = -1
	}
	s.all = newView(s.entries, all, s.pos)
	for name, idx := range gidx {
		s.groups[name] = newView(s.entries, idx, s.pos)
	}
	for c, idx := range cidx {
		s.country[c] = newView(s.entries, idx, s.pos)
	}
	return s
}

var emptyView = &view{}

// viewFor returns the view for a group and country; ok is false for an
// unknown group.
func (s *snapshot) viewFor(group, country string) (*view, bool) {
	switch {
	case group == "" && country == "":
		return s.all, true
	case country == "":
		v, ok := s.groups[group]
		if !ok {
			return emptyView, s.known[group]
		}
		return v, true
	case group == "":
		v, ok := s.country[country]
		if !ok {
			return emptyView, true
		}
		return v, true
	}
	g, ok := s.groups[group]
	if !ok {
		return emptyView, s.known[group]
	}
	key := group + "\x00" + country
	if v, ok := s.combos.Load(key); ok {
		return v.(*view), true
	}
	var idx []int32
	for _, e := range g.exits {
		for _, i := range e {
			if s.entries[i].choice.Country == country {
				idx = append(idx, i)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.combos.Load(key); ok {
		return v.(*view), true
	}
	v := newView(s.entries, idx, s.pos)
	s.combos.Store(key, v)
	return v, true
}
