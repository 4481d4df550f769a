package pool

import (
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	// ASNs and ExcludeASNs select by the exit's autonomous system,
	// Classes by its class (upstream.Quality): an exit the ASN database
	// does not know is in no ASN and no class, so it leaves a group
	// that names any, and stays in one that only excludes ASNs.
	ASNs        []uint32
	ExcludeASNs []uint32
	Classes     []upstream.Class
	// MinThroughput (bytes/s) drops members whose measured throughput
	// is known and below it; one not measured yet (0) stays.
	MinThroughput float64
	IDs           []string // explicit upstream IDs (a pinned single exit)
	// RequireTargets are named target checks (probe.targets) a member
	// must pass, explicit members included: one whose result fails,
	// expires or is missing is not served for the group.
	RequireTargets []string
}

func (g Group) filtered() bool {
	return len(g.Countries)+len(g.ExcludeCountries)+len(g.Types)+len(g.Sources)+
		len(g.ASNs)+len(g.ExcludeASNs)+len(g.Classes)+len(g.RequireTargets) > 0 || g.MinThroughput > 0
}

func (g Group) matches(r *upstream.Served) bool {
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
	if len(g.ASNs) > 0 && !slices.Contains(g.ASNs, r.ASN) || slices.Contains(g.ExcludeASNs, r.ASN) {
		return false
	}
	if len(g.Classes) > 0 && !slices.Contains(g.Classes, r.Class) {
		return false
	}
	if g.MinThroughput > 0 && r.Throughput > 0 && r.Throughput < g.MinThroughput {
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
	errs      errRate       // the weighted strategy's recent error rate
}

// errRate is a share of failed passive outcomes that forgets: each
// outcome moves it errAlpha of the way to 1 (failed) or 0, and it halves
// every errHalfLife without one, so an upstream that failed a while ago
// and got little traffic since (its weight was low) is tried again.
type errRate struct {
	mu   sync.Mutex
	rate float64
	at   int64 // unix nanos of the last outcome
}

const (
	errAlpha    = 0.2
	errHalfLife = time.Minute
)

// decayed is the rate at now; mu held.
func (e *errRate) decayed(now int64) float64 {
	if e.rate == 0 || now <= e.at {
		return e.rate
	}
	return e.rate * math.Exp2(-float64(now-e.at)/float64(errHalfLife))
}

func (e *errRate) observe(failed bool, now int64) {
	x := 0.0
	if failed {
		x = 1
	}
	e.mu.Lock()
	e.rate = e.decayed(now)*(1-errAlpha) + errAlpha*x
	e.at = now
	e.mu.Unlock()
}

func (e *errRate) get(now int64) float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.decayed(now)
}

func (h *health) latencyMS() float64 { return math.Float64frombits(h.latency.Load()) }

// item is one upstream as served. It is immutable once built, so a
// reload shares it with the previous snapshot while the loader hands over
// the same upstream unchanged (no new strings or copies).
type item struct {
	choice  upstream.Choice       // its Throughput (bytes/s, 0 unknown) feeds min-throughput and weighted
	sources []string              // for group matching when rebuilt after an ejection
	targets []upstream.TargetPass // passed target checks, for groups and "-target-" requests
}

// same reports whether r (whose country upper-cased is country) would
// build this item.
func (it *item) same(r *upstream.Served, country string) bool {
	c := r.Choice
	c.Country = country
	return it.choice == c && slices.Equal(it.sources, r.Sources) && slices.Equal(it.targets, r.Targets)
}

// passes reports whether every one of targets has a valid passed result
// in ts at now.
func passes(ts []upstream.TargetPass, targets []string, now time.Time) bool {
	for _, t := range targets {
		if !upstream.Passes(ts, t, now) {
			return false
		}
	}
	return true
}

type entry struct {
	*item
	h    *health
	exit int32 // index of its distinct exit IP in the snapshot
}

