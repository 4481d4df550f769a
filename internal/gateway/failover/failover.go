// Package failover is one request's way through the pool, the same for
// the gateway's goroutine path and its event loops: which upstream to try
// next, what each try's outcome does (picker, reporter, metrics), the
// request's deadline and the cause of its last failure. A request an event
// loop hands to the goroutine path goes on with the same value, so its
// tries so far count once.
package failover

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// MaxTries is the most tries one request may be given (Env.MaxAttempts'
// bound).
const MaxTries = 16

// Picker chooses the upstream for a try (the pool).
type Picker interface {
	Pick(sel *upstream.Selector) (upstream.Choice, error)
}

// Observer is told about each try, for metrics (the gateway's Observer).
type Observer interface {
	DialLatency(cause string, d time.Duration)
	Retry()
}

// Route is where one listener's requests go: the group its clients are
// pinned to ("" for the whole pool) and the Picker holding the listener's
// strategy and its state (a port's own counters and sessions). A reload
// swaps a listener's Route whole; a request keeps the one it began with.
type Route struct {
	Group  string
	Picker Picker
}

// Env is what every request's tries share. One gateway has one per way of
// reporting (the event loops must never block on the reporter).
type Env struct {
	// Report takes each passive outcome an upstream is to blame or
	// credit for (not a local shortage, not a dead target).
	Report func(upstream.CheckResult)
	// Classify names a failed try's cause.
	Classify func(error) upstream.Cause
	Observer Observer // nil: none
	// Retries and Tunnels are the gateway's counters of extra tries and
	// tunnels established.
	Retries, Tunnels *atomic.Uint64
	NoPipe           *NoPipeline

	// MaxTries is how many slow failures (a timeout, a broken
	// handshake: Instant says which are not) end a request; MaxAttempts
	// caps every try, instant ones included (at most the constant
	// MaxTries; 0: MaxTries of the Env's). Like HAProxy's redispatch on
	// conn-failure: a refused connect costs a round trip, so the request
	// goes on to other upstreams while its deadline allows.
	MaxTries, MaxAttempts int
	Total                 time.Duration // all tries of one request
	MinTry, MaxTry        time.Duration // bounds of one try
}

// Failover is one request's tries. Begin it with Env.Start; a zero value
// is not usable.
type Failover struct {
	env      *Env
	picker   Picker
	sel      *upstream.Selector
	addr     string
	deadline time.Time
	tried    [MaxTries]string
	n        int // tries begun and ended (the index of the next one)
	slow     int // of those, the failures that count against MaxTries
	cur      upstream.Choice
	held     bool // cur is picked and its try not begun yet
	start    time.Time
	pickErr  error
	cause    upstream.Cause
	err      error
	last     string // upstream id of the last failed try
	target   error  // the target can never be reached: no try at all

	okTook      time.Duration // the last tunnel's handshake
	unconfirmed bool          // Succeeded, neither Confirm nor Broke yet
}

// Start begins f's tries for a request to addr selected by sel and picked
// by pk (f keeps sel and sets its Attempt and Tried). A zero deadline is
// now + Total. A
// target no upstream can reach (upstream.CheckTarget) gets no try: Next
// returns false at once and Err says why, so both of the gateway's paths
// answer it before any dial and no upstream is charged for it.
func (e *Env) Start(f *Failover, sel *upstream.Selector, pk Picker, addr string, now, deadline time.Time) {
	if deadline.IsZero() {
		deadline = now.Add(e.Total)
	}
	*f = Failover{env: e, picker: pk, sel: sel, addr: addr, deadline: deadline, target: upstream.CheckTarget(addr)}
}

// Use makes f's further tries report through e (a request handed from an
// event loop to the goroutine path).
func (f *Failover) Use(e *Env) { f.env = e }

// Addr is the request's target.
func (f *Failover) Addr() string { return f.addr }

// Client is the address of the request's client ("" when unknown).
func (f *Failover) Client() string { return f.sel.Client }

