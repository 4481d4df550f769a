package pool

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Loader reads the healthy upstreams and a number that changes whenever
// they may have (the store).
type Loader interface {
	Healthy(ctx context.Context) ([]upstream.Record, error)
	Version(ctx context.Context) (uint64, error)
}

// streamLoader is a Loader that can also hand the healthy upstreams over
// one at a time, in Healthy's order and as a gateway serves them, so that
// a load holds no slice of them (the store: 100k records are ~37 MB). fn
// gets n, the number of upstreams the call passes in all, and a Served
// the loader may reuse between calls (not what it points to). An error
// from fn stops the call.
type streamLoader interface {
	GatewayHealthy(ctx context.Context, fn func(n int, r *upstream.Served) error) error
}

// Options configure a Pool. Zero values take the documented defaults.
type Options struct {
	Loader Loader
	// Notify, when set, asks for a reload now (PoolChanged). Version is
	// still polled every PollInterval.
	Notify       <-chan struct{}
	PollInterval time.Duration // default 1s
	// MinReloadGap spaces store reloads asked for by Notify or a polled
	// version: the next one starts no sooner than the larger of
	// MinReloadGap (default 250ms) and ReloadDuty × the last reload's
	// duration (default 4: reloads take at most ~20 % of a core while
	// the store keeps changing; 100k upstreams load in ~0.5–1 s, so such a
	// pool follows the store every ~5 s). A request in the gap is kept
	// and served at its end; picks never wait.
	MinReloadGap time.Duration
	ReloadDuty   float64
	Groups       []Group
	Strategy     string // round-robin (default), random, least-latency, sticky, weighted
	// Rotate keeps one upstream per view for a number of picks or a
	// period (gateway.rotate-every); zero picks anew each time.
	Rotate     Rotation
	EjectAfter int // consecutive passive failures that eject (default 3)
	// EjectFor caps how long an ejected upstream stays out when the store
	// keeps calling it healthy without a newer check (default 5m).
	EjectFor time.Duration
	// OnEject, if set, hears of each upstream this pool ejects, with the
	// failure that ejected it (the gateway tells the store, so the probe
	// re-checks it now). It runs on Run's goroutine, never on a pick's or
	// an Observe's; ejections while it lags behind are dropped.
	OnEject func(last upstream.CheckResult)
	// EjectShare and EjectWindow are each client's ejection budget: the
	// failures of one client (CheckResult.Client, its source address)
	// eject at most EjectShare of the pool (default 0.1, at least one
	// upstream) per EjectWindow (default 1m). A failure past the budget
	// is not counted, so a client that makes every upstream fail for its
	// own requests (a target they all refuse, say) cannot empty the pool
	// for everyone; HAProxy's observe + error-limit has no such bound.
	// Results without a client address (a unix-socket listener's) are
	// not budgeted.
	EjectShare  float64
	EjectWindow time.Duration
	SessionTTL  time.Duration // default for "-session-" without "-ttl-" (10m)
	MaxSessions int           // remembered sessions, the least recently used forgotten past it (default 100000)
	Log         logrus.FieldLogger
	// OnLoad, if set, hears of every snapshot loaded from the store: the
	// version it reflects, its size, how long the load took (the
	// gateway's snapshot metrics, which show where each replica is).
	OnLoad func(version uint64, size int, took time.Duration)
}

// Pool answers Pick from an atomically swapped snapshot. It is safe for
// concurrent use; Pick never blocks on a reload.
type Pool struct {
	opts    Options
	snap    atomic.Pointer[snapshot]
	mu      sync.Mutex // loads and rebuilds
	rebuild chan struct{}
	ejected chan upstream.CheckResult // for OnEject
	budget  budget                    // ejections per client in the window
	def     *Picker                   // Options.Strategy and Rotate: what Pick uses
	log     logrus.FieldLogger
	// pins are the groups pinned to one upstream (Pin), honoured by every
	// Picker; nil for none
	pins  atomic.Pointer[map[string]pin]
	pinMu sync.Mutex
	// names are the configured groups' names, in config order
	// (GroupNames); SetGroups replaces them
	names atomic.Pointer[[]string]
}

