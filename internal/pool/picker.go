package pool

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Rotation is how long one upstream is kept for a view's requests
// (config gateway.rotate-every): for Requests picks, or for Period. The
// zero value picks anew every time. Sticky picks and sessions ignore it:
// they are kept per client and per session already.
type Rotation struct {
	Requests int
	Period   time.Duration
}

// Picker picks from a Pool with one strategy and state of its own: its
// round-robin counters, its held upstreams (Rotation) and its sessions. A
// gateway port with a strategy of its own has one, so two ports never
// share a counter or a session even when they serve the same group. Its
// state survives the pool's reloads. Safe for concurrent use.
type Picker struct {
	p        *Pool
	strategy string
	rot      Rotation
	mu       sync.RWMutex
	rotors   map[viewKey]*rotor // per view asked for; only views with members
	sessions sessions
}

type viewKey struct{ group, country string }

// rotor is one view's rotation state within a Picker.
type rotor struct {
	rr   atomic.Uint64        // round-robin position
	held atomic.Pointer[hold] // the upstream kept under Rotation
}

// hold is an upstream kept until a time or for a number of picks.
type hold struct {
	id    string
	until time.Time    // Rotation.Period
	left  atomic.Int64 // Rotation.Requests: picks still to hand it out
}

// NewPicker returns a Picker over p's snapshots with its own strategy
// ("" is round-robin) and rotation.
func (p *Pool) NewPicker(strategy string, rot Rotation) (*Picker, error) {
	switch strategy {
	case "":
		strategy = RoundRobin
	case RoundRobin, Random, LeastLatency, Sticky, Weighted:
	default:
		return nil, fmt.Errorf("pool: unknown strategy %q (round-robin, random, least-latency, sticky, weighted)", strategy)
	}
	if rot.Requests < 0 || rot.Period < 0 {
		return nil, fmt.Errorf("pool: negative rotation %d requests, %v", rot.Requests, rot.Period)
	}
	pk := &Picker{p: p, strategy: strategy, rot: rot, rotors: map[viewKey]*rotor{}}
	pk.sessions.max = p.opts.MaxSessions
	return pk, nil
}

// Strategy is the picker's strategy name.
func (pk *Picker) Strategy() string { return pk.strategy }

// Rotation is the picker's rotation.
func (pk *Picker) Rotation() Rotation { return pk.rot }

// Sessions is how many sticky sessions the picker remembers.
func (pk *Picker) Sessions() int { return pk.sessions.len() }

// Observe hands a passive outcome to the pool: health is the pool's, not
// one picker's.
func (pk *Picker) Observe(r upstream.CheckResult) { pk.p.Observe(r) }

// Pick chooses an upstream for sel. Errors wrap upstream.ErrNoUpstream or
// upstream.ErrUnknownGroup.
func (pk *Picker) Pick(sel *upstream.Selector) (upstream.Choice, error) {
	s := pk.p.snap.Load()
	v, known := s.viewFor(sel.Group, sel.Country)
	if !known {
		return upstream.Choice{}, fmt.Errorf("%w %q", upstream.ErrUnknownGroup, sel.Group)
	}
	i := pk.p.pinned(s, sel)
	fit := v.fitting(sel.Need)
	if i < 0 && v.n > 0 && fit != 0 {
		switch {
		case sel.Session != "":
			i = pk.pickSession(s, v, sel)
		case pk.strategy == Sticky && sel.Client != "":
			i = pickRing(s, v, sel, sel.Client)
		default:
			i = pk.pickRotating(s, v, sel)
		}
		// Members failing a target the request asks for are not
		// counted by fit: look at them all before giving up.
		if i < 0 && (fit != v.n || len(sel.Targets) > 0 || s.require[sel.Group] != nil) {
			i = scan(s, v, sel)
		}
	}
	if i < 0 {
		return upstream.Choice{}, noUpstream(sel, v.n, fit)
	}
	return s.entries[i].choice, nil
}