// served is what a rebuild adds again: the snapshot keeps entries, not
// what they were loaded from.
func (e *entry) served() upstream.Served {
	return upstream.Served{Choice: e.choice, Sources: e.sources, Targets: e.targets}
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

// Weighted strategy constants (see weight).
const (
	latencyFloorMS  = 10      // added to latency: loopback-fast upstreams do not take everything
	throughputRef   = 1 << 20 // bytes/s that weigh 1
	throughputFloor = 0.25
	throughputCeil  = 4
)

// weight is what the weighted strategy draws by:
//
//	(1 − e)² × t / (latency + 10 ms)
//
// e is the upstream's decaying error rate (errRate), latency the EWMA
// least-latency compares, t = √(throughput / 1 MiB/s) within [¼, 4],
// and 1 while the throughput is unknown. Squaring the success share is
// the "error margin": an upstream failing one request in three weighs
// less than half of a steady one as fast.
func (e *entry) weight(now int64) float64 {
	ok := 1 - e.h.errs.get(now)
	t := 1.0
	if tp := e.choice.Throughput; tp > 0 {
		t = min(throughputCeil, max(throughputFloor, math.Sqrt(tp/throughputRef)))
	}
	return ok * ok * t / (e.latency() + latencyFloorMS)
}

// view is one selectable subset (all, a group, a country, or both), its
// entries bucketed by distinct exit IP so that rotation spreads over exits:
// bucket b is members[starts[b]:starts[b+1]], buckets in order of first
// appearance, entries in snapshot order within one.
type view struct {
	members []int32
	starts  []int32
	n       int
	// tunnels and either count the members that can tunnel, and that can
	// tunnel or forward (upstream.Usable): a pick for a need no member
	// fits answers at once, one that few fit scans for them.
	tunnels, either int32

	ringOnce sync.Once
	ring     []ringPoint
}

func (v *view) buckets() int { return len(v.starts) - 1 }

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
	// require is each group's RequireTargets, checked again at a pick:
	// a result may expire between two loads.
	require map[string][]string
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
	var count []int32 // members per bucket, then the next free slot of each
	for _, i := range idx {
		x := entries[i].exit
		if pos[x] < 0 {
			pos[x] = int32(len(count))
			count = append(count, 0)
		}
		count[pos[x]]++
	}
	v.starts = make([]int32, len(count)+1)
	for b, c := range count {
		v.starts[b+1] = v.starts[b] + c
	}
	copy(count, v.starts)
	v.members = make([]int32, len(idx))
	for _, i := range idx {
		b := pos[entries[i].exit]
		v.members[count[b]] = i
		count[b]++
	}
	for _, i := range idx {
		pos[entries[i].exit] = -1
		switch c := &entries[i].choice; upstream.Usable(c.Type, c.Caps) & (upstream.CapConnect | upstream.CapForward) {
		case 0:
		case upstream.CapForward:
			v.either++
		default:
			v.tunnels++
			v.either++
		}
	}
	return v
}

// builder makes a snapshot of servable upstreams added one at a time
// (add may be handed one Served reused between calls), skipping excluded
// ones. Health and unchanged items carry over from the previous snapshot.
type builder struct {
	s        *snapshot
	old      *snapshot
	next     int              // old.entries[next] is likely the next record's previous entry
	oldEj    map[string]int32 // old.ejected by id, built when first needed
	groups   []Group
	excluded func(r *upstream.Served, h *health) bool
	all      []int32
	gidx     map[string][]int32
	cidx     map[string][]int32
	exits    map[string]int32
	ejected  map[string]bool // ids in s.ejected
	now      time.Time       // what target results are valid at
}

// newBuilder starts a snapshot of about n records. known seeds the group
// names that exist even with no servable member.
func newBuilder(version uint64, n int, old *snapshot, known map[string]bool, groups []Group,
	excluded func(r *upstream.Served, h *health) bool) *builder {
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
	for _, g := range groups {
		s.known[g.Name] = true
		if len(g.RequireTargets) > 0 {
			if s.require == nil {
				s.require = map[string][]string{}
			}
			s.require[g.Name] = g.RequireTargets
		}
	}
	return &builder{s: s, old: old, groups: groups, excluded: excluded, all: make([]int32, 0, n), now: time.Now(),
		gidx: make(map[string][]int32, len(groups)), cidx: map[string][]int32{}, exits: make(map[string]int32, n)}
}