// Deadline bounds all of the request's tries.
func (f *Failover) Deadline() time.Time { return f.deadline }

// Current is the upstream of the try under way (or held for the next).
func (f *Failover) Current() upstream.Choice { return f.cur }

// Next returns the upstream for the next try: the one already picked if
// the request was handed over before its try began, else a new pick. It
// returns false when no try is left (tries used up, nothing left to pick,
// or past the deadline); Err then says why the request failed.
func (f *Failover) Next(now time.Time) (upstream.Choice, bool) {
	if f.target != nil {
		return upstream.Choice{}, false
	}
	if !f.held {
		if f.slow >= f.env.MaxTries || f.n >= f.env.attempts() {
			return upstream.Choice{}, false
		}
		f.sel.Attempt, f.sel.Tried = f.n, f.tried[:f.n]
		ch, err := f.picker.Pick(f.sel)
		if err != nil {
			if f.n == 0 {
				f.pickErr = err
			}
			return upstream.Choice{}, false // nothing left to fail over to
		}
		f.cur, f.held = ch, true
	}
	if !f.deadline.After(now) {
		f.held = false
		return upstream.Choice{}, false
	}
	return f.cur, true
}

// Begin starts the try of the upstream Next returned and returns how long
// it may take: 3× the upstream's known latency within [MinTry, MaxTry],
// and no later than the deadline.
func (f *Failover) Begin(now time.Time) time.Duration {
	e := f.env
	f.held = false
	f.tried[f.n] = f.cur.ID
	f.start = now
	if f.n > 0 {
		e.Retries.Add(1)
		if e.Observer != nil {
			e.Observer.Retry()
		}
	}
	d := time.Duration(3 * f.cur.LatencyMS * float64(time.Millisecond))
	return min(f.deadline.Sub(now), min(max(d, e.MinTry), e.MaxTry))
}

// Pipeline reports whether the current try may pipeline its SOCKS5
// handshake: its probe proved it, and it has not stalled on one since.
func (f *Failover) Pipeline(now time.Time) bool {
	return f.cur.Caps.Has(upstream.CapPipeline) && !f.env.NoPipe.has(f.cur.ID, now)
}

// Stalled records that the current upstream stalled on a pipelined
// handshake, so later tries to it are sequential.
func (f *Failover) Stalled(now time.Time) { f.env.NoPipe.add(f.cur.ID, now) }

// Succeeded records that the current try gave a tunnel. The upstream is
// credited only once the stream proves itself (Confirm), so that one that
// completes every handshake and then breaks the stream (Broke) is counted
// failing, not reset to healthy by each handshake.
func (f *Failover) Succeeded(now time.Time) {
	e := f.env
	took := now.Sub(f.start)
	if e.Observer != nil {
		e.Observer.DialLatency(OutcomeOK, took)
	}
	f.okTook, f.unconfirmed = took, true
	e.Tunnels.Add(1)
}

// Confirm credits the upstream of the last tunnel: a byte of the target's
// reached the client, or the tunnel ended without a sign against it. Only
// the first call after Succeeded counts.
func (f *Failover) Confirm() {
	if f.unconfirmed {
		f.unconfirmed = false
		f.report(f.okTook, upstream.CauseNone)
	}
}

// Broke records that the tunnel of the last Succeeded broke before a byte
// of the target's reached the client (closed, reset, or answered with
// bytes no server of the client's protocol sends): a failure of the
// upstream, counted like a failed dial. The caller may fail over with Next
// only where nothing of the client's reached the upstream.
func (f *Failover) Broke(now time.Time, cause upstream.Cause, err error) {
	if !f.unconfirmed {
		return
	}
	f.unconfirmed = false
	f.end(now, cause, err)
	f.report(f.okTook, cause)
}

// Failed records that the current try failed with err and reports whether
// another upstream may be tried: not when the upstream worked and the
// target could not be reached (the client gets that answer at once, no
// other upstream is spent on a dead target and nothing counts against
// this one). A refusal by the upstream's own rules (Cause.IsPolicy) counts
// nothing either, but the next upstream may have other rules.
func (f *Failover) Failed(now time.Time, err error) bool {
	return f.FailedAs(now, f.classify(err), err)
}

