package slo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/upstream"
)

// PoolName is the name the whole pool goes by in Counter results, Status
// and the hooks (metrics label it "_pool").
const PoolName = ""

// Kinds of action, in order of cost, as OnAction, Status and the log name
// them.
const (
	KindRecheck  = "recheck"
	KindRefresh  = "refresh"
	KindNewNym   = "newnym"
	KindInstance = "instance"
)

// ErrNotYet is what a TorScaler's ScaleUp wraps when it is too early to
// add an instance (one of the group's instances is still bootstrapping).
var ErrNotYet = errors.New("not yet")

// Defaults for Options left zero (the config's slo section defaults).
const (
	DefaultCheckInterval     = 30 * time.Second
	DefaultMinActionInterval = 2 * time.Minute
	DefaultMaxBackoff        = 30 * time.Minute
)

// Floor is a group's promise: at least MinHealthy servable upstreams and
// MinExits distinct exit IPs among them. Zero is no floor.
type Floor struct {
	MinHealthy int `json:"min_healthy"`
	MinExits   int `json:"min_exits"`
}

// Set reports whether the floor asks for anything.
func (f Floor) Set() bool { return f.MinHealthy > 0 || f.MinExits > 0 }

// Met reports whether c is at or above the floor.
func (f Floor) Met(c Count) bool { return c.Healthy >= f.MinHealthy && c.Exits >= f.MinExits }

// Count is what a group has now.
type Count struct {
	Healthy int `json:"healthy"` // servable member upstreams
	Exits   int `json:"exits"`   // distinct exit IPs among them
}

// Group is one configured group with its floor.
type Group struct {
	Name string
	Floor
	// Member tells the group's upstreams (Member(pool.Group) gives the
	// pool's own test). Nil: the upstreams whose Group field is Name.
	// Used by NewCounter and StoreRechecker, not by the Guard itself.
	Member func(r *upstream.Record) bool
	// Tor marks a group served by generated tor instances: the newnym and
	// instance steps apply to it.
	Tor bool
}

// Counter reports each group's count, keyed by group name, and the whole
// pool's under PoolName. A group missing from the map counts as empty.
// NewCounter builds one over the store.
type Counter interface {
	Count(ctx context.Context) (map[string]Count, error)
}

// Rechecker makes a group's (PoolName: every) failing and dead upstreams due
// now and returns how many; 0 means there was nothing to re-check.
// StoreRechecker is one.
type Rechecker interface {
	Recheck(ctx context.Context, group string) (int, error)
}

// Refresher fetches sources early (those feeding the group, or all). It must
// keep each source's minimum interval (source.Fetcher.Refresh with force
// false) and report fetched false when every source was skipped by it.
// The Guard never calls it concurrently.
type Refresher interface {
	Refresh(ctx context.Context, group string) (fetched bool, err error)
}

// RefresherFunc is a func as a Refresher (source.Refresher's Early).
type RefresherFunc func(ctx context.Context, group string) (fetched bool, err error)

// Refresh calls f.
func (f RefresherFunc) Refresh(ctx context.Context, group string) (bool, error) { return f(ctx, group) }

// TorScaler acts on the tor instances serving a group. NewNym asks each for
// new circuits and returns how many it reached; ScaleUp brings up more
// instances from exits no instance uses yet, within tor.max-instances, and
// returns how many it added or asked for (0: none left). ScaleUp returns an
// error wrapping ErrNotYet when one of the group's instances is still
// young enough to fill the floor once bootstrapped: the Guard then retries
// the instance step at the next evaluation instead of counting the round
// as one that did not help. The Guard never calls it concurrently.
type TorScaler interface {
	NewNym(ctx context.Context, group string) (int, error)
	ScaleUp(ctx context.Context, group string) (added int, err error)
}

// Options configure a Guard. Zero durations take the defaults.
type Options struct {
	Groups []Group // groups with no floor are reported (OnFloor, Status) but never acted on
	Pool   Floor   // the whole pool's floor (slo.min-healthy, slo.min-exits)

	CheckInterval     time.Duration // how often floors are evaluated (slo.check-interval)
	MinActionInterval time.Duration // rounds of actions per group at least this far apart (slo.min-action-interval)
	// MaxBackoff caps the spacing of rounds for a group that every action
	// failed to help (default DefaultMaxBackoff, at least MinActionInterval).
	MaxBackoff time.Duration

	Counter   Counter   // required
	Rechecker Rechecker // nil: no recheck step
	Refresher Refresher // nil: no refresh step
	Tor       TorScaler // nil: no tor steps

	// OnFloor is called for the pool and every group on each evaluation
	// (metrics SLOMetrics.Floor); OnAction for every action taken
	// (SLOMetrics.Action). Both may be nil.
	OnFloor  func(group string, healthy, exits, minHealthy, minExits int)
	OnAction func(group, kind string)

	Logger logrus.FieldLogger
	Now    func() time.Time
}