// previous returns the previous snapshot's entry for id, if any.
func (b *builder) previous(id string) *entry {
	if b.old == nil {
		return nil
	}
	// Loads come in the same order (best first) and most upstreams keep
	// their place between two: try the one after the last found before
	// the map.
	if b.next < len(b.old.entries) && b.old.entries[b.next].choice.ID == id {
		b.next++
		return &b.old.entries[b.next-1]
	}
	if i, ok := b.old.byID[id]; ok {
		b.next = int(i) + 1
		return &b.old.entries[i]
	}
	if len(b.old.ejected) == 0 {
		return nil
	}
	if b.oldEj == nil {
		b.oldEj = make(map[string]int32, len(b.old.ejected))
		for i := range b.old.ejected {
			b.oldEj[b.old.ejected[i].choice.ID] = int32(i)
		}
	}
	if i, ok := b.oldEj[id]; ok {
		return &b.old.ejected[i]
	}
	return nil
}

// addRecord adds r if it is servable; its group is known either way.
func (b *builder) addRecord(r *upstream.Record) error {
	if !r.Status.Servable() {
		if r.Group != "" {
			b.s.known[r.Group] = true
		}
		return nil
	}
	sv, err := r.Served()
	if err != nil {
		return err
	}
	b.add(&sv)
	return nil
}

func (b *builder) add(r *upstream.Served) {
	s := b.s
	if r.Group != "" {
		s.known[r.Group] = true
	}
	if b.ejected[r.ID] {
		return // a duplicate
	}
	n := int32(len(s.entries))
	l := len(s.byID)
	s.byID[r.ID] = n
	if len(s.byID) == l {
		// A duplicate (loaders have none: one map operation, not two,
		// for the rest). Keep the first.
		for i := range s.entries {
			if s.entries[i].choice.ID == r.ID {
				s.byID[r.ID] = int32(i)
				return
			}
		}
	}
	country := strings.ToUpper(r.Country)
	var it *item
	h := &health{}
	if prev := b.previous(r.ID); prev != nil {
		h = prev.h
		if prev.same(r, country) {
			it = prev.item
		}
	}
	if it == nil {
		it = &item{choice: r.Choice, sources: r.Sources, targets: r.Targets}
		it.choice.Country = country
	}
	if b.excluded(r, h) {
		delete(s.byID, r.ID)
		if b.ejected == nil {
			b.ejected = map[string]bool{}
		}
		b.ejected[r.ID] = true
		s.ejected = append(s.ejected, entry{item: it, h: h})
		return
	}
	x := int32(len(b.exits))
	if r.ExitIP == "" {
		b.exits["id:"+r.ID] = x
	} else if old, ok := b.exits[r.ExitIP]; ok {
		x = old
	} else {
		b.exits[r.ExitIP] = x
	}
	s.entries = append(s.entries, entry{item: it, h: h, exit: x})
	b.all = append(b.all, n)
	if country != "" {
		b.cidx[country] = append(b.cidx[country], n)
	}
	if r.Group != "" && passes(r.Targets, s.require[r.Group], b.now) {
		b.gidx[r.Group] = append(b.gidx[r.Group], n)
	}
	for gi := range b.groups {
		g := &b.groups[gi]
		if g.Name != r.Group && g.matches(r) && passes(r.Targets, g.RequireTargets, b.now) {
			b.gidx[g.Name] = append(b.gidx[g.Name], n)
		}
	}
}

// finish builds the views; the builder is done with.
func (b *builder) finish() *snapshot {
	s := b.s
	s.pos = make([]int32, len(b.exits))
	for i := range s.pos {
		s.pos[i] = -1
	}
	b.exits = nil
	s.all = newView(s.entries, b.all, s.pos)
	for name, idx := range b.gidx {
		s.groups[name] = newView(s.entries, idx, s.pos)
	}
	for c, idx := range b.cidx {
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
	for _, i := range g.members {
		if s.entries[i].choice.Country == country {
			idx = append(idx, i)
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
