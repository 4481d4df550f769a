package probe

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Dialer opens a connection to addr through an upstream. The context's
// deadline must bound the connect and the proxy handshake.
type Dialer interface {
	DialContext(ctx context.Context, u upstream.Entry, addr string) (net.Conn, error)
}

// nonceHeader is sent with every judge request; a judge that echoes headers
// must echo it unchanged, or something in between rewrote the request.
const nonceHeader = "X-Proxypool-Nonce"

const maxJudgeBody = 64 << 10

// Check runs one active check of u and returns its result. It never returns
// an error: failures are results with OK false, a Cause and its Detail.
//
// The check asks of u what the gateway will: a tunnel (CONNECT, for HTTPS
// and SOCKS clients) and, for a plain HTTP upstream, forwarding of
// absolute-URI requests (plain http:// clients), both against the judge
// and at once. An HTTP upstream is OK if either works and its Caps say
// which; the exit, anonymity and headers are those of the tunnel when it
// works (the gateway then tunnels every request), else of forwarding.
// Every other kind tunnels by construction and gets CapConnect when OK.
//
// An untyped upstream (a bare host:port nobody named the protocol of) is
// tried as each of upstream.DiscoverKinds at once, within the same
// timeout; the result is the first in that order whose check reached the
// judge, with Kind set, so the store keeps what it speaks.
func (p *Prober) Check(ctx context.Context, u upstream.Upstream) upstream.CheckResult {
	if u.Untyped() {
		return p.discover(ctx, u)
	}
	start := p.now()
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	if u.Type != upstream.HTTP || boolOpt(u, "tls") || !p.anyHTTPJudge() {
		// An https upstream is checked for CONNECT only: the gateway
		// forwards only over plain connections to an upstream.
		res := p.checkVia(ctx, u, start, routeTunnel)
		if res.OK {
			res.Caps |= upstream.CapConnect
		}
		return res
	}
	fwd := make(chan upstream.CheckResult, 1)
	go func() { fwd <- p.checkVia(ctx, u, start, routeForward) }()
	res := p.checkVia(ctx, u, start, routeTunnel)
	f := <-fwd
	switch {
	case res.Untrusted || f.Untrusted:
		// something on one path rewrote the judge's answer or our
		// request: the upstream is not to be trusted on either
		if !res.Untrusted {
			res = f
		}
		res.OK = false
	case res.OK:
		res.Caps |= upstream.CapConnect
		if f.OK {
			res.Caps |= upstream.CapForward
		}
	case f.OK:
		res = f
		res.Caps |= upstream.CapForward
	case f.Cause != res.Cause || f.Detail != res.Detail:
		// the tunnel's cause leads: it is the class the metrics count
		fd := "forward: " + upstream.Failure(f.Cause, f.Detail)
		if res.Detail != "" {
			fd = res.Detail + "; " + fd
		}
		res.Detail = fd
	}
	return res
}

// discover checks untyped u as every kind it may speak (see Check).
func (p *Prober) discover(ctx context.Context, u upstream.Upstream) upstream.CheckResult {
	kinds := upstream.DiscoverKinds
	results := make([]upstream.CheckResult, len(kinds))
	var wg sync.WaitGroup
	for i, k := range kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			try := u.As(k)
			results[i] = p.Check(ctx, try)
			if f, ok := p.dialer.(interface{ Forget(id string) }); ok {
				f.Forget(try.ID) // the kept kind is dialled under u's own ID
			}
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.OK || r.Reached() {
			r.ID, r.Kind = u.ID, kinds[i]
			return r
		}
	}
	// nothing answered as any kind: the first kind's cause, every try's detail
	r := results[0]
	var b strings.Builder
	b.WriteString("no protocol answered:")
	for i, x := range results {
		fmt.Fprintf(&b, " %s: %s;", kinds[i], upstream.Failure(x.Cause, x.Detail))
	}
	r.ID, r.Detail = u.ID, strings.TrimSuffix(b.String(), ";")
	return r
}

// route is how a check reaches the judge.
type route uint8

const (
	routeDirect  route = iota // no upstream: our own address (Uplink)
	routeTunnel               // through the Dialer (CONNECT for an HTTP upstream)
	routeForward              // an absolute-URI request sent to an HTTP upstream itself
)

