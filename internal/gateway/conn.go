package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/gateway/failover"
	"github.com/proxypool/proxypool/internal/httpproxy"
	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/proxymux"
	"github.com/proxypool/proxypool/internal/socks"
	"github.com/proxypool/proxypool/internal/upstream"
)

// conn is one client connection.
type conn struct {
	g        *Gateway
	c        net.Conn
	listener string
	route    *failover.Route // the listener's when accepted
	port     uint64          // the port.id it was accepted from
	idle     atomic.Bool     // waiting for the next keep-alive request

	proto   string // for the observer
	outcome string

	upMu sync.Mutex
	up   net.Conn // current upstream tunnel, closed on forced drain

	cr  httpproxy.CapReader
	br  *bufio.Reader
	sel upstream.Selector

	client  netip.Addr // the source IP
	counted bool       // holds one of client's slots (max-conns-per-client)
}

// outcomeClientLimit is the outcome of a connection refused for its
// source's max-conns-per-client.
const outcomeClientLimit = "client_limit"

// overLimitTimeout bounds how long a connection over its source's limit
// may take to say which protocol it speaks before it is closed unanswered.
const overLimitTimeout = 2 * time.Second

// release gives back the connection's per-source slot.
func (cc *conn) release() {
	if cc.counted {
		cc.counted = false
		cc.g.clients.close(cc.client)
	}
}

// readerSize is a connection's read buffer; a request head longer than
// it grows the buffer in httpproxy.HeadStep steps for that head only.
const readerSize = 4096

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readerSize) }}

func (cc *conn) closeAll() {
	cc.c.Close()
	cc.upMu.Lock()
	if cc.up != nil {
		cc.up.Close()
	}
	cc.upMu.Unlock()
}

func (cc *conn) setUp(c net.Conn) {
	cc.upMu.Lock()
	cc.up = c
	cc.upMu.Unlock()
}

func (cc *conn) releaseReader() {
	if cc.br != nil {
		cc.br.Reset(nil)
		if cc.br.Size() == readerSize { // not a head's grown one
			readerPool.Put(cc.br)
		}
		cc.br = nil
	}
}

// buffered is how many bytes the client sent past its request.
func (cc *conn) buffered() int {
	if cc.br == nil {
		return 0
	}
	return cc.br.Buffered()
}

func (cc *conn) serve(ctx context.Context) {
	g := cc.g
	defer g.untrack(cc)
	defer cc.c.Close()
	defer cc.releaseReader()
	if g.obs != nil {
		start := time.Now()
		cc.proto = "unknown"
		defer func() {
			if cc.outcome == "" {
				cc.outcome = failover.OutcomeClientClosed
			}
			g.obs.ConnDone(cc.listener, cc.proto, cc.outcome, time.Since(start))
		}()
	}
	over := !cc.counted
	if over {
		cc.c.SetReadDeadline(time.Now().Add(min(g.opts.ClientTimeout, overLimitTimeout)))
	} else {
		cc.c.SetReadDeadline(time.Now().Add(g.opts.ClientTimeout))
	}
	cc.cr.R = cc.c
	cc.cr.Limit(int64(g.opts.MaxHeaderBytes))
	cc.br = readerPool.Get().(*bufio.Reader)
	cc.br.Reset(&cc.cr)
	if a, ok := cc.c.RemoteAddr().(*net.TCPAddr); ok {
		cc.sel.Client = a.IP.String()
	}
	proto, err := proxymux.Sniff(cc.br)
	// the observer and the tunnel table (Options.Tunnels) both name it
	switch {
	case err != nil:
	case proto == proxymux.HTTP:
		cc.proto = "http"
	case proto == proxymux.SOCKS4:
		cc.proto = "socks4"
	default:
		cc.proto = "socks5"
	}
	if g.obs != nil {
		g.obs.ConnOpened(cc.listener, cc.proto)
	}
	if err != nil {
		cc.clientFailed(err)
		return
	}
	if over {
		cc.refuseOverLimit(proto)
		return
	}
	if proto == proxymux.HTTP {
		cc.cr.Unlimit() // readHead bounds each head itself
		cc.serveHTTP(ctx)
		return
	}
	cc.serveSOCKS(ctx)
}

// clientFailed names the outcome of a client read that failed.
func (cc *conn) clientFailed(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		cc.outcome = failover.OutcomeClientClosed
	case errors.As(err, &ne) && ne.Timeout():
		cc.outcome = failover.OutcomeClientTimout
	default:
		cc.outcome = failover.OutcomeClientError
	}
}