// GroupStatus is one group's line of `proxypoolctl status`.
type GroupStatus struct {
	Group string `json:"group"` // PoolName ("") for the whole pool
	Count
	Floor
	Below      bool      `json:"below"`
	BelowSince time.Time `json:"below_since,omitzero"`
	// LastAction is the kind of the last action taken, at LastActionAt,
	// with what it did ("re-checking 7 upstreams now").
	LastAction       string    `json:"last_action,omitempty"`
	LastActionAt     time.Time `json:"last_action_at,omitzero"`
	LastActionDetail string    `json:"last_action_detail,omitempty"`
	// Waiting says why the instance step waits ("tor@9062 started 20s
	// ago may still bootstrap"); the step is retried at the next check.
	Waiting string `json:"waiting,omitempty"`
	// Exhausted: a whole round of actions did not help; the group waits
	// until NextRound before trying again.
	Exhausted bool      `json:"exhausted,omitempty"`
	NextRound time.Time `json:"next_round,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// Action is the last action as one line: its kind and detail, or what the
// instance step waits for, which is the more urgent news.
func (s GroupStatus) Action() string {
	if s.Waiting != "" {
		return "waiting: " + s.Waiting
	}
	if s.LastActionDetail != "" {
		return s.LastAction + ": " + s.LastActionDetail
	}
	return s.LastAction
}

// Guard evaluates the floors and acts on them. Its methods are safe for
// concurrent use.
type Guard struct {
	o      Options
	log    logrus.FieldLogger
	now    func() time.Time
	errLog *logging.Limiter

	mu       sync.Mutex // guards states' fields
	states   []*state   // pool first, then Options.Groups in order
	countErr string

	refreshMu sync.Mutex // serializes Refresher
	torMu     sync.Mutex // serializes TorScaler
}

type state struct {
	name   string
	floor  Floor
	rungs  []string
	status GroupStatus

	inRound    bool
	rung       int // next rung of the current round
	roundStart time.Time
	roundCount Count
	nextRound  time.Time
	backoff    time.Duration
}

// New checks o and returns a Guard.
func New(o Options) (*Guard, error) {
	if o.Counter == nil {
		return nil, errors.New("slo: no counter")
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.MinActionInterval <= 0 {
		o.MinActionInterval = DefaultMinActionInterval
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinActionInterval)
	if o.Logger == nil {
		l := logrus.New()
		l.Out = io.Discard
		o.Logger = l
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	g := &Guard{o: o, log: o.Logger.WithField(logging.FieldComponent, "slo"), now: o.Now, errLog: logging.Every(o.MinActionInterval)}
	seen := map[string]bool{}
	add := func(name string, f Floor, tor bool) error {
		if f.MinHealthy < 0 || f.MinExits < 0 {
			return fmt.Errorf("slo: group %q: negative floor", name)
		}
		var rungs []string
		if o.Rechecker != nil {
			rungs = append(rungs, KindRecheck)
		}
		if o.Refresher != nil {
			rungs = append(rungs, KindRefresh)
		}
		if tor && o.Tor != nil {
			rungs = append(rungs, KindNewNym, KindInstance)
		}
		g.states = append(g.states, &state{name: name, floor: f, rungs: rungs, backoff: o.MinActionInterval,
			status: GroupStatus{Group: name, Floor: f}})
		return nil
	}
	if err := add(PoolName, o.Pool, false); err != nil {
		return nil, err
	}
	for i, gr := range o.Groups {
		if gr.Name == "" {
			return nil, fmt.Errorf("slo: group %d has no name", i)
		}
		if seen[gr.Name] {
			return nil, fmt.Errorf("slo: group %q defined twice", gr.Name)
		}
		seen[gr.Name] = true
		if err := add(gr.Name, gr.Floor, gr.Tor); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// Run evaluates the floors now and then every CheckInterval until ctx is
// done; it returns nil then.
func (g *Guard) Run(ctx context.Context) error {
	t := time.NewTicker(g.o.CheckInterval)
	defer t.Stop()
	for {
		_ = g.Check(ctx) // logged inside
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Check evaluates every floor once and takes the next step for each group
// below its floor (groups in parallel), returning when the steps are done.
// Run calls it every CheckInterval; `--once` style callers may call it
// directly. The error is the counter's; action errors are logged and shown
// in Status.
func (g *Guard) Check(ctx context.Context) error {
	counts, err := g.o.Counter.Count(ctx)
	now := g.now()
	if err != nil {
		g.mu.Lock()
		g.countErr = err.Error()
		g.mu.Unlock()
		g.errLog.Warnf(g.log, "count", "evaluating pool floors: %v", err)
		return fmt.Errorf("evaluating pool floors: %w", err)
	}
	g.mu.Lock()
	g.countErr = ""
	var todo []*state
	for _, s := range g.states {
		c := counts[s.name]
		s.status.Count = c
		below := s.floor.Set() && !s.floor.Met(c)
		log := g.groupLog(s.name).WithFields(logrus.Fields{
			"healthy": c.Healthy, "exits": c.Exits, "min_healthy": s.floor.MinHealthy, "min_exits": s.floor.MinExits,
		})
		switch {
		case !below && s.status.Below:
			log.WithField(logging.FieldDuration, roundDur(now.Sub(s.status.BelowSince))).Info(what(s.name) + " is back at its floor")
			s.status.Below, s.status.BelowSince, s.status.Exhausted, s.status.Waiting = false, time.Time{}, false, ""
			// nextRound stays: a group that flaps around its floor
			// still gets at most one round per min-action-interval.
			s.inRound, s.rung, s.backoff = false, 0, g.o.MinActionInterval
		case below && !s.status.Below:
			log.Warn(what(s.name) + " is below its floor; acting")
			s.status.Below, s.status.BelowSince = true, now
		}
		if below {
			todo = append(todo, s)
		}
	}
	g.mu.Unlock()
	if g.o.OnFloor != nil { // outside the lock: a hook may read Status
		for _, s := range g.states {
			c := counts[s.name]
			g.o.OnFloor(s.name, c.Healthy, c.Exits, s.floor.MinHealthy, s.floor.MinExits)
		}
	}

	var wg sync.WaitGroup
	for _, s := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.step(ctx, s, now)
		}()
	}
	wg.Wait()
	return nil
}

// roundDur rounds d for a log line: seconds, or milliseconds below one.
func roundDur(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

func what(name string) string {
	if name == PoolName {
		return "the pool"
	}
	return "group " + name
}

func (g *Guard) groupLog(name string) logrus.FieldLogger {
	if name == PoolName {
		return g.log.WithField("scope", "pool")
	}
	return g.log.WithField(logging.FieldGroup, name)
}

// step advances s's round of actions by one action (skipping steps that
// find nothing to do).
func (g *Guard) step(ctx context.Context, s *state, now time.Time) {
	g.mu.Lock()
	log := g.groupLog(s.name)
	c := s.status.Count
	if s.inRound && s.rung >= len(s.rungs) {
		// The round is over and its effects have had a check-interval
		// to show: did it help?
		s.inRound = false
		if c.Healthy > s.roundCount.Healthy || c.Exits > s.roundCount.Exits {
			s.backoff = g.o.MinActionInterval
			s.status.Exhausted = false
			s.nextRound = s.roundStart.Add(s.backoff)
		} else {
			s.backoff = min(2*s.backoff, g.o.MaxBackoff)
			s.status.Exhausted = true
			s.nextRound = s.roundStart.Add(s.backoff)
			log.WithFields(logrus.Fields{
				"healthy": c.Healthy, "exits": c.Exits, "min_healthy": s.floor.MinHealthy, "min_exits": s.floor.MinExits,
				"next_round": roundDur(s.nextRound.Sub(now)),
			}).Warn(what(s.name) + " is still below its floor after every action (" + strings.Join(s.rungs, ", ") + "); backing off")
		}
		s.status.NextRound = s.nextRound
	}
	if !s.inRound {
		if now.Before(s.nextRound) || len(s.rungs) == 0 {
			g.mu.Unlock()
			return
		}
		s.inRound, s.rung, s.roundStart, s.roundCount = true, 0, now, c
		// Set now, so that a group that recovers mid-round and dips
		// again still waits for it.
		s.nextRound = now.Add(s.backoff)
		s.status.NextRound = time.Time{}
	}
	g.mu.Unlock()

	for {
		g.mu.Lock()
		if s.rung >= len(s.rungs) {
			g.mu.Unlock()
			return
		}
		kind := s.rungs[s.rung]
		s.rung++
		g.mu.Unlock()

		did, detail, err := g.act(ctx, s.name, kind)
		l := log.WithField("action", kind)
		g.mu.Lock()
		if errors.Is(err, ErrNotYet) {
			// Not a failure and not "nothing to do": stay on this
			// step and try it again at the next evaluation.
			s.rung--
			first := s.status.Waiting == ""
			s.status.Waiting, s.status.LastError = err.Error(), ""
			g.mu.Unlock()
			if first {
				l.WithError(err).Info(what(s.name) + " is below its floor; waiting before another tor instance")
			} else {
				l.WithError(err).Debug(what(s.name) + " is below its floor; the tor instance step still waits")
			}
			return
		}
		s.status.Waiting = ""
		if err != nil {
			s.status.LastError = kind + ": " + err.Error()
			g.mu.Unlock()
			l.WithError(err).Warn(what(s.name) + " is below its floor; " + kind + " failed")
			if ctx.Err() != nil {
				return
			}
			continue
		}
		if !did {
			g.mu.Unlock()
			l.Debug(what(s.name) + " is below its floor; " + detail)
			continue
		}
		s.status.LastError = ""
		s.status.LastAction, s.status.LastActionAt, s.status.LastActionDetail = kind, now, detail
		g.mu.Unlock()
		if g.o.OnAction != nil {
			g.o.OnAction(s.name, kind)
		}
		l.WithFields(logrus.Fields{"healthy": c.Healthy, "exits": c.Exits}).Info(what(s.name) + " is below its floor: " + detail)
		return
	}
}

// act runs one action; did reports whether it did anything.
func (g *Guard) act(ctx context.Context, group, kind string) (did bool, detail string, err error) {
	switch kind {
	case KindRecheck:
		n, err := g.o.Rechecker.Recheck(ctx, group)
		if err != nil || n == 0 {
			return false, "no failing upstream to re-check", err
		}
		return true, fmt.Sprintf("re-checking %d failing upstreams now", n), nil
	case KindRefresh:
		g.refreshMu.Lock()
		defer g.refreshMu.Unlock()
		fetched, err := g.o.Refresher.Refresh(ctx, group)
		if err != nil || !fetched {
			return false, "every source was fetched less than its min-interval ago", err
		}
		return true, "refreshed sources early", nil
	case KindNewNym:
		g.torMu.Lock()
		defer g.torMu.Unlock()
		n, err := g.o.Tor.NewNym(ctx, group)
		if err != nil || n == 0 {
			return false, "no tor instance to send NEWNYM to", err
		}
		return true, fmt.Sprintf("sent NEWNYM to %d tor instances", n), nil
	case KindInstance:
		g.torMu.Lock()
		defer g.torMu.Unlock()
		n, err := g.o.Tor.ScaleUp(ctx, group)
		if errors.Is(err, ErrNotYet) {
			return false, "", err
		}
		if err != nil || n == 0 {
			return false, "no unused exit or no room under tor.max-instances for another tor instance", err
		}
		return true, fmt.Sprintf("started %d more tor instances", n), nil
	}
	return false, "", fmt.Errorf("unknown action %q", kind)
}

// Status returns the pool's and every group's line, pool first.
func (g *Guard) Status() []GroupStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]GroupStatus, len(g.states))
	for i, s := range g.states {
		out[i] = s.status
		if out[i].LastError == "" && g.countErr != "" {
			out[i].LastError = g.countErr
		}
	}
	return out
}

// StatusNow is Status with every group counted now rather than at the
// last check (which may be a whole check interval old): what status shows.
// It takes no action; when counting fails it is Status.
func (g *Guard) StatusNow(ctx context.Context) []GroupStatus {
	out := g.Status()
	counts, err := g.o.Counter.Count(ctx)
	if err != nil {
		return out
	}
	for i := range out {
		out[i].Count = counts[out[i].Group]
		out[i].Below = out[i].Floor.Set() && !out[i].Floor.Met(out[i].Count)
	}
	return out
}

// Summary is one line for sd_notify STATUS: the groups below their floor,
// or that every floor is met.
func (g *Guard) Summary() string {
	var below []string
	floors := 0
	for _, s := range g.Status() {
		if s.Floor.Set() {
			floors++
		}
		if !s.Below {
			continue
		}
		name := s.Group
		if name == PoolName {
			name = "pool"
		}
		line := fmt.Sprintf("%s below floor (%d/%d healthy, %d/%d exits)", name, s.Healthy, s.MinHealthy, s.Exits, s.MinExits)
		if s.LastAction != "" {
			line += ", last action " + s.LastAction
		}
		below = append(below, line)
	}
	switch {
	case len(below) > 0:
		return strings.Join(below, "; ")
	case floors == 0:
		return "no floors configured"
	}
	return "every floor met"
}