func checkGroups(groups []Group) error {
	seen := map[string]bool{}
	for i, g := range groups {
		if g.Name == "" {
			return fmt.Errorf("pool: group %d has no name", i)
		}
		if seen[g.Name] {
			return fmt.Errorf("pool: group %q defined twice", g.Name)
		}
		seen[g.Name] = true
	}
	return nil
}

// SetGroups replaces the groups (a config reload) and rebuilds the
// snapshot from the upstreams it holds, so a new group serves and a
// removed one is unknown once it returns. A pin of a group removed, or
// of an upstream its group's new filters leave out, ends with it.
func (p *Pool) SetGroups(groups []Group) error {
	if err := checkGroups(groups); err != nil {
		return err
	}
	p.mu.Lock()
	p.opts.Groups = groups
	p.setNames(groups)
	p.mu.Unlock()
	p.rebuildFrom(nil)
	p.prunePins(p.snap.Load())
	return nil
}

func (p *Pool) setNames(groups []Group) {
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = g.Name
	}
	p.names.Store(&names)
}

// New checks options and returns an empty pool; call Load before serving.
func New(o Options) (*Pool, error) {
	if o.Loader == nil {
		return nil, fmt.Errorf("pool: no loader")
	}
	if err := checkGroups(o.Groups); err != nil {
		return nil, err
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.MinReloadGap <= 0 {
		o.MinReloadGap = 250 * time.Millisecond
	}
	if o.ReloadDuty <= 0 {
		o.ReloadDuty = 4
	}
	if o.EjectAfter <= 0 {
		o.EjectAfter = 3
	}
	if o.EjectFor <= 0 {
		o.EjectFor = 5 * time.Minute
	}
	if o.EjectShare <= 0 || o.EjectShare > 1 {
		o.EjectShare = 0.1
	}
	if o.EjectWindow <= 0 {
		o.EjectWindow = time.Minute
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 10 * time.Minute
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 100_000
	}
	if o.Log == nil {
		l := logrus.New()
		l.Out = io.Discard
		o.Log = l
	}
	p := &Pool{opts: o, rebuild: make(chan struct{}, 1), ejected: make(chan upstream.CheckResult, 1024), log: o.Log}
	def, err := p.NewPicker(o.Strategy, o.Rotate)
	if err != nil {
		return nil, err
	}
	p.def = def
	p.setNames(o.Groups)
	p.snap.Store(newBuilder(0, 0, nil, nil, o.Groups, func(*upstream.Served, *health) bool { return false }).finish())
	return p, nil
}

// Load reads the store now and swaps the snapshot in. The current
// snapshot keeps serving until then; on error it stays.
func (p *Pool) Load(ctx context.Context) error {
	v, err := p.opts.Loader.Version(ctx)
	if err != nil {
		return fmt.Errorf("reading pool version: %w", err)
	}
	start := time.Now()
	var s *snapshot
	if sl, ok := p.opts.Loader.(streamLoader); ok {
		// Records go straight into the new snapshot.
		p.mu.Lock()
		var b *builder
		err = sl.GatewayHealthy(ctx, func(n int, r *upstream.Served) error {
			if b == nil {
				b = p.builder(v, n, nil, true)
			}
			b.add(r)
			return nil
		})
		if err == nil {
			if b == nil {
				b = p.builder(v, 0, nil, true)
			}
			s = b.finish()
			p.snap.Store(s)
		}
		p.mu.Unlock()
	} else {
		var recs []upstream.Record
		if recs, err = p.opts.Loader.Healthy(ctx); err == nil {
			s, err = p.swap(v, len(recs), func(b *builder, i int) error { return b.addRecord(&recs[i]) }, nil, true)
		}
	}
	if err != nil {
		return fmt.Errorf("loading healthy upstreams: %w", err)
	}
	took := time.Since(start)
	p.log.WithFields(logrus.Fields{"upstreams": len(s.entries), "version": v, "took": took.Round(time.Millisecond)}).Debug("pool loaded")
	if p.opts.OnLoad != nil {
		p.opts.OnLoad(v, len(s.entries), took)
	}
	return nil
}

// builder starts the next snapshot of about n records, with health and
// unchanged items carried over from the current one. fresh is true for
// store data (ejected upstreams come back once the probe checked them
// again). Call with p.mu held.
func (p *Pool) builder(version uint64, n int, known map[string]bool, fresh bool) *builder {
	now := time.Now()
	return newBuilder(version, n, p.snap.Load(), known, p.opts.Groups, func(r *upstream.Served, h *health) bool {
		at := h.ejectedAt.Load()
		if at == 0 {
			return false
		}
		if fresh && (r.LastCheck.UnixNano() > at || now.Sub(time.Unix(0, at)) > p.opts.EjectFor) {
			h.ejectedAt.Store(0) // re-admitted
			h.fails.Store(0)
			return false
		}
		return true
	})
}

// swap builds and publishes a snapshot of what add(b, 0) … add(b, n-1)
// add to b; on an error from add the current snapshot stays.
func (p *Pool) swap(version uint64, n int, add func(b *builder, i int) error, known map[string]bool, fresh bool) (*snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.builder(version, n, known, fresh)
	for i := range n {
		if err := add(b, i); err != nil {
			return nil, err
		}
	}
	s := b.finish()
	p.snap.Store(s)
	return s, nil
}

// rebuildSnapshot rebuilds the current snapshot from its own entries (and
// those already ejected), leaving out the upstreams ejected since.
func (p *Pool) rebuildSnapshot() { p.rebuildFrom(p.snap.Load().known) }

// rebuildFrom is rebuildSnapshot with the group names known seeds.
func (p *Pool) rebuildFrom(known map[string]bool) {
	s := p.snap.Load()
	p.swap(s.version, len(s.entries)+len(s.ejected), func(b *builder, i int) error {
		var sv upstream.Served
		if i < len(s.entries) {
			sv = s.entries[i].served()
		} else {
			sv = s.ejected[i-len(s.entries)].served()
		}
		b.add(&sv)
		return nil
	}, known, false)
}

// Run reloads on Notify, on a changed Version (polled), and after
// ejections, until ctx is done.
func (p *Pool) Run(ctx context.Context) error {
	if p.opts.OnEject != nil {
		go p.reportEjections(ctx)
	}
	t := time.NewTicker(p.opts.PollInterval)
	defer t.Stop()
	var (
		pending bool      // a reload was asked for within the gap
		next    time.Time // no reload before this
		gap     = time.NewTimer(time.Hour)
	)
	gap.Stop()
	defer gap.Stop()
	for {
		reload := false
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.opts.Notify:
			reload = true
		case <-t.C:
			if pending {
				continue // known to be stale; the gap timer reloads
			}
			v, err := p.opts.Loader.Version(ctx)
			if err != nil {
				p.log.WithError(err).Warn("reading pool version")
				continue
			}
			reload = v != p.snap.Load().version
		case <-gap.C:
			reload = pending
		case <-p.rebuild:
			p.rebuildSnapshot()
			continue
		}
		if !reload {
			continue
		}
		if wait := time.Until(next); wait > 0 {
			if !pending {
				pending = true
				gap.Reset(wait)
			}
			continue
		}
		pending = false
		start := time.Now()
		if err := p.Load(ctx); err != nil && ctx.Err() == nil {
			p.log.WithError(err).Warn("reloading pool")
		}
		took := time.Since(start)
		next = start.Add(max(p.opts.MinReloadGap, time.Duration(p.opts.ReloadDuty*float64(took))))
	}
}

