// Package checks runs the checks made through healthy upstreams, apart
// from liveness: named target checks (does this upstream work for this
// site) and speed checks (how fast is it). Each kind has its own
// goroutine, interval, concurrency and budget per pass, so a slow target
// or a large download never delays the probe's liveness passes; cheaper
// upstreams are checked first (tor and plain list proxies before share
// links, lower latency first within a tier).
package checks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Candidates are the upstreams the checks go through: the healthy ones.
type Candidates interface {
	Healthy(ctx context.Context) ([]upstream.Record, error)
}

// Dialer connects through an upstream (dial.Pool).
type Dialer interface {
	DialContext(ctx context.Context, u upstream.Entry, addr string) (net.Conn, error)
}

// Sink keeps the results (the store).
type Sink interface {
	RecordTargets(ctx context.Context, rs []upstream.TargetResult) error
	RecordSpeeds(ctx context.Context, rs []upstream.SpeedResult) error
}

// Target is one named target check (probe.targets.NAME).
type Target struct {
	Name    string
	URL     string
	Status  []int          // accepted statuses; empty: any 2xx
	Body    *regexp.Regexp // the body must match; nil: any body
	NotBody *regexp.Regexp // the body must not match (a captcha page); nil: none
	Headers map[string]string
	MaxTime time.Duration // one check, dial to the end of the body (default 10s)
	// Interval is the time between two passes (default 10m); TTL how long
	// a result counts (default 3 × Interval: one pass may be missed).
	Interval, TTL time.Duration
	Concurrency   int // checks in flight (default 16)
	Budget        int // upstreams checked per pass, cheapest first; 0: every healthy one
}

// Speed is the bandwidth check (probe.speed).
type Speed struct {
	URL    string // downloaded from; uploaded to with POST when Upload > 0
	Size   int64  // bytes downloaded per check (default 1 MiB)
	Upload int64  // bytes uploaded per check; 0: no upload
	// BudgetBytes bounds what one pass moves, both ways (default 64 MiB):
	// a check starts only when its whole size fits in what is left.
	BudgetBytes int64
	Concurrency int           // checks in flight (default 2)
	Interval    time.Duration // between passes (default 1h)
	MaxTime     time.Duration // one check (default 30s)
	Kinds       []string      // upstream kinds checked; empty: every kind
	Sources     []string      // only upstreams one of these lists; empty: any
}

// Outage defaults: a target failing through at least OutageShare of the
// upstreams checked in a pass, with at least OutageMin checked, is down
// itself.
const (
	DefaultOutageShare = 0.9
	DefaultOutageMin   = 5
)

// maxBody is how much of a target's answer is read for its regexes.
const maxBody = 1 << 20

// Options configure a Scheduler.
type Options struct {
	Targets []Target
	Speed   *Speed // nil: no speed checks
	// OutageShare and OutageMin are the outage rule (defaults above).
	OutageShare float64
	OutageMin   int
	// OnPass sees each finished pass (metrics, benchmarks).
	OnPass    func(PassStats)
	UserAgent string
	Logger    logrus.FieldLogger
	Now       func() time.Time
}

// PassStats is what one pass did.
type PassStats struct {
	Kind    string // "target" or "speed"
	Name    string // the target's name; "" for speed
	Checked int    // upstreams checked
	Passed  int    // passed the target (speed: measured)
	// Outage: the target failed through (nearly) every upstream; no
	// failure of the pass was recorded against them.
	Outage  bool
	Bytes   int64 // moved through upstreams (speed: both ways; targets: bodies read)
	Peak    int   // most checks in flight at once
	Elapsed time.Duration
}

// Scheduler runs the checks. Run it once.
type Scheduler struct {
	opts Options
	c    Candidates
	d    Dialer
	sink Sink
	log  logrus.FieldLogger
}