func (p *Prober) anyHTTPJudge() bool {
	for _, j := range p.judges {
		if j.Scheme == "http" {
			return true
		}
	}
	return false
}

// checkVia is one check of u over one route: the judge chain in order
// (a forward check skips https judges, which only a tunnel reaches), the
// echo judged for tampering, local routing and anonymity, then the
// target, when configured.
func (p *Prober) checkVia(ctx context.Context, u upstream.Upstream, start time.Time, via route) upstream.CheckResult {
	res := upstream.CheckResult{ID: u.ID, At: start}
	var lastErr error
	for i, judge := range p.judges {
		if via == routeForward && judge.Scheme != "http" {
			continue
		}
		r, err := p.fetch(ctx, u, judge, via)
		if err == nil {
			res.ConnectMS, res.TTFBMS, res.TotalMS = r.connectMS, r.ttfbMS, ms(p.now().Sub(start))
			res.Headers = r.echo.Headers
			res.Caps |= r.caps
			if r.tamper != nil {
				// what the answer claims is not the judge's: no exit
				res.Untrusted, res.Cause, res.Detail = true, upstream.CauseTamper, tamperDetail(r.tamper)
				return res
			}
			res.ExitIP = r.echo.IP
			// what the judge saw is kept whatever the verdict (list shows it)
			res.Anonymity = classify(r.echo, p.realIP)
			if p.opts.Country != nil && res.ExitIP != "" {
				res.Country = p.opts.Country(res.ExitIP)
			}
			if p.opts.Quality != nil && res.ExitIP != "" {
				res.Quality = p.opts.Quality(res.ExitIP)
			}
			if p.opts.Fits != nil && res.Country != "" {
				if err := p.opts.Fits(u, res.Country); err != nil {
					res.Cause, res.Detail = upstream.CauseExitCountry, err.Error()
					return res
				}
			}
			if res.ExitIP != "" && p.realIP != "" && sameSlash24(res.ExitIP, p.realIP) {
				res.Cause, res.Detail = upstream.CauseRoutesLocally, "exit "+res.ExitIP+" is in our own network"
				return res
			}
			if res.Anonymity == upstream.AnonTransparent {
				res.Cause, res.Detail = upstream.CauseTransparent, "the judge saw our real address"
				return res
			}
			if p.target != nil {
				if err := p.checkTarget(ctx, u, via); err != nil {
					res.Cause, res.Detail = upstream.CauseTargetCheck, err.Error()
					return res
				}
			}
			res.IPv6 = p.reachesIPv6(ctx, u, via)
			res.OK = true
			return res
		}
		lastErr = err
		var de *dialError
		if errors.As(err, &de) && !p.blamesTarget(de) || ctx.Err() != nil || i == len(p.judges)-1 {
			break // the upstream itself failed (or time is up): another judge won't help
		}
	}
	res.TotalMS = ms(p.now().Sub(start))
	res.Cause, res.Detail = p.cause(ctx, lastErr)
	return res
}

// reachesIPv6 asks the IPv6 judge through u: true when it answers,
// untampered, that it saw an IPv6 origin (an IPv4 one means the judge
// also listens on IPv4 and the upstream went there).
func (p *Prober) reachesIPv6(ctx context.Context, u upstream.Upstream, via route) bool {
	if p.judge6 == nil || via == routeForward && p.judge6.Scheme != "http" {
		return false
	}
	r, err := p.fetch(ctx, u, p.judge6, via)
	if err != nil || r.tamper != nil {
		return false
	}
	a, err := netip.ParseAddr(r.echo.IP)
	return err == nil && a.Is6() && !a.Is4In6()
}

// blamesTarget reports whether the upstream worked and answered that it
// could not reach this judge (it refused, had no route, timed out): the
// judge may be down, so the next one in the chain is asked, or a judge
// that is down fails every upstream.
func (p *Prober) blamesTarget(de *dialError) bool {
	return p.opts.Classify != nil && p.opts.Classify(de.err).IsTarget()
}

