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

	"github.com/proxypool/proxypool/internal/gateway/failover"
	"github.com/proxypool/proxypool/internal/httpproxy"
	"github.com/proxypool/proxypool/internal/socks"
	"github.com/proxypool/proxypool/internal/upstream"
)

// connect dials f's target through the upstreams f gives until one
// CONNECT succeeds, the tries are used or the deadline passed. A request an
// event loop handed over goes on with the tries the loop made.
func (g *Gateway) connect(ctx context.Context, f *failover.Failover) (net.Conn, upstream.Choice, error) {
	for {
		ch, ok := f.Next(time.Now())
		if !ok {
			return nil, upstream.Choice{}, f.Err()
		}
		start := time.Now()
		dctx, cancel := context.WithTimeout(ctx, f.Begin(start))
		c, err := g.dialFor(dctx, f, ch) // a tunnel, or a forward proxy (forward.go)
		cancel()
		if err == nil {
			f.Succeeded(time.Now())
			return c, ch, nil
		}
		if ctx.Err() != nil { // the client left: not the upstream's fault
			f.Abandoned(time.Now(), err)
			return nil, upstream.Choice{}, f.Err()
		}
		if !f.Failed(time.Now(), err) {
			return nil, upstream.Choice{}, f.Err()
		}
	}
}

// reportLoop feeds a loop's dial outcome back like report, without ever
// blocking the loop on the reporter.
func (g *Gateway) reportLoop(r upstream.CheckResult) {
	g.opts.Picker.Observe(r)
	if g.reports != nil {
		select {
		case g.reports <- r:
		default: // reporter behind: the picker already knows
		}
	}
}

// report feeds one dial outcome back to the picker and the reporter.
func (g *Gateway) report(r upstream.CheckResult) {
	g.opts.Picker.Observe(r)
	if g.opts.Reporter != nil {
		g.opts.Reporter.Submit(r)
	}
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
	var de *failover.Error
	if !errors.As(err, &de) {
		return socks.GeneralFailure
	}
	var te *upstream.TargetError
	switch {
	case errors.As(de.Target, &te) && te.Denied:
		return socks.NotAllowed
	case de.Target != nil:
		return socks.AddressUnsupported
	case errors.Is(de.PickErr, upstream.ErrUnknownGroup):
		return socks.NotAllowed
	case de.PickErr != nil:
		return socks.NetworkUnreachable
	}
	return socks.ReplyFor(de.Cause)
}

// httpError is the status, RFC 9209 Proxy-Status and one-line body for a
// failed connect. They name the cause and the last upstream's id, never
// its address nor the error's own text (it names addresses and protocol
// details of the pool): those go to the log, and to the body only when
// the debug header is on.
func (g *Gateway) httpError(err error) (int, string, string) {
	debug := ""
	if g.opts.InfoHeader != "" {
		debug = " [debug: " + err.Error() + "]"
	}
	var de *failover.Error
	if !errors.As(err, &de) {
		return http.StatusBadGateway, httpproxy.ProxyStatus("proxy_internal_error", "", ""), "proxypool: internal error" + debug
	}
	if de.Target != nil {
		return http.StatusBadRequest, httpproxy.ProxyStatus("http_request_error", de.Target.Error(), ""), "proxypool: " + de.Target.Error()
	}
	if de.PickErr != nil {
		typ := "destination_unavailable"
		if errors.Is(de.PickErr, upstream.ErrUnknownGroup) {
			typ = "proxy_configuration_error"
		}
		// the pool's words: groups and countries as the client asked
		return http.StatusServiceUnavailable, httpproxy.ProxyStatus(typ, de.PickErr.Error(), ""), "proxypool: " + de.PickErr.Error()
	}
	status, typ := de.Cause.HTTP()
	tries := fmt.Sprintf("%d %s", de.Tries, failover.Plural(de.Tries, "try", "tries"))
	details := fmt.Sprintf("%s after %s", de.Cause, tries)
	body := fmt.Sprintf("proxypool: %s failed after %s: %s (last upstream %s)", de.Addr, tries, de.Cause, de.Last)
	return status, httpproxy.ProxyStatus(typ, details, de.Last), body + debug
}