// dialOutcome names the outcome of a connect that gave no tunnel.
func dialOutcome(err error) string {
	var de *failover.Error
	switch {
	case !errors.As(err, &de):
		return "other"
	case de.Target != nil:
		return failover.OutcomeBadTarget
	case errors.Is(de.PickErr, upstream.ErrUnknownGroup):
		return failover.OutcomeUnknownGroup
	case de.PickErr != nil:
		return failover.OutcomeNoUpstream
	}
	return de.Cause.String()
}

func (cc *conn) authRejected() {
	cc.outcome = failover.OutcomeAuth
	cc.g.authRejected(cc.listener)
}

// authRejected counts a client whose auth was refused.
func (g *Gateway) authRejected(listener string) {
	g.stats.AuthFails.Add(1)
	if g.obs != nil {
		g.obs.AuthRejected(listener)
	}
}

// selector fills the request's selection from the port and the username.
func (cc *conn) selector(p Params) error { return fillSelector(&cc.sel, cc.route.Group, p) }

// fillSelector fills sel from the listener's group and the username's
// parameters (both paths).
func fillSelector(sel *upstream.Selector, group string, p Params) error {
	sel.Group = group
	if p.Group != "" {
		if group != "" && !strings.EqualFold(p.Group, group) {
			return errors.New("this port is pinned to group " + group + "; username asks for group " + p.Group)
		}
		sel.Group = p.Group
	}
	sel.Country, sel.Session, sel.SessionTTL, sel.User, sel.Targets = p.Country, p.Session, p.TTL, p.User, p.Targets
	return nil
}

func (cc *conn) serveSOCKS(ctx context.Context) {
	g := cc.g
	var params Params
	var authErr error
	auth := func(user, pass string) error {
		params, authErr = g.authenticate(user, pass)
		if authErr == nil {
			authErr = cc.selector(params)
		}
		if authErr != nil && len(g.opts.Users) > 0 {
			cc.authDelay(ctx) // a guess: the handshake writes the refusal after it
		}
		return authErr
	}
	req, err := socks.ServerHandshake(cc.br, cc.c, auth, len(g.opts.Users) > 0)
	if err != nil {
		var pe *socks.ProtocolError
		var re *socks.ReplyError
		switch {
		case errors.Is(err, socks.ErrAuth):
			cc.authRejected()
			g.log.WithError(err).Debug("socks auth refused")
		case errors.As(err, &pe), errors.As(err, &re):
			cc.outcome = failover.OutcomeClientError
			g.malformed(cc.listener, cc.client.String(), err.Error())
		default:
			cc.clientFailed(err)
		}
		return
	}
	if req.User == "" {
		cc.selector(Params{})
	}
	var f failover.Failover
	g.tries.Start(&f, &cc.sel, cc.route.Picker, req.Addr, time.Now(), time.Time{})
	cc.finishSOCKS(ctx, req.Version, &f)
}

// connectSOCKS serves a SOCKS5 client whose handshake the event loop
// already did, going on with f's tries: dial, answer, relay.
func (cc *conn) connectSOCKS(ctx context.Context, f *failover.Failover, start time.Time) {
	g := cc.g
	defer g.untrack(cc)
	defer cc.c.Close()
	if g.obs != nil {
		defer func() {
			if cc.outcome == "" {
				cc.outcome = failover.OutcomeClientClosed
			}
			g.obs.ConnDone(cc.listener, "socks5", cc.outcome, time.Since(start))
		}()
	}
	cc.finishSOCKS(ctx, socks.Version5, f)
}

// finishSOCKS dials f's target, answers the client and relays.
func (cc *conn) finishSOCKS(ctx context.Context, version byte, f *failover.Failover) {
	g := cc.g
	up, _, err := g.connect(ctx, f)
	if err != nil {
		g.stats.Failed.Add(1)
		cc.outcome = dialOutcome(err)
		socks.Reply(cc.c, version, socksCode(err))
		g.requestFailed(err, f.Addr(), cc.sel.Client)
		return
	}
	defer up.Close()
	cc.outcome = failover.OutcomeOK
	if err := socks.Reply(cc.c, version, socks.Succeeded); err != nil {
		f.Confirm()
		cc.outcome = failover.OutcomeClientClosed
		return
	}
	cc.tunnel(ctx, up, f)
}