// cause names why the judge chain failed: a dial error by the dialer's
// classification, with its text as the detail.
func (p *Prober) cause(ctx context.Context, err error) (upstream.Cause, string) {
	if err == nil {
		return upstream.CauseOther, "no judge was asked"
	}
	var de *dialError
	if errors.As(err, &de) {
		c := upstream.CauseOther
		if p.opts.Classify != nil {
			c = p.opts.Classify(de.err)
		}
		switch {
		case c == upstream.CauseNone, c == upstream.CauseOther:
			return upstream.CauseOther, de.Error()
		case c == upstream.CauseCertificate:
			// the x509 part says which check failed
			return c, certDetail(de.err)
		case ctx.Err() != nil && c == upstream.CauseClosed:
			c = upstream.CauseTimeout
		}
		return c, de.err.Error()
	}
	if errors.Is(err, errTamper) {
		return upstream.CauseTamper, tamperDetail(err)
	}
	if ctx.Err() != nil || isTimeout(err) {
		return upstream.CauseTimeout, err.Error()
	}
	return upstream.CauseOther, err.Error()
}

// tamperDetail is a tamper error's text without the word the cause
// already says.
func tamperDetail(err error) string {
	return strings.TrimPrefix(err.Error(), errTamper.Error()+": ")
}

// certDetail is the x509 part of a certificate failure ("x509: certificate
// signed by unknown authority"), whatever the dialer wrapped around it.
func certDetail(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "x509: "); i >= 0 {
		return msg[i:]
	}
	return msg
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

type fetched struct {
	echo              echo
	caps              upstream.Caps // what the dial proved (CapPipeline)
	tamper            error
	connectMS, ttfbMS float64
	status            int
}