// rotor returns the state of the view sel asks for, made on first use.
func (pk *Picker) rotor(sel *upstream.Selector) *rotor {
	k := viewKey{sel.Group, sel.Country}
	pk.mu.RLock()
	r := pk.rotors[k]
	pk.mu.RUnlock()
	if r != nil {
		return r
	}
	pk.mu.Lock()
	defer pk.mu.Unlock()
	if r = pk.rotors[k]; r == nil {
		// bounded: Pick only gets here for a view with members, and
		// views exist per configured group and exit country
		r = &rotor{}
		pk.rotors[k] = r
	}
	return r
}

// pickRotating picks by the strategy, keeping the last pick for the
// picker's Rotation while it stays usable. One that is not (ejected,
// already tried by this request) is replaced at once for every request
// of the view.
func (pk *Picker) pickRotating(s *snapshot, v *view, sel *upstream.Selector) int32 {
	r := pk.rotor(sel)
	if pk.rot == (Rotation{}) {
		return pk.pickOne(s, v, sel, r)
	}
	now := time.Now()
	h := r.held.Load()
	if h != nil {
		if i, ok := s.byID[h.id]; ok && usable(s, i, sel) && pk.keeps(h, now) {
			return i
		}
		if i, ok := s.byID[h.id]; ok && !fits(&s.entries[i].choice, sel.Need) {
			// the held one serves what this request cannot use (a
			// forward-only proxy, a tunnel asked for): it stays held
			return pk.pickOne(s, v, sel, r)
		}
	}
	i := pk.pickOne(s, v, sel, r)
	if i < 0 {
		return i
	}
	nh := &hold{id: s.entries[i].choice.ID, until: now.Add(pk.rot.Period)}
	nh.left.Store(int64(pk.rot.Requests) - 1)
	if !r.held.CompareAndSwap(h, nh) {
		// another request moved the hold first: follow it if it can,
		// counting this pick against it
		if cur := r.held.Load(); cur != nil {
			if j, ok := s.byID[cur.id]; ok && usable(s, j, sel) && pk.keeps(cur, now) {
				return j
			}
		}
	}
	return i
}

// keeps reports whether h may serve one more pick, and counts it.
func (pk *Picker) keeps(h *hold, now time.Time) bool {
	if pk.rot.Period > 0 {
		return now.Before(h.until)
	}
	return h.left.Add(-1) >= 0
}

// pickOne is one pick by the strategy, with no holding.
func (pk *Picker) pickOne(s *snapshot, v *view, sel *upstream.Selector, r *rotor) int32 {
	switch pk.strategy {
	case Random:
		return pickRandom(s, v, sel)
	case LeastLatency:
		return pickP2C(s, v, sel)
	case Weighted:
		return pickWeighted(s, v, sel)
	}
	for range min(maxProbe, v.n) {
		if i := v.at(r.rr.Add(1) - 1); usable(s, i, sel) {
			return i
		}
	}
	return -1
}

func (pk *Picker) pickSession(s *snapshot, v *view, sel *upstream.Selector) int32 {
	now := time.Now()
	// Each account has its own sessions: acct1-session-z1 and acct2-session-z1
	// are two clients that happen to pick the same id.
	key := sel.User + "\x00" + sel.Group + "\x00" + sel.Country + "\x00" + sel.Session
	ring := sel.Session // where a new session lands, the same on every replica
	if sel.User != "" {
		ring = sel.User + "\x00" + sel.Session
	}
	id, gen := pk.sessions.get(key, now)
	if id != "" {
		if i, ok := s.byID[id]; ok {
			if usable(s, i, sel) {
				return i
			}
			if !fits(&s.entries[i].choice, sel.Need) {
				// a CONNECT in a session held by a forward-only upstream:
				// another serves this request, the session keeps its own
				return pickRing(s, v, sel, ring+"/"+strconv.Itoa(gen))
			}
		}
	}
	i := pickRing(s, v, sel, ring+"/"+strconv.Itoa(gen))
	if i >= 0 {
		ttl := sel.SessionTTL
		if ttl <= 0 {
			ttl = pk.p.opts.SessionTTL
		}
		pk.sessions.put(key, s.entries[i].choice.ID, gen, now.Add(ttl), now)
	}
	return i
}