// tunnel forwards bytes the client sent early, then relays both ways.
// With f (the tries that gave up) the tunnel is on probation (watch.go):
// an upstream that breaks it before the target spoke is charged, and
// replaced by f's next upstream while none of the client's bytes reached
// it. Without f (an upgraded forward) nothing is watched.
func (cc *conn) tunnel(ctx context.Context, up net.Conn, f *failover.Failover) {
	cc.setUp(up)
	var early []byte
	if n := cc.buffered(); n > 0 {
		b, _ := cc.br.Peek(n)
		early = append([]byte(nil), b...)
	}
	cc.releaseReader()
	obs := cc.g.obs
	if obs != nil {
		obs.ActiveTunnels(1)
		defer obs.ActiveTunnels(-1)
	}
	var nUpAll, nDownAll int64
	if t := cc.g.opts.Tunnels; t != nil && f != nil {
		done := t.Opened(Tunnel{Start: time.Now(), Listener: cc.listener, Proto: cc.proto, Client: cc.c.RemoteAddr().String(),
			Target: f.Addr(), Group: cc.route.Group, Upstream: f.Current().ID, Close: cc.closeAll})
		defer func() { done(nUpAll, nDownAll) }()
	}
	for {
		var w *watch
		if f != nil {
			w = &watch{confirm: f.Confirm}
		}
		if len(early) > 0 {
			// what the client sent before our reply, or after a break
			// that no upstream saw: it opens the probation's first bytes
			if err := (half{w: w}).chunk(early); err != nil {
				return
			}
			if _, err := up.Write(early); err != nil {
				if f != nil {
					f.Broke(time.Now(), cc.g.opts.Classify(err), err)
				}
				return
			}
		}
		// the handshake deadline becomes the tunnel's idle deadline: one
		// timer change instead of a reset and a set
		cc.c.SetReadDeadline(time.Now().Add(cc.g.opts.IdleTimeout))
		nUp, nDown := relay(cc.g.work, cc.c, up, cc.g.opts.IdleTimeout, w)
		nUpAll, nDownAll = nUpAll+nUp+int64(len(early)), nDownAll+nDown
		if obs != nil {
			obs.Bytes(nUp+int64(len(early)), nDown)
		}
		if w == nil {
			return
		}
		if w.state.Load() != broken {
			f.Confirm()
			return
		}
		up.Close()
		cause := w.cause
		if cause == upstream.CauseNone {
			cause = cc.g.opts.Classify(w.err)
		}
		id := f.Current().ID
		f.Broke(time.Now(), cause, w.err)
		cc.g.log.WithError(w.err).WithFields(map[string]any{"UPSTREAM_ID": id, "target": f.Addr()}).Debug("tunnel broke after the upstream's handshake")
		if w.sentUp {
			cc.outcome = failover.OutcomeUpstream
			return // the client's bytes may have had their effect: not replayed
		}
		next, _, err := cc.g.connect(ctx, f)
		if err != nil {
			cc.outcome = failover.OutcomeUpstream
			return
		}
		defer next.Close()
		up, early = next, w.stash
		cc.setUp(up)
	}
}

func (cc *conn) serveHTTP(ctx context.Context) {
	g := cc.g
	for {
		req, target, err := cc.readRequest()
		if err != nil {
			if cc.outcome != failover.OutcomeOK || !errors.Is(err, io.EOF) {
				cc.clientFailed(err)
			}
			cc.badRequest(err)
			return
		}
		user, pass, guessed := httpproxy.Credentials(req)
		p, err := g.authenticate(user, pass)
		if err == nil {
			err = cc.selector(p)
		}
		if err != nil {
			if guessed && len(g.opts.Users) > 0 {
				// a wrong password, not a browser's first try without one
				cc.authDelay(ctx)
			}
			cc.authRejected()
			httpproxy.WriteError(cc.c, http.StatusProxyAuthRequired, "", "proxypool: "+err.Error(), nil)
			return
		}
		cc.sel.Need = needOf(req) // forward.go
		var f failover.Failover
		g.tries.Start(&f, &cc.sel, cc.route.Picker, target, time.Now(), time.Time{})
		up, ch, err := g.connect(ctx, &f)
		if err != nil {
			g.stats.Failed.Add(1)
			cc.outcome = dialOutcome(err)
			status, ps, body := g.httpError(err)
			httpproxy.WriteError(cc.c, status, ps, body, nil)
			g.requestFailed(err, target, cc.sel.Client)
			return
		}
		extra := cc.infoHeader(ch)
		cc.outcome = failover.OutcomeOK
		if req.Method == http.MethodConnect {
			defer up.Close()
			if httpproxy.WriteConnectOK(cc.c, extra) != nil {
				f.Confirm()
				return
			}
			cc.tunnel(ctx, up, &f)
			return
		}
		res, err := cc.forward(ctx, req, &f, up, ch)
		if err == errUpgraded {
			return
		}
		if err != nil && !res.Started {
			cc.outcome = failover.OutcomeUpstream
			id := f.Current().ID // forward may have gone on to another upstream
			g.log.WithError(err).WithFields(logrus.Fields{logging.FieldUpstream: id, "target": target}).Debug("http forward failed")
			body := "proxypool: " + target + ": no response through upstream " + id
			if g.opts.InfoHeader != "" {
				body += " [debug: " + err.Error() + "]"
			}
			ps := httpproxy.ProxyStatus("http_response_incomplete", "", id)
			httpproxy.WriteError(cc.c, http.StatusBadGateway, ps, body, nil)
			return
		}
		f.Confirm()
		keep := res.KeepAlive
		if err != nil || !keep || g.adm.draining.Load() {
			return
		}
		// keep-alive: wait (idle) for the next request's first byte, then
		// give its head the handshake timeout.
		cc.idle.Store(true)
		cc.c.SetReadDeadline(time.Now().Add(g.opts.IdleTimeout))
		_, err = cc.br.Peek(1)
		cc.idle.Store(false)
		if err != nil || g.adm.draining.Load() {
			return
		}
		cc.c.SetReadDeadline(time.Now().Add(g.opts.ClientTimeout))
	}
}

