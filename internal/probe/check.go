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
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Dialer opens a connection to addr through an upstream. The context's
// deadline must bound the connect and the proxy handshake.
type Dialer interface {
	DialContext(ctx context.Context, u upstream.Upstream, addr string) (net.Conn, error)
}

// nonceHeader is sent with every judge request; a judge that echoes headers
// must echo it unchanged, or something in between rewrote the request.
const nonceHeader = "X-Proxypool-Nonce"

const maxJudgeBody = 64 << 10

// Check runs one active check of u and returns its result. It never returns
// an error: failures are results with OK false and a short cause in Err.
func (p *Prober) Check(ctx context.Context, u upstream.Upstream) upstream.CheckResult {
	start := p.now()
	res := upstream.CheckResult{ID: u.ID, At: start}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()

	var lastErr error
	for i, judge := range p.judges {
		r, err := p.fetch(ctx, u, judge, true)
		if err == nil {
			res.ConnectMS, res.TTFBMS, res.TotalMS = r.connectMS, r.ttfbMS, ms(p.now().Sub(start))
			res.ExitIP, res.Headers = r.echo.IP, r.echo.Headers
			res.Caps |= r.caps
			if r.tamper != nil {
				res.Untrusted, res.Err = true, r.tamper.Error()
				return res
			}
			if res.ExitIP != "" && p.realIP != "" && sameSlash24(res.ExitIP, p.realIP) {
				res.Err = "routes locally: exit " + res.ExitIP + " is in our own network"
				return res
			}
			res.Anonymity = classify(r.echo, p.realIP)
			if res.Anonymity == upstream.AnonTransparent {
				res.Err = "transparent: the judge saw our real address"
				return res
			}
			if p.opts.Country != nil && res.ExitIP != "" {
				res.Country = p.opts.Country(res.ExitIP)
			}
			if p.target != nil {
				if err := p.checkTarget(ctx, u); err != nil {
					res.Err = "target: " + err.Error()
					return res
				}
			}
			res.OK = true
			return res
		}
		lastErr = err
		var de *dialError
		if errors.As(err, &de) || ctx.Err() != nil || i == len(p.judges)-1 {
			break // the upstream itself failed (or time is up): another judge won't help
		}
	}
	res.TotalMS = ms(p.now().Sub(start))
	res.Err = p.cause(ctx, lastErr)
	return res
}

func (p *Prober) cause(ctx context.Context, err error) string {
	if err == nil {
		return "unknown"
	}
	var de *dialError
	if errors.As(err, &de) {
		c := ""
		if p.opts.Classify != nil {
			c = p.opts.Classify(de.err)
		}
		if c == "" || c == "other" {
			return "dial: " + de.err.Error()
		}
		if c == "certificate" {
			// the one word would not say which check failed
			return c + ": " + certDetail(de.err)
		}
		if ctx.Err() != nil && c == "closed" {
			c = "timeout"
		}
		return c
	}
	if ctx.Err() != nil || isTimeout(err) {
		return "timeout"
	}
	return err.Error()
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

// fetch GETs judge through u (or directly when viaUpstream is false and u is
// zero). HTTP upstreams fetch plain-http judges as a forward proxy (absolute
// URI), the way a browser would use them, so header injection is visible;
// everything else tunnels through the Dialer.
func (p *Prober) fetch(ctx context.Context, u upstream.Upstream, judge *url.URL, viaUpstream bool) (fetched, error) {
	var f fetched
	t0 := p.now()
	host := hostPort(judge)
	forward := viaUpstream && u.Type == upstream.HTTP && judge.Scheme == "http" && !boolOpt(u, "tls")
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
		if user := u.Str("username"); user != "" {
			fmt.Fprintf(&b, "Proxy-Authorization: Basic %s\r\n", base64.StdEncoding.EncodeToString([]byte(user+":"+u.Str("password"))))
		}
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
	if f.tamper == nil {
		if got, ok := f.echo.Headers[nonceHeader]; ok && got != nonce {
			f.tamper = fmt.Errorf("%w: request header rewritten in transit", errTamper)
		}
	}
	return f, nil
}

// capsDialer is implemented by dial.Pool: a dial that asks for what the
// upstream may do and returns what it proved.
type capsDialer interface {
	DialCaps(ctx context.Context, u upstream.Upstream, addr string, try upstream.Caps) (net.Conn, upstream.Caps, error)
}

// dialUpstream dials through u. For SOCKS5 kinds it tries the pipelined
// handshake (greeting and CONNECT in one write), which the dialer redoes
// sequentially within the same dial if u stalls after its first reply:
// the check learns whether the gateway may pipeline to u, and u is not
// failed for not pipelining.
func (p *Prober) dialUpstream(ctx context.Context, u upstream.Upstream, addr string) (net.Conn, upstream.Caps, error) {
	cd, ok := p.dialer.(capsDialer)
	if !ok || !(u.Type == upstream.SOCKS5 || u.Type == upstream.Tor) {
		c, err := p.dialer.DialContext(ctx, u, addr)
		return c, 0, err
	}
	c, caps, err := cd.DialCaps(ctx, u, addr, upstream.CapPipeline)
	return c, caps & upstream.CapPipeline, err
}

func (p *Prober) checkTarget(ctx context.Context, u upstream.Upstream) error {
	conn, err := p.dialer.DialContext(ctx, u, hostPort(p.target))
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
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nConnection: close\r\n\r\n", p.target.RequestURI(), p.target.Host, p.opts.UserAgent)
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
