package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/proxypool/proxypool/internal/httpproxy"
	"github.com/proxypool/proxypool/internal/socks"
	"github.com/proxypool/proxypool/internal/upstream"
)

// dialError is why a request got no tunnel: no upstream at all (pickErr),
// or the last of its tries failed.
type dialError struct {
	pickErr error
	cause   upstream.Cause
	err     error
	tries   int
	last    string // upstream id of the last try
	addr    string
}

func (e *dialError) Error() string {
	if e.pickErr != nil {
		return e.pickErr.Error()
	}
	return fmt.Sprintf("dialing %s failed after %d %s: %s (last upstream %s: %v)", e.addr, e.tries, plural(e.tries, "try", "tries"), e.cause, e.last, e.err)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// connect picks upstreams and dials addr through them until one CONNECT
// succeeds, MaxTries were used or the total deadline passed. Each outcome
// is reported. first, when set, is the first try's upstream, already
// picked (by an event loop that handed the request over).
func (g *Gateway) connect(ctx context.Context, sel *upstream.Selector, addr string, first *upstream.Choice, deadline time.Time) (net.Conn, upstream.Choice, error) {
	if deadline.IsZero() {
		deadline = time.Now().Add(g.opts.TotalTimeout)
	}
	var triedBuf [16]string
	var (
		cause   upstream.Cause
		last    string
		lastErr error
		tries   int
	)
	// a request an event loop hands over goes on with its tries: sel.Tried
	// are the upstreams the loop tried, first is the next one
	from := 0
	if first != nil {
		from = copy(triedBuf[:], sel.Tried)
	}
	for attempt := from; attempt < g.opts.MaxTries; attempt++ {
		sel.Attempt, sel.Tried = attempt, triedBuf[:attempt]
		var ch upstream.Choice
		var err error
		if attempt == from && first != nil {
			ch = *first
		} else {
			ch, err = g.opts.Picker.Pick(sel)
		}
		if err != nil {
			if attempt == 0 {
				return nil, ch, &dialError{pickErr: err, addr: addr}
			}
			break // nothing left to fail over to
		}
		triedBuf[attempt] = ch.ID
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		to := min(left, g.tryTimeout(ch.LatencyMS))
		if attempt > 0 {
			g.stats.Retries.Add(1)
			if g.obs != nil {
				g.obs.Retry()
			}
		}
		dctx, cancel := context.WithTimeout(ctx, to)
		start := time.Now()
		c, err := g.dialFor(dctx, ch, addr) // a tunnel, or a forward proxy (forward.go)
		cancel()
		took := time.Since(start)
		if err == nil {
			if g.obs != nil {
				g.obs.DialLatency(outcomeOK, took)
			}
			g.report(ch.ID, start, took, upstream.CauseNone)
			g.stats.Tunnels.Add(1)
			return c, ch, nil
		}
		cause, lastErr, tries, last = g.classify(err), err, attempt+1, ch.ID
		if g.obs != nil {
			g.obs.DialLatency(cause.String(), took)
		}
		if ctx.Err() != nil { // the client left: not the upstream's fault
			break
		}
		if cause.IsTarget() {
			// the upstream works and says the target cannot be reached:
			// answer that, count nothing against the upstream, and do
			// not spend other upstreams on a dead target.
			break
		}
		g.report(ch.ID, start, took, cause)
	}
	if tries == 0 {
		cause, lastErr = upstream.CauseTimeout, context.DeadlineExceeded
	}
	return nil, upstream.Choice{}, &dialError{cause: cause, err: lastErr, tries: tries, last: last, addr: addr}
}

// isLocalErrno reports whether errno is this host running short.
func isLocalErrno(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EADDRINUSE, syscall.EADDRNOTAVAIL} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// tryTimeout gives one try 3× the upstream's known latency, within
// [MinDialTimeout, DialTimeout].
func (g *Gateway) tryTimeout(latencyMS float64) time.Duration {
	d := time.Duration(3 * latencyMS * float64(time.Millisecond))
	return min(max(d, g.opts.MinDialTimeout), g.opts.DialTimeout)
}

// report feeds one dial outcome back to the picker and the reporter; a
// local shortage (this host out of fds, ports or buffers) is no outcome
// of the upstream's and is not fed back: a gateway under fd pressure must
// not eject its whole pool.
func (g *Gateway) report(id string, at time.Time, took time.Duration, cause upstream.Cause) {
	if cause.IsLocal() {
		return
	}
	ms := float64(took) / float64(time.Millisecond)
	r := upstream.CheckResult{ID: id, At: at, OK: cause == upstream.CauseNone, Passive: true, Cause: cause, ConnectMS: ms, TotalMS: ms}
	g.opts.Picker.Observe(r)
	if g.opts.Reporter != nil {
		g.opts.Reporter.Submit(r)
	}
}

// classifyErr is the fallback cause classification (cmd wires the
// dialer's own).
func classifyErr(err error) upstream.Cause {
	var re *socks.ReplyError
	var ne net.Error
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return upstream.CauseTimeout
	case errors.Is(err, context.Canceled), errors.Is(err, net.ErrClosed):
		return upstream.CauseClosed
	case errors.Is(err, syscall.ECONNREFUSED):
		return upstream.CauseRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return upstream.CauseReset
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EHOSTDOWN), errors.Is(err, syscall.ENETDOWN):
		return upstream.CauseUnreachable
	case isLocalErrno(err):
		return upstream.CauseLocal
	case errors.As(err, &dnsErr):
		return upstream.CauseDNS
	case errors.Is(err, socks.ErrAuth):
		return upstream.CauseAuth
	case errors.As(err, &re):
		return socks.ReplyCode(re.Code).Cause
	case errors.As(err, &ne) && ne.Timeout():
		return upstream.CauseTimeout
	}
	return upstream.CauseOther
}

// socksCode is the SOCKS5 reply for a failed connect.
func socksCode(err error) byte {
	var de *dialError
	if !errors.As(err, &de) {
		return socks.GeneralFailure
	}
	switch {
	case errors.Is(de.pickErr, upstream.ErrUnknownGroup):
		return socks.NotAllowed
	case de.pickErr != nil:
		return socks.NetworkUnreachable
	}
	return socks.ReplyFor(de.cause)
}

// httpError is the status, RFC 9209 Proxy-Status and one-line body for a
// failed connect.
func httpError(err error) (int, string, string) {
	var de *dialError
	if !errors.As(err, &de) {
		return http.StatusBadGateway, httpproxy.ProxyStatus("proxy_internal_error", err.Error(), ""), "proxypool: " + err.Error()
	}
	if de.pickErr != nil {
		typ := "destination_unavailable"
		if errors.Is(de.pickErr, upstream.ErrUnknownGroup) {
			typ = "proxy_configuration_error"
		}
		return http.StatusServiceUnavailable, httpproxy.ProxyStatus(typ, de.pickErr.Error(), ""), "proxypool: " + de.pickErr.Error()
	}
	status, typ := de.cause.HTTP()
	details := fmt.Sprintf("%s after %d %s", de.cause, de.tries, plural(de.tries, "try", "tries"))
	return status, httpproxy.ProxyStatus(typ, details, de.last), "proxypool: " + de.Error()
}