// errUpgraded: forward relayed a 101 and the tunnel after it.
var errUpgraded = errors.New("upgraded")

// forward sends req through up (picked as ch by f) and relays the
// response. An upstream that gives no response head (closed, reset,
// garbage) is charged for it (failover.Broke); an idempotent request
// without a body is then sent again through f's next upstream, as the
// client got nothing yet and sending it twice has the effect of sending it
// once (RFC 9110 §9.2.2). Others get the 502.
func (cc *conn) forward(ctx context.Context, req *http.Request, f *failover.Failover, up net.Conn, ch upstream.Choice) (httpproxy.Result, error) {
	g := cc.g
	replay := idempotent(req)
	for {
		cc.setUp(up)
		cc.c.SetReadDeadline(time.Time{})
		upBr := readerPool.Get().(*bufio.Reader)
		res, err := httpproxy.Forward(req, httpproxy.Exchange{
			Client: cc.c, ClientBr: cc.br, Up: up, UpBr: upBr,
			Extra: cc.infoHeader(ch), Idle: g.opts.IdleTimeout, Proxy: upstreamProxy(ch),
		})
		if err == nil && res.Upgraded {
			// 101 Switching Protocols: the origin's first bytes of the
			// new protocol may sit in upBr; then a tunnel like CONNECT's
			defer up.Close()
			if n := upBr.Buffered(); n > 0 {
				b, _ := upBr.Peek(n)
				_, err = cc.c.Write(b)
			}
			upBr.Reset(nil)
			readerPool.Put(upBr)
			f.Confirm()
			if err == nil {
				cc.tunnel(ctx, up, nil)
			}
			return res, errUpgraded
		}
		upBr.Reset(nil)
		readerPool.Put(upBr)
		up.Close()
		cc.setUp(nil)
		if err == nil || res.Started || !errors.Is(err, httpproxy.ErrNoResponse) || ctx.Err() != nil {
			f.Confirm()
			return res, err
		}
		f.Broke(time.Now(), g.opts.Classify(err), err)
		g.log.WithError(err).WithFields(map[string]any{"UPSTREAM_ID": ch.ID, "target": f.Addr()}).Debug("no response after the upstream's handshake")
		if !replay {
			return res, err
		}
		next, nch, cerr := g.connect(ctx, f)
		if cerr != nil {
			return res, err
		}
		up, ch = next, nch
	}
}

// idempotent reports a request the gateway may send again: a safe or
// idempotent method (RFC 9110 §9.2.2) without a body, and no upgrade (its
// Connection header is gone once forwarded).
func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return false
	}
	return (req.Body == nil || req.Body == http.NoBody) && req.ContentLength <= 0 && req.Header.Get("Upgrade") == ""
}

func (cc *conn) infoHeader(ch upstream.Choice) http.Header {
	name := cc.g.opts.InfoHeader
	if name == "" {
		return nil
	}
	v := ch.ID
	if ch.ExitIP != "" {
		v += "; exit=" + ch.ExitIP
	}
	if ch.Country != "" {
		v += "; country=" + ch.Country
	}
	return http.Header{http.CanonicalHeaderKey(name): {v}}
}

