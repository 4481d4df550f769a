package pool

import (
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Strategy names (config `gateway.strategy`).
const (
	RoundRobin   = "round-robin"
	Random       = "random"
	LeastLatency = "least-latency"
	Sticky       = "sticky"
	Weighted     = "weighted"
)

// weightedChoices is how many usable candidates a weighted pick draws
// before choosing among them by weight: picks stay O(1), and the
// slowest member of a large pool still gets a share when drawn among
// others as slow.
const weightedChoices = 4

// maxProbe bounds how many candidates one pick looks at before giving up
// on skipping ejected/tried ones: picks stay O(1).
const maxProbe = 32

func usable(s *snapshot, i int32, sel *upstream.Selector) bool {
	e := &s.entries[i]
	if e.h.ejectedAt.Load() != 0 || !fits(&e.choice, sel.Need) {
		return false
	}
	if req := s.require[sel.Group]; len(sel.Targets)+len(req) > 0 {
		now := time.Now()
		if !passes(e.targets, sel.Targets, now) || !passes(e.targets, req, now) {
			return false
		}
	}
	return len(sel.Tried) == 0 || !slices.Contains(sel.Tried, e.choice.ID)
}

// fits reports whether c can serve a request that needs any one of need
// (upstream.Selector.Need; 0 is a tunnel). An upstream that does not is
// skipped, not failed: a GET-only HTTP proxy is a fine upstream for
// plain http:// requests.
func fits(c *upstream.Choice, need upstream.Caps) bool {
	if need == 0 {
		need = upstream.CapConnect
	}
	return upstream.Usable(c.Type, c.Caps)&need != 0
}

// fitting is how many members of v fit need: all of them, none, or
// some (-1 when v does not count that need).
func (v *view) fitting(need upstream.Caps) int {
	switch need &^ upstream.CapPipeline {
	case 0, upstream.CapConnect:
		return int(v.tunnels)
	case upstream.CapConnect | upstream.CapForward:
		return int(v.either)
	}
	return -1
}

// scan looks at every member of v from a random place on for one that is
// usable: the fallback of a pick whose bounded probing met only members
// unfit for what the request needs (a pool mostly of GET-only proxies
// asked for a tunnel), which must still find the few that fit.
func scan(s *snapshot, v *view, sel *upstream.Selector) int32 {
	start := rand.IntN(v.n)
	for j := range v.n {
		if i := v.members[(start+j)%v.n]; usable(s, i, sel) {
			return i
		}
	}
	return -1
}

// at maps a rotation counter to an entry: distinct exits first, then the
// records sharing an exit in turn.
func (v *view) at(k uint64) int32 {
	nb := uint64(v.buckets())
	b := k % nb
	lo, hi := v.starts[b], v.starts[b+1]
	return v.members[uint64(lo)+(k/nb)%uint64(hi-lo)]
}

func pickRandom(s *snapshot, v *view, sel *upstream.Selector) int32 {
	for range min(maxProbe, v.n) {
		if i := v.at(rand.Uint64()); usable(s, i, sel) {
			return i
		}
	}
	return -1
}

// pickP2C is power-of-two-choices on latency: two random candidates, the
// faster wins.
func pickP2C(s *snapshot, v *view, sel *upstream.Selector) int32 {
	a := pickRandom(s, v, sel)
	if a < 0 || v.n == 1 {
		return a
	}
	b := pickRandom(s, v, sel)
	if b >= 0 && s.entries[b].latency() < s.entries[a].latency() {
		return b
	}
	return a
}

// pickWeighted draws up to weightedChoices distinct usable candidates at
// random and takes one with a probability proportional to its weight
// (entry.weight): faster, steadier, higher-throughput upstreams get more
// of the requests, and no upstream none.
func pickWeighted(s *snapshot, v *view, sel *upstream.Selector) int32 {
	var cand [weightedChoices]int32
	var w [weightedChoices]float64
	n, total := 0, 0.0
	now := time.Now().UnixNano()
	for range min(maxProbe, 2*v.n) {
		if n == weightedChoices || n == v.n {
			break
		}
		i := v.at(rand.Uint64())
		if slices.Contains(cand[:n], i) || !usable(s, i, sel) {
			continue
		}
		cand[n], w[n] = i, s.entries[i].weight(now)
		total += w[n]
		n++
	}
	if n == 0 {
		return -1
	}
	x := rand.Float64() * total
	for k := range n {
		if x -= w[k]; x < 0 {
			return cand[k]
		}
	}
	return cand[n-1]
}

// ring is consistent hashing over the view: a key maps to the same
// upstream on every gateway replica that sees the same pool, and removing
// one upstream only moves the keys it held. Lookups are O(log n).
type ringPoint struct {
	h uint64
	i int32
}

func (v *view) ringPoints(s *snapshot) []ringPoint {
	v.ringOnce.Do(func() {
		vn := 40
		if v.n > 0 {
			vn = max(1, min(40, 400_000/v.n))
		}
		pts := make([]ringPoint, 0, v.n*vn)
		for _, i := range v.members {
			id := s.entries[i].choice.ID
			for r := range vn {
				pts = append(pts, ringPoint{hash64(id + "#" + strconv.Itoa(r)), i})
			}
		}
		sort.Slice(pts, func(a, b int) bool { return pts[a].h < pts[b].h })
		v.ring = pts
	})
	return v.ring
}

func pickRing(s *snapshot, v *view, sel *upstream.Selector, key string) int32 {
	pts := v.ringPoints(s)
	if len(pts) == 0 {
		return -1
	}
	h := hash64(key)
	j := sort.Search(len(pts), func(x int) bool { return pts[x].h >= h })
	for n := range min(len(pts), maxProbe*4) {
		if i := pts[(j+n)%len(pts)].i; usable(s, i, sel) {
			return i
		}
	}
	return -1
}

// hash64 is FNV-1a with a splitmix64 finisher: fixed across processes and
// machines (replicas must agree), well spread.
func hash64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// sessions remembers which upstream a username session holds until its
// TTL runs out; then the session moves on (a new generation of its key).
// At max sessions the least recently used one is forgotten (it stays
// sticky by hash, only its TTL's generation is lost): memory is bounded
// by max × the gateway's bound on a session id.
type sessions struct {
	mu   sync.Mutex
	m    map[string]*session
	max  int
	head session // of the recency list: head.next is the most recent, head.prev the least
}

type session struct {
	key        string
	id         string
	until      time.Time
	gen        int
	prev, next *session
}

// touch makes s the most recently used.
func (ss *sessions) touch(s *session) {
	if ss.head.next == s {
		return
	}
	if s.prev != nil {
		s.prev.next, s.next.prev = s.next, s.prev
	}
	s.prev, s.next = &ss.head, ss.head.next
	ss.head.next.prev = s
	ss.head.next = s
}

func (ss *sessions) get(key string, now time.Time) (id string, gen int) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[key]
	if s == nil {
		return "", 0
	}
	ss.touch(s)
	if now.After(s.until) {
		return "", s.gen + 1
	}
	return s.id, s.gen
}

func (ss *sessions) put(key, id string, gen int, until time.Time, now time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = map[string]*session{}
		ss.head.prev, ss.head.next = &ss.head, &ss.head
	}
	if s := ss.m[key]; s != nil {
		if s.until.Before(now) || gen != s.gen {
			s.until = until
		}
		s.id, s.gen = id, gen
		ss.touch(s)
		return
	}
	for len(ss.m) >= ss.max && ss.head.prev != &ss.head {
		old := ss.head.prev
		old.prev.next, ss.head.prev = &ss.head, old.prev
		delete(ss.m, old.key)
	}
	s := &session{key: key, id: id, until: until, gen: gen}
	ss.m[key] = s
	ss.touch(s)
}

// len is how many sessions are remembered.
func (ss *sessions) len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}