// Len is the number of upstreams in the current snapshot.
func (p *Pool) Len() int { return len(p.snap.Load().entries) }

// Sessions is how many sticky sessions Pick remembers (at most
// Options.MaxSessions; each Picker has its own).
func (p *Pool) Sessions() int { return p.def.Sessions() }

// Version is the store version of the current snapshot.
func (p *Pool) Version() uint64 { return p.snap.Load().version }

// Pick chooses an upstream for sel with the pool's own strategy and
// rotation (Options). Errors wrap upstream.ErrNoUpstream or
// upstream.ErrUnknownGroup.
func (p *Pool) Pick(sel *upstream.Selector) (upstream.Choice, error) { return p.def.Pick(sel) }

// Default is the picker Pick uses: Options.Strategy and Rotate.
func (p *Pool) Default() *Picker { return p.def }

func noUpstream(sel *upstream.Selector, n, fit int) error {
	where := ""
	if sel.Group != "" {
		where += " in group " + strconv.Quote(sel.Group)
	}
	if sel.Country != "" {
		where += " in country " + sel.Country
	}
	if len(sel.Targets) > 0 {
		where += " passing target " + strings.Join(sel.Targets, "+")
	}
	if n > 0 && fit == 0 {
		// e.g. only GET-only HTTP proxies for a CONNECT or SOCKS client
		return fmt.Errorf("%w%s that can tunnel: all %d proved only forwarding of http:// requests", upstream.ErrNoUpstream, where, n)
	}
	if n > 0 {
		return fmt.Errorf("%w%s: all %d tried or ejected", upstream.ErrNoUpstream, where, n)
	}
	return fmt.Errorf("%w%s", upstream.ErrNoUpstream, where)
}