// readRequest reads the next request head whole (a pending head holds
// only its bytes, in a buffer grown in small steps), then parses it and
// gives the grown buffer back.
func (cc *conn) readRequest() (*http.Request, string, error) {
	g := cc.g
	br, err := httpproxy.ReadHead(cc.br, &cc.cr, httpproxy.HeadLimits{Bytes: g.opts.MaxHeaderBytes, Fields: g.opts.MaxHeaderFields})
	cc.swapReader(br)
	if err != nil {
		return nil, "", err
	}
	req, target, err := httpproxy.ParseRequest(cc.br)
	if cc.br.Size() > readerSize && cc.br.Buffered() < readerSize {
		// the head is parsed: its bytes now live in req; keep a small
		// buffer for the body and what follows
		small := readerPool.Get().(*bufio.Reader)
		small.Reset(nil)
		cc.swapReader(httpproxy.RebufferInto(small, cc.br, &cc.cr))
	}
	return req, target, err
}

// swapReader makes br the connection's reader, the old one back to the
// pool if it came from there.
func (cc *conn) swapReader(br *bufio.Reader) {
	if br == cc.br {
		return
	}
	cc.releaseReader()
	cc.br = br
}

// badRequest answers a request head that could not be read: 431 for one
// over the limits, 400 for a malformed one (each with a log line), and
// nothing to a client that left or went silent.
func (cc *conn) badRequest(err error) {
	log := cc.g.log.WithError(err).WithField("client", cc.sel.Client)
	switch {
	case errors.Is(err, httpproxy.ErrHeaderTooLarge), errors.Is(err, httpproxy.ErrTooManyFields):
		log.Debug("http request head over the limit: 431")
		httpproxy.WriteError(cc.c, http.StatusRequestHeaderFieldsTooLarge, httpproxy.ProxyStatus("http_request_error", err.Error(), ""), "proxypool: request header: "+err.Error(), nil)
	case errors.Is(err, httpproxy.ErrNotProxyRequest), errors.Is(err, httpproxy.ErrMalformed):
		cc.g.clients.countMalformed()
		log.Debug("malformed http request: 400")
		httpproxy.WriteError(cc.c, http.StatusBadRequest, httpproxy.ProxyStatus("http_request_error", err.Error(), ""), "proxypool: "+err.Error(), nil)
	}
}

// authDelay waits, before a refusal, for as long as the client's source
// has earned by failing in a row (clients.failed), or until ctx ends.
func (cc *conn) authDelay(ctx context.Context) {
	g := cc.g
	d := g.clients.failed(cc.client, time.Now())
	if d <= 0 {
		return
	}
	if g.obs != nil {
		g.obs.AuthDelayed(cc.listener)
	}
	// the wait is the client's: its handshake deadline must not cut it
	cc.c.SetReadDeadline(time.Now().Add(d + g.opts.ClientTimeout))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// refuseOverLimit answers a connection whose source holds all its
// max-conns-per-client in the client's protocol, then closes it: HTTP 429,
// SOCKS5 "not allowed by ruleset" after its greeting, SOCKS4 "rejected".
func (cc *conn) refuseOverLimit(proto proxymux.Protocol) {
	g := cc.g
	cc.outcome = outcomeClientLimit
	if g.obs != nil {
		g.obs.ClientLimited(cc.listener)
	}
	g.log.WithField("client", cc.client.String()).Debug("refused: source over max-conns-per-client")
	switch proto {
	case proxymux.HTTP:
		httpproxy.WriteError(cc.c, http.StatusTooManyRequests, httpproxy.ProxyStatus("proxy_internal_error", "too many connections from this client", ""),
			"proxypool: too many connections from this client", http.Header{"Retry-After": {"1"}})
	default:
		// the handshake up to the request, to answer it in kind
		req, err := socks.ServerHandshake(cc.br, cc.c, nil, false)
		if err != nil {
			return
		}
		socks.Reply(cc.c, req.Version, socks.NotAllowed)
	}
	// let the answer reach the client before the close: a close with
	// unread bytes would reset the connection and lose it
	if cw, ok := cc.c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		cc.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		io.Copy(io.Discard, io.LimitReader(cc.c, 64<<10))
	}
}

// malformed logs a client's request that could not be valid (already
// answered) at debug level and counts it for the summary line.
func (g *Gateway) malformed(listener, client, what string) {
	g.clients.countMalformed()
	g.log.WithFields(logrus.Fields{"listener": listener, "client": client}).Debug("malformed request: " + what)
}