// New validates opts and returns a Scheduler.
func New(c Candidates, d Dialer, sink Sink, opts Options) (*Scheduler, error) {
	seen := map[string]bool{}
	for i := range opts.Targets {
		t := &opts.Targets[i]
		if t.Name == "" || seen[t.Name] {
			return nil, fmt.Errorf("checks: target %d: empty or repeated name %q", i, t.Name)
		}
		seen[t.Name] = true
		if t.URL == "" {
			return nil, fmt.Errorf("checks: target %s: no url", t.Name)
		}
		t.MaxTime = orDefault(t.MaxTime, 10*time.Second)
		t.Interval = orDefault(t.Interval, 10*time.Minute)
		t.TTL = orDefault(t.TTL, 3*t.Interval)
		if t.Concurrency <= 0 {
			t.Concurrency = 16
		}
	}
	if s := opts.Speed; s != nil {
		if s.URL == "" {
			return nil, errors.New("checks: speed: no url")
		}
		sp := *s
		sp.Size = orDefault(sp.Size, 1<<20)
		sp.BudgetBytes = orDefault(sp.BudgetBytes, 64<<20)
		sp.Interval = orDefault(sp.Interval, time.Hour)
		sp.MaxTime = orDefault(sp.MaxTime, 30*time.Second)
		if sp.Concurrency <= 0 {
			sp.Concurrency = 2
		}
		if sp.Size+sp.Upload > sp.BudgetBytes {
			return nil, fmt.Errorf("checks: speed: one check (%d bytes) is over the budget per pass (%d)", sp.Size+sp.Upload, sp.BudgetBytes)
		}
		opts.Speed = &sp
	}
	if opts.OutageShare <= 0 || opts.OutageShare > 1 {
		opts.OutageShare = DefaultOutageShare
	}
	if opts.OutageMin <= 0 {
		opts.OutageMin = DefaultOutageMin
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "proxypool-checks/1"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		l := logrus.New()
		l.Out = io.Discard
		log = l
	}
	return &Scheduler{opts: opts, c: c, d: d, sink: sink, log: log}, nil
}

func orDefault[T cmp.Ordered](v, def T) T {
	var zero T
	if v <= zero {
		return def
	}
	return v
}

// Enabled reports whether there is anything to check.
func (s *Scheduler) Enabled() bool { return len(s.opts.Targets) > 0 || s.opts.Speed != nil }

// Run runs every check on its own interval, the first pass at once,
// until ctx ends.
func (s *Scheduler) Run(ctx context.Context) {
	var wg sync.WaitGroup
	every := func(interval time.Duration, pass func(context.Context) (PassStats, error)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				if st, err := pass(ctx); err != nil && ctx.Err() == nil {
					s.log.WithError(err).WithField("check", st.Kind+" "+st.Name).Warn("check pass failed")
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	for i := range s.opts.Targets {
		t := &s.opts.Targets[i]
		every(t.Interval, func(ctx context.Context) (PassStats, error) { return s.TargetPass(ctx, t.Name) })
	}
	if s.opts.Speed != nil {
		every(s.opts.Speed.Interval, s.SpeedPass)
	}
	wg.Wait()
}

// cost orders upstreams cheapest first: tor, then plain list proxies,
// then share links (often a paid quota); lower latency first within one.
func cost(a, b *upstream.Record) int {
	tier := func(r *upstream.Record) int {
		switch {
		case r.Type == upstream.Tor:
			return 0
		case r.Type.Plain():
			return 1
		}
		return 2
	}
	if c := cmp.Compare(tier(a), tier(b)); c != 0 {
		return c
	}
	if c := cmp.Compare(a.LatencyMS, b.LatencyMS); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// candidates returns the healthy upstreams keep admits, cheapest first,
// at most limit (0: all).
func (s *Scheduler) candidates(ctx context.Context, limit int, keep func(*upstream.Record) bool) ([]upstream.Record, error) {
	recs, err := s.c.Healthy(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing healthy upstreams: %w", err)
	}
	recs = slices.DeleteFunc(recs, func(r upstream.Record) bool { return !keep(&r) })
	slices.SortFunc(recs, func(a, b upstream.Record) int { return cost(&a, &b) })
	if limit > 0 && len(recs) > limit {
		recs = recs[:limit]
	}
	return recs, nil
}

// gauge counts checks in flight and remembers the most at once.
type gauge struct{ cur, peak atomic.Int64 }

func (g *gauge) enter() {
	n := g.cur.Add(1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
}

func (g *gauge) leave() { g.cur.Add(-1) }

// each runs fn for every record with at most n in flight.
func each(ctx context.Context, recs []upstream.Record, n int, g *gauge, fn func(ctx context.Context, i int)) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i := range recs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			g.enter()
			defer g.leave()
			fn(ctx, i)
		}()
	}
	wg.Wait()
}