// Observe takes one passive outcome (the gateway's dial through an
// upstream). EjectAfter failures in a row take the upstream out of this
// gateway's snapshot at once, within the budget of the client whose
// failure it was (EjectShare); successes feed the latency EWMA.
func (p *Pool) Observe(r upstream.CheckResult) {
	s := p.snap.Load()
	i, ok := s.byID[r.ID]
	if !ok {
		return
	}
	h := s.entries[i].h
	h.errs.observe(!r.OK, time.Now().UnixNano())
	if r.OK {
		h.fails.Store(0)
		if r.TotalMS > 0 {
			for {
				old := h.latency.Load()
				l := math.Float64frombits(old)
				n := r.TotalMS
				if l > 0 {
					n = 0.3*r.TotalMS + 0.7*l
				}
				if h.latency.CompareAndSwap(old, math.Float64bits(n)) {
					break
				}
			}
		}
		return
	}
	if int(h.fails.Add(1)) < p.opts.EjectAfter || h.ejectedAt.Load() != 0 {
		return
	}
	now := time.Now()
	limit := max(1, int(math.Ceil(p.opts.EjectShare*float64(len(s.entries)+len(s.ejected)))))
	if r.Client != "" && !p.budget.take(r.Client, limit, p.opts.EjectWindow, now) {
		// this client spent its budget: its failure does not count, the
		// next one from another client may still eject
		h.fails.Add(-1)
		return
	}
	if !h.ejectedAt.CompareAndSwap(0, now.UnixNano()) {
		if r.Client != "" {
			p.budget.refund(r.Client)
		}
		return
	}
	p.log.WithFields(logrus.Fields{"UPSTREAM_ID": r.ID, "client": r.Client, "error": upstream.Failure(r.Cause, r.Detail)}).Info("ejecting upstream after consecutive failures")
	select {
	case p.rebuild <- struct{}{}:
	default:
	}
	if p.opts.OnEject != nil {
		select {
		case p.ejected <- r:
		default: // OnEject behind: the upstream is out of this pool anyway
		}
	}
}

// reportEjections hands ejections to OnEject until ctx ends, off the
// gateway's paths, which must never wait for the store.
func (p *Pool) reportEjections(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-p.ejected:
			p.opts.OnEject(r)
		}
	}
}

// budget counts the ejections each client's failures caused in its
// current window. Bounded: past budgetMax clients the expired windows are
// dropped, and if none expired all are (a flood of source addresses then
// gets fresh budgets, each still bounded).
type budget struct {
	mu sync.Mutex
	m  map[string]*spent
}

type spent struct {
	since time.Time
	n     int
}

const budgetMax = 4096

// take charges one ejection to client; false when it already caused limit
// of them in the window.
func (b *budget) take(client string, limit int, window time.Duration, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = make(map[string]*spent)
	}
	e := b.m[client]
	if e == nil || now.Sub(e.since) >= window {
		if e == nil && len(b.m) >= budgetMax {
			for k, v := range b.m {
				if now.Sub(v.since) >= window {
					delete(b.m, k)
				}
			}
			if len(b.m) >= budgetMax {
				clear(b.m)
			}
		}
		e = &spent{since: now}
		b.m[client] = e
	}
	if e.n >= limit {
		return false
	}
	e.n++
	return true
}

// refund takes back a charge whose ejection did not happen.
func (b *budget) refund(client string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.m[client]; e != nil && e.n > 0 {
		e.n--
	}
}