// fetch GETs judge over a route: directly (u is zero), through u's
// tunnel, or (routeForward, an http judge) from u as a forward proxy
// with an absolute URI, the way a browser configured with it asks, so
// header injection is visible.
func (p *Prober) fetch(ctx context.Context, u upstream.Upstream, judge *url.URL, via route) (fetched, error) {
	var f fetched
	t0 := p.now()
	host := hostPort(judge)
	viaUpstream := via != routeDirect
	forward := via == routeForward && judge.Scheme == "http"
	var conn net.Conn
	var err error
	switch {
	case forward:
		conn, err = p.direct(ctx, "tcp", u.Addr())
	case viaUpstream:
		conn, f.caps, err = p.dialUpstream(ctx, u, host)
	default:
		conn, err = p.direct(ctx, "tcp", host)
	}
	if err != nil {
		return f, &dialError{err}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	f.connectMS = ms(p.now().Sub(t0))
	if judge.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: judge.Hostname(), InsecureSkipVerify: p.opts.InsecureJudges})
		if err := tc.HandshakeContext(ctx); err != nil {
			if viaUpstream {
				return f, fmt.Errorf("tls to judge: %w", err)
			}
			return f, err
		}
		conn = tc
	}
	nonce := newNonce()
	var b strings.Builder
	target := judge.RequestURI()
	if forward {
		target = judge.String()
	}
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept: */*\r\n%s: %s\r\nConnection: close\r\n", target, judge.Host, p.opts.UserAgent, nonceHeader, nonce)
	if forward {
		b.WriteString(proxyAuth(u))
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		if forward {
			return f, &dialError{err}
		}
		return f, fmt.Errorf("sending judge request: %w", err)
	}
	br := bufio.NewReaderSize(conn, 4096)
	if _, err := br.Peek(1); err != nil {
		if forward {
			return f, &dialError{err}
		}
		return f, fmt.Errorf("reading judge reply: %w", err)
	}
	f.ttfbMS = ms(p.now().Sub(t0))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if forward {
			return f, &dialError{fmt.Errorf("garbage reply: %w", err)}
		}
		return f, fmt.Errorf("%w: judge reply is not HTTP: %v", errTamper, err)
	}
	defer resp.Body.Close()
	f.status = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJudgeBody+1))
	if err != nil {
		return f, fmt.Errorf("reading judge body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		if forward && resp.StatusCode >= 400 {
			return f, &dialError{fmt.Errorf("proxy answered %s", resp.Status)}
		}
		return f, fmt.Errorf("judge answered %s", resp.Status)
	}
	if len(body) > maxJudgeBody {
		f.tamper = fmt.Errorf("%w: judge body larger than %d bytes", errTamper, maxJudgeBody)
		return f, nil
	}
	f.echo, f.tamper = parseEcho(body)
	if f.tamper == nil && viaUpstream {
		f.tamper = p.proveNonce(judge, f.echo, nonce)
	}
	return f, nil
}

// proveNonce checks that the answer came from the judge: it must echo the
// nonce we sent, unchanged. Only a verified TLS connection to the judge
// proves that without it, so a judge shape that echoes no headers (a plain
// IP, httpbin's /ip) counts only over https; over plain http any proxy
// could have written the whole answer.
func (p *Prober) proveNonce(judge *url.URL, e echo, nonce string) error {
	got, ok := e.Headers[nonceHeader]
	switch {
	case ok && got != nonce:
		return fmt.Errorf("%w: request header rewritten in transit", errTamper)
	case !ok && p.needsNonce(judge):
		return fmt.Errorf("%w: the judge's answer lacks our %s (something between us and the judge answered)", errTamper, nonceHeader)
	}
	return nil
}

// needsNonce: an answer from judge proves its origin only by our nonce.
func (p *Prober) needsNonce(judge *url.URL) bool {
	return judge.Scheme == "http" || p.opts.InsecureJudges
}

// capsDialer is implemented by dial.Pool: a dial that asks for what the
// upstream may do and returns what it proved.
type capsDialer interface {
	DialCaps(ctx context.Context, u upstream.Entry, addr string, try upstream.Caps) (net.Conn, upstream.Caps, error)
}

// dialUpstream dials through u. For SOCKS5 kinds it tries the pipelined
// handshake (greeting and CONNECT in one write), which the dialer redoes
// sequentially within the same dial if u stalls after its first reply:
// the check learns whether the gateway may pipeline to u, and u is not
// failed for not pipelining.
func (p *Prober) dialUpstream(ctx context.Context, u upstream.Upstream, addr string) (net.Conn, upstream.Caps, error) {
	e, err := u.Entry()
	if err != nil {
		return nil, 0, err
	}
	cd, ok := p.dialer.(capsDialer)
	if !ok || !(u.Type == upstream.SOCKS5 || u.Type == upstream.Tor) {
		c, err := p.dialer.DialContext(ctx, e, addr)
		return c, 0, err
	}
	c, caps, err := cd.DialCaps(ctx, e, addr, upstream.CapPipeline)
	return c, caps & upstream.CapPipeline, err
}

// checkTarget fetches the target through u over the route the judge
// answered on; forwarding reaches only an http target.
func (p *Prober) checkTarget(ctx context.Context, u upstream.Upstream, via route) error {
	forward := via == routeForward
	if forward && p.target.Scheme != "http" {
		return fmt.Errorf("%s is https: only a CONNECT tunnel reaches it, and this upstream forwards only", p.target.Host)
	}
	var conn net.Conn
	var err error
	if forward {
		conn, err = p.direct(ctx, "tcp", u.Addr())
	} else {
		var e upstream.Entry
		if e, err = u.Entry(); err == nil {
			conn, err = p.dialer.DialContext(ctx, e, hostPort(p.target))
		}
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if p.target.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: p.target.Hostname()})
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		conn = tc
	}
	target, auth := p.target.RequestURI(), ""
	if forward {
		target, auth = p.target.String(), proxyAuth(u)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n%sConnection: close\r\n\r\n", target, p.target.Host, p.opts.UserAgent, auth)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != p.opts.TargetStatus {
		return fmt.Errorf("answered %d, want %d", resp.StatusCode, p.opts.TargetStatus)
	}
	return nil
}

// proxyAuth is u's Proxy-Authorization header line, or "" without
// credentials.
func proxyAuth(u upstream.Upstream) string {
	user := u.Str("username")
	if user == "" {
		return ""
	}
	return "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+u.Str("password"))) + "\r\n"
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

func boolOpt(u upstream.Upstream, k string) bool {
	switch v := u.Options[k].(type) {
	case bool:
		return v
	case string:
		b, _ := strconv.ParseBool(v)
		return b
	}
	return false
}

func newNonce() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