// FailedAs is Failed for a cause the caller already knows (a handshake
// answer an event loop parsed itself).
func (f *Failover) FailedAs(now time.Time, cause upstream.Cause, err error) bool {
	took := f.end(now, cause, err)
	if cause.IsTarget() {
		return cause.IsPolicy()
	}
	f.report(took, cause)
	return true
}

// Abandoned records that the current try failed because the client left:
// not the upstream's fault, so nothing is reported.
func (f *Failover) Abandoned(now time.Time, err error) { f.end(now, f.classify(err), err) }

// classify is the one place a try's error gets its cause.
func (f *Failover) classify(err error) upstream.Cause { return f.env.Classify(err) }

func (f *Failover) end(now time.Time, cause upstream.Cause, err error) time.Duration {
	took := now.Sub(f.start)
	if o := f.env.Observer; o != nil {
		o.DialLatency(cause.String(), took)
	}
	f.cause, f.err, f.last = cause, err, f.cur.ID
	f.n++
	if !Instant(err) {
		f.slow++
	}
	return took
}

// attempts is the cap on all of a request's tries.
func (e *Env) attempts() int {
	if e.MaxAttempts <= 0 {
		return min(e.MaxTries, MaxTries)
	}
	return min(e.MaxAttempts, MaxTries)
}

// Instant reports whether a try's error came at once from the network:
// the upstream's host refused the connection (nothing listens there) or
// said it cannot be reached. Such a try costs a round trip, not a timeout,
// and does not count against Env.MaxTries.
func Instant(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// report feeds one try's outcome back; a local shortage is no outcome of
// the upstream's (a gateway out of fds must not eject its whole pool).
func (f *Failover) report(took time.Duration, cause upstream.Cause) {
	if cause.IsLocal() {
		return
	}
	ms := float64(took) / float64(time.Millisecond)
	client := f.sel.Client
	if errors.Is(f.err, syscall.ECONNREFUSED) {
		// the upstream's own host refused the connection: no target a
		// client asks for can cause that, so it spends no client's
		// ejection budget (a lone client must not keep dead upstreams)
		client = ""
	}
	f.env.Report(upstream.CheckResult{ID: f.cur.ID, At: f.start, OK: cause == upstream.CauseNone, Passive: true, Cause: cause, ConnectMS: ms, TotalMS: ms, Client: client})
}

// Err is why the request got no tunnel, once Next returned false or a
// Failed said not to go on.
func (f *Failover) Err() *Error {
	if f.target != nil {
		return &Error{Target: f.target, Cause: upstream.CauseTargetDenied, Addr: f.addr}
	}
	if f.pickErr != nil {
		return &Error{PickErr: f.pickErr, Addr: f.addr}
	}
	if f.n == 0 {
		return &Error{Cause: upstream.CauseTimeout, Err: context.DeadlineExceeded, Addr: f.addr}
	}
	return &Error{Cause: f.cause, Err: f.err, Tries: f.n, Last: f.last, Addr: f.addr}
}

// Error is why a request got no tunnel: a target no upstream can reach
// (Target, an *upstream.TargetError), no upstream at all (PickErr), or the
// last of its tries failed.
type Error struct {
	Target  error
	PickErr error
	Cause   upstream.Cause
	Err     error
	Tries   int
	Last    string // upstream id of the last try
	Addr    string
}

func (e *Error) Error() string {
	if e.Target != nil {
		return e.Target.Error()
	}
	if e.PickErr != nil {
		return e.PickErr.Error()
	}
	return fmt.Sprintf("dialing %s failed after %d %s: %s (last upstream %s: %v)", e.Addr, e.Tries, Plural(e.Tries, "try", "tries"), e.Cause, e.Last, e.Err)
}

// Plural is one or many by n.
func Plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
