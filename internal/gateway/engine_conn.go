package gateway

import (
	"container/heap"
	"errors"
	"io"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/proxypool/proxypool/internal/socks"
	"github.com/proxypool/proxypool/internal/upstream"
)

// econn states.
const (
	stGreeting   = iota // SOCKS5 greeting, or the first bytes of another protocol
	stAuth              // username/password subnegotiation
	stRequest           // SOCKS5 request
	stConnecting        // nonblocking connect to an upstream
	stUpReply           // greeting (and CONNECT, pipelined) sent upstream, waiting for its answers
	stRelay
	stDone
)

// econn is one client connection driven by a loop.
type econn struct {
	l                   *loop
	cfd, ufd            int
	ctag, utag          int32 // their tags in the epoll set (stale events carry others)
	state               uint8
	crd, cwr, urd, uwr  bool // readiness seen from epoll, cleared by EAGAIN or a short read
	cEOF, uEOF          bool // that side sent FIN (its direction has ended)
	cHup, uHup          bool // epoll saw that side's FIN or an error: read on to the end, no edge will follow
	upShut, downShut    bool // write side of ufd / cfd shut down
	listener, group     string
	start               time.Time
	deadline            int64 // unix nanos of the one timer
	ti                  int   // index in the timer heap; -1 when none
	idle                bool  // timer is the relay's idle check
	lastActive          int64
	sel                 upstream.Selector
	hs                  []byte // partial handshake bytes (client, then upstream reply)
	user                bool   // the client authenticated with a username
	target              string
	attempt, tries      int
	tried               [16]string
	tryStart, totalEnd  time.Time
	choice              upstream.Choice
	cause               upstream.Cause
	lastID              string
	lastErr             error
	pendUp, pendDown    []byte // bytes waiting for the other side to become writable
	nUp, nDown          int64
	outcome             string
	observed, tunnelled bool
	queued              bool // in the loop's list for another turn
	upAP                netip.AddrPort
	upMethod            bool      // the upstream's method choice has arrived
	pipelined           bool      // this try sent greeting and CONNECT in one write
	stalling            bool      // pipelined, method choice in, timer is the stall bound
	tryEnd              time.Time // the try's own deadline (the stall bound is shorter)
}

func (c *econn) outcomeOr(def string) string {
	if c.outcome != "" {
		return c.outcome
	}
	return def
}

func (c *econn) setTimer(t time.Time) {
	c.deadline = t.UnixNano()
	if c.ti >= 0 && c.ti < len(c.l.timers) && c.l.timers[c.ti] == c {
		heap.Fix(&c.l.timers, c.ti)
		return
	}
	heap.Push(&c.l.timers, c)
}

func (c *econn) clearTimer() {
	if c.ti >= 0 && c.ti < len(c.l.timers) && c.l.timers[c.ti] == c {
		heap.Remove(&c.l.timers, c.ti)
	}
	c.ti = -1
}

// event records what epoll said about fd and moves the connection on.
func (c *econn) event(fd int, ev uint32, now time.Time) {
	r := ev&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
	w := ev&(syscall.EPOLLOUT|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
	hup := ev&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
	if fd == c.cfd {
		c.crd = c.crd || r
		c.cwr = c.cwr || w
		c.cHup = c.cHup || hup
	} else if fd == c.ufd {
		c.urd = c.urd || r
		c.uwr = c.uwr || w
		c.uHup = c.uHup || hup
	}
	c.step(now)
}

// step runs the state machine as far as readiness allows.
func (c *econn) step(now time.Time) {
	for {
		prev := c.state
		switch c.state {
		case stGreeting, stAuth, stRequest:
			if !c.crd {
				return
			}
			if !c.readHandshake(now) {
				return
			}
		case stConnecting:
			if !c.uwr {
				return
			}
			c.connected(now)
		case stUpReply:
			if !c.urd {
				return
			}
			c.readUpReply(now)
		case stRelay:
			c.relay(now)
			return
		default:
			return
		}
		if c.state == prev || c.state == stDone {
			return
		}
	}
}

// readHandshake reads what the client sent and parses as much as is
// complete; false when it must wait for more.
func (c *econn) readHandshake(now time.Time) bool {
	b := c.l.buf[:4096]
	n, err := sysRead(c.cfd, b)
	switch {
	case err == syscall.EAGAIN:
		c.crd = false
		return false
	case err != nil:
		c.clientGone(err)
		return false
	case n == 0:
		c.clientGone(io.EOF)
		return false
	}
	if n < len(b) && !c.cHup {
		c.crd = false
	}
	in := b[:n]
	if len(c.hs) > 0 {
		c.hs = append(c.hs, in...)
		in = c.hs
	}
	used, more := c.parse(in, now)
	if !more {
		return false
	}
	rest := in[used:]
	if len(rest) > 512 {
		c.fail(outcomeClientError)
		return false
	}
	c.hs = append(c.hs[:0:0], rest...)
	return c.crd
}

// parse consumes complete handshake messages from in; it returns how many
// bytes it used and whether it needs more.
func (c *econn) parse(in []byte, now time.Time) (int, bool) {
	used := 0
	for {
		b := in[used:]
		switch c.state {
		case stGreeting:
			if len(b) == 0 {
				return used, true
			}
			if b[0] != socks.Version5 {
				c.handoff(in)
				return used, false
			}
			if len(b) < 2 || len(b) < 2+int(b[1]) {
				return used, true
			}
			var hasNone, hasUser bool
			for _, m := range b[2 : 2+int(b[1])] {
				hasNone = hasNone || m == 0
				hasUser = hasUser || m == 2
			}
			used += 2 + int(b[1])
			c.observe()
			switch {
			case hasUser:
				if !c.write([]byte{socks.Version5, 2}) {
					return used, false
				}
				c.state = stAuth
			case hasNone && len(c.l.e.g.opts.Users) == 0:
				if !c.write([]byte{socks.Version5, 0}) {
					return used, false
				}
				c.state = stRequest
			default:
				c.write([]byte{socks.Version5, 0xff})
				c.authRejected()
				return used, false
			}
		case stAuth:
			if len(b) < 2 {
				return used, true
			}
			if b[0] != 1 {
				c.fail(outcomeClientError)
				return used, false
			}
			ul := int(b[1])
			if len(b) < 2+ul+1 {
				return used, true
			}
			pl := int(b[2+ul])
			if len(b) < 3+ul+pl {
				return used, true
			}
			user, pass := string(b[2:2+ul]), string(b[3+ul:3+ul+pl])
			used += 3 + ul + pl
			g := c.l.e.g
			p, err := g.authenticate(user, pass)
			if err == nil {
				err = c.selector(p)
			}
			if err != nil {
				c.write([]byte{1, 1})
				c.authRejected()
				g.log.WithError(err).Debug("socks auth refused")
				return used, false
			}
			c.user = true
			if !c.write([]byte{1, 0}) {
				return used, false
			}
			c.state = stRequest
		case stRequest:
			if len(b) < 5 {
				return used, true
			}
			if b[0] != socks.Version5 {
				c.fail(outcomeClientError)
				return used, false
			}
			var alen int
			switch b[3] {
			case 1:
				alen = 4
			case 4:
				alen = 16
			case 3:
				alen = 1 + int(b[4])
			default:
				c.reply(socks.AddressUnsupported)
				c.fail(outcomeClientError)
				return used, false
			}
			if len(b) < 4+alen+2 {
				return used, true
			}
			if b[1] != 1 { // CONNECT only
				c.reply(socks.CommandUnsupported)
				c.fail(outcomeClientError)
				return used, false
			}
			var host string
			switch b[3] {
			case 1:
				host = netip.AddrFrom4([4]byte(b[4:8])).String()
			case 4:
				host = netip.AddrFrom16([16]byte(b[4:20])).String()
			default:
				host = string(b[5 : 5+int(b[4])])
			}
			port := int(b[4+alen])<<8 | int(b[5+alen])
			used += 4 + alen + 2
			if b[3] == 4 {
				c.target = "[" + host + "]:" + strconv.Itoa(port)
			} else {
				c.target = host + ":" + strconv.Itoa(port)
			}
			if rest := in[used:]; len(rest) > 0 { // sent before our reply: forward after it
				c.pendUp = append([]byte(nil), rest...)
				used = len(in)
			}
			c.hs = nil
			if !c.user {
				c.selector(Params{})
			}
			c.totalEnd = now.Add(c.l.e.g.opts.TotalTimeout)
			c.tryNext(now)
			return used, false
		default:
			return used, false
		}
	}
}

// selector mirrors conn.selector.
func (c *econn) selector(p Params) error {
	cc := conn{group: c.group}
	err := cc.selector(p)
	if err == nil {
		c.sel.Group, c.sel.Country, c.sel.Session, c.sel.SessionTTL = cc.sel.Group, cc.sel.Country, cc.sel.Session, cc.sel.SessionTTL
	}
	return err
}

func (c *econn) observe() {
	if c.observed {
		return
	}
	c.observed = true
	if obs := c.l.e.g.obs; obs != nil {
		obs.ConnOpened(c.listener, "socks5")
	}
}

func (c *econn) authRejected() {
	g := c.l.e.g
	g.stats.AuthFails.Add(1)
	if g.obs != nil {
		g.obs.AuthRejected(c.listener)
	}
	c.finish(outcomeAuth)
}

// write sends a short handshake answer; false (and the connection ended)
// when it did not go out whole.
func (c *econn) write(b []byte) bool {
	n, err := sysWrite(c.cfd, b)
	if err != nil || n != len(b) {
		c.finish(outcomeClientClosed)
		return false
	}
	return true
}

func (c *econn) reply(code byte) bool {
	if code == socks.Succeeded {
		return c.write([]byte{socks.Version5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	}
	return c.write([]byte{socks.Version5, code, 0, 1, 0, 0, 0, 0, 0, 0})
}

func (c *econn) fail(outcome string) { c.finish(outcome) }

// clientGone ends a connection whose client read failed.
func (c *econn) clientGone(err error) {
	switch {
	case errors.Is(err, io.EOF), err == syscall.ECONNRESET:
		c.finish(c.outcomeOr(outcomeClientClosed))
	default:
		c.finish(outcomeClientError)
	}
}

// timeout is the connection's timer firing.
func (c *econn) timeout(now time.Time) {
	switch c.state {
	case stGreeting, stAuth, stRequest:
		c.finish(outcomeClientTimout)
	case stConnecting, stUpReply:
		if c.stalling {
			c.pipelineFailed(now)
			return
		}
		c.tryFailed(now, upstream.CauseTimeout, os.ErrDeadlineExceeded)
	case stRelay:
		idle := c.l.e.g.opts.IdleTimeout
		last := time.Unix(0, c.lastActive)
		if now.Sub(last) >= idle {
			c.finish(outcomeOK)
			return
		}
		c.setTimer(last.Add(idle))
	}
}

// tryNext picks the next upstream and starts dialing it, or answers the
// client when there is none left.
func (c *econn) tryNext(now time.Time) {
	g := c.l.e.g
	for c.attempt < g.opts.MaxTries {
		c.sel.Attempt, c.sel.Tried = c.attempt, c.tried[:c.attempt]
		ch, err := g.opts.Picker.Pick(&c.sel)
		if err != nil {
			if c.attempt == 0 {
				c.dialFailed(&dialError{pickErr: err, addr: c.target})
				return
			}
			break
		}
		left := c.totalEnd.Sub(now)
		if left <= 0 {
			break
		}
		var ap netip.AddrPort
		ok := false
		if c.l.e.plain != nil {
			ap, ok = c.l.e.plain.PlainSOCKS5(ch.Upstream)
		}
		if !ok {
			// not ours to dial: the goroutine path dials it (and
			// fails over from there)
			c.handoffConnect(ch)
			return
		}
		c.tried[c.attempt] = ch.ID
		if c.attempt > 0 {
			g.stats.Retries.Add(1)
			if g.obs != nil {
				g.obs.Retry()
			}
		}
		c.choice = ch
		c.tryStart = now
		c.tryEnd = now.Add(min(left, g.tryTimeout(ch.LatencyMS)))
		c.setTimer(c.tryEnd)
		c.upAP = ap
		c.pipelined = ch.Caps.Has(upstream.CapPipeline) && !g.nopipe.has(ch.ID, now)
		if err := c.dial(ap); err != nil {
			c.tryFailed(now, c.l.e.g.classify(err), err)
			return
		}
		c.state = stConnecting
		return
	}
	if c.tries == 0 {
		c.cause, c.lastErr = upstream.CauseTimeout, errors.New("total timeout before any try")
	}
	c.dialFailed(&dialError{cause: c.cause, err: c.lastErr, tries: c.tries, last: c.lastID, addr: c.target})
}

// dial starts a nonblocking connect to ap.
func (c *econn) dial(ap netip.AddrPort) error {
	l := c.l
	fd, err := sysDial(ap)
	if err != nil {
		return err
	}
	tag := l.nextTag()
	if err := sysEpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, connEvents, tag); err != nil {
		sysClose(fd)
		return err
	}
	c.utag = tag
	c.ufd, c.urd, c.uwr, c.uHup = fd, false, false, false
	l.conns[fd] = c
	return nil
}

func (c *econn) closeUp() {
	if c.ufd >= 0 {
		delete(c.l.conns, c.ufd)
		sysClose(c.ufd)
		c.ufd = -1
	}
}

// connected: the connect finished one way or the other.
func (c *econn) connected(now time.Time) {
	// EPOLLOUT alone means the connect succeeded; only an error or hang-up
	// seen on the socket needs SO_ERROR to tell which (one syscall fewer
	// per connection)
	if c.uHup {
		if err := sysSoError(c.ufd); err != nil {
			c.tryFailed(now, c.l.e.g.classify(err), err)
			return
		}
	}
	// the greeting (no auth), and the CONNECT in the same write only
	// when the upstream's probe proved it reads both
	b := socks.AppendGreeting(c.l.buf[:0], socks.MethodNone)
	if c.pipelined {
		b = c.appendRequest(b)
	}
	n, err := sysWrite(c.ufd, b)
	if err == syscall.EAGAIN {
		// not connected yet after all (SO_ERROR is 0 while the
		// connect is in progress): wait for its EPOLLOUT
		c.uwr = false
		return
	}
	if err != nil || n != len(b) {
		if err == nil {
			err = syscall.EAGAIN
		}
		c.tryFailed(now, c.l.e.g.classify(err), err)
		return
	}
	c.hs = c.hs[:0]
	c.upMethod, c.stalling = false, false
	c.state = stUpReply
}

func (c *econn) appendRequest(b []byte) []byte {
	host, port := splitTarget(c.target)
	b, _ = socks.AppendRequest(b, socks.CmdConnect, host, uint16(port)) // host came from a parsed request
	return b
}

// pipelineStall bounds the wait for the CONNECT reply of a pipelined
// handshake once the method choice came, before the loop decides the
// upstream dropped the request (microsocks does): half the try's time
// left, at most 1s, so the sequential retry fits in the same try.
func pipelineStall(left time.Duration) time.Duration { return min(time.Second, left/2) }

// pipelineFailed: the upstream answered the greeting of a pipelined
// handshake and then stalled or closed. Remember that it does not
// pipeline and redial it once, sequentially, within the same try.
func (c *econn) pipelineFailed(now time.Time) {
	g := c.l.e.g
	g.nopipe.add(c.choice.ID, now)
	c.closeUp()
	c.pipelined, c.stalling = false, false
	c.setTimer(c.tryEnd)
	if err := c.dial(c.upAP); err != nil {
		c.tryFailed(now, g.classify(err), err)
		return
	}
	c.state = stConnecting
}

// splitTarget splits the "host:port" built from the request.
func splitTarget(t string) (string, int) {
	i := len(t) - 1
	for i >= 0 && t[i] != ':' {
		i--
	}
	host := t[:i]
	if len(host) > 1 && host[0] == '[' {
		host = host[1 : len(host)-1]
	}
	p, _ := strconv.Atoi(t[i+1:])
	return host, p
}

// readUpReply reads the upstream's method answer and CONNECT reply.
func (c *econn) readUpReply(now time.Time) {
	g := c.l.e.g
	var tmp [512]byte
	n, err := sysRead(c.ufd, tmp[:])
	switch {
	case err == syscall.EAGAIN:
		c.urd = false
		return
	case err != nil && c.pipelined && c.upMethod:
		c.pipelineFailed(now) // reset after the method choice
		return
	case err != nil:
		c.tryFailed(now, c.l.e.g.classify(err), err)
		return
	case n == 0:
		if c.pipelined && c.upMethod && len(c.hs) == 0 {
			c.pipelineFailed(now) // closed after the method choice
			return
		}
		c.tryFailed(now, upstream.CauseClosed, io.EOF)
		return
	}
	if n < len(tmp) && !c.uHup {
		c.urd = false
	}
	in := tmp[:n]
	if len(c.hs) > 0 {
		c.hs = append(c.hs, in...)
		in = c.hs
	}
	if !c.upMethod {
		m, used, err := socks.ParseMethod(in)
		switch {
		case errors.Is(err, socks.ErrShort):
			c.hs = append(c.hs[:0], in...)
			return
		case err != nil:
			c.tryFailed(now, upstream.CauseHandshake, err)
			return
		case m == socks.MethodUserPass:
			c.tryFailed(now, upstream.CauseAuth, errors.New("socks5: server wants a password"))
			return
		case m == socks.MethodNoGood:
			c.tryFailed(now, upstream.CauseAuth, errors.New("socks5: no acceptable auth method"))
			return
		case m != socks.MethodNone:
			c.tryFailed(now, upstream.CauseHandshake, errors.New("socks5: unexpected method "+strconv.Itoa(int(m))))
			return
		}
		c.upMethod = true
		in = in[used:]
		if !c.pipelined {
			b := c.appendRequest(c.l.buf[:0])
			if n, err := sysWrite(c.ufd, b); err != nil || n != len(b) {
				if err == nil {
					err = syscall.EAGAIN
				}
				c.tryFailed(now, g.classify(err), err)
				return
			}
		} else if len(in) == 0 {
			c.stalling = true
			c.setTimer(now.Add(pipelineStall(c.tryEnd.Sub(now))))
		}
		if len(in) == 0 {
			c.hs = c.hs[:0]
			return
		}
	}
	if c.stalling {
		c.stalling = false
		c.setTimer(c.tryEnd)
	}
	code, used, err := socks.ParseReply(in)
	switch {
	case errors.Is(err, socks.ErrShort):
		c.hs = append(c.hs[:0], in...)
		return
	case err != nil:
		c.tryFailed(now, upstream.CauseHandshake, err)
		return
	case code != socks.Succeeded:
		r := socks.ReplyCode(code)
		c.tryFailed(now, r.Cause, &socks.ReplyError{Code: code}, r.Text)
		return
	}
	if extra := in[used:]; len(extra) > 0 { // the target spoke first
		c.pendDown = append([]byte(nil), extra...)
	}
	c.hs = nil
	c.established(now)
}

// tryFailed ends the current try and fails over.
func (c *econn) tryFailed(now time.Time, cause upstream.Cause, err error, text ...string) {
	g := c.l.e.g
	c.closeUp()
	took := now.Sub(c.tryStart)
	if g.obs != nil {
		g.obs.DialLatency(cause.String(), took)
	}
	if len(text) > 0 {
		err = errors.New("socks5: " + text[0])
	}
	c.cause, c.lastErr, c.lastID = cause, err, c.choice.ID
	c.attempt++
	c.tries = c.attempt
	if cause.IsTarget() {
		c.dialFailed(&dialError{cause: cause, err: err, tries: c.tries, last: c.lastID, addr: c.target})
		return
	}
	c.l.e.report(c.choice.ID, c.tryStart, took, cause)
	c.hs = c.hs[:0]
	c.state = stRequest // between tries
	c.tryNext(now)
}

// dialFailed answers the client with the SOCKS code for err and ends.
func (c *econn) dialFailed(err *dialError) {
	g := c.l.e.g
	g.stats.Failed.Add(1)
	cc := conn{}
	cc.dialFailed(err)
	c.reply(socksCode(err))
	g.log.WithError(err).WithField("target", c.target).Debug("socks request failed")
	if c.state != stDone {
		c.finish(cc.outcome)
	}
}

// established: the upstream said yes. Answer the client and relay.
func (c *econn) established(now time.Time) {
	g := c.l.e.g
	took := now.Sub(c.tryStart)
	if g.obs != nil {
		g.obs.DialLatency(outcomeOK, took)
	}
	c.l.e.report(c.choice.ID, c.tryStart, took, upstream.CauseNone)
	g.stats.Tunnels.Add(1)
	c.outcome = outcomeOK
	if !c.reply(socks.Succeeded) {
		return
	}
	c.tunnelled = true
	if g.obs != nil {
		g.obs.ActiveTunnels(1)
	}
	c.state = stRelay
	c.lastActive = now.UnixNano()
	c.idle = true
	c.setTimer(now.Add(g.opts.IdleTimeout))
	c.cwr, c.uwr = true, true
}

// relay moves bytes both ways as far as readiness allows, within a
// budget per turn so that one busy tunnel does not hold the loop; one that
// used its budget with bytes still readable is queued for another turn
// (edge-triggered epoll says nothing more about bytes already there, and
// a peer blocked on a full buffer sends no new ones).
func (c *econn) relay(now time.Time) {
	for range c.l.e.g.opts.relayRounds {
		moved := false
		if c.state == stRelay && c.ufd >= 0 {
			m, done := c.copy(now, c.cfd, c.ufd, &c.crd, &c.uwr, &c.cEOF, c.cHup, &c.upShut, &c.pendUp, &c.nUp)
			moved = moved || m
			if done {
				return
			}
		}
		if c.state == stRelay && c.ufd >= 0 {
			m, done := c.copy(now, c.ufd, c.cfd, &c.urd, &c.cwr, &c.uEOF, c.uHup, &c.downShut, &c.pendDown, &c.nDown)
			moved = moved || m
			if done {
				return
			}
		}
		if !moved {
			return
		}
	}
	if c.state == stRelay {
		c.l.again(c)
	}
}

// copy moves src → dst: first what is pending for dst, then what src has.
// It returns whether anything moved and whether the connection ended.
func (c *econn) copy(now time.Time, src, dst int, srcRd, dstWr, srcEOF *bool, srcHup bool, dstShut *bool, pend *[]byte, count *int64) (moved, ended bool) {
	if len(*pend) > 0 {
		if !*dstWr {
			return false, false
		}
		n, err := sysWrite(dst, *pend)
		if n > 0 {
			*pend = (*pend)[n:]
			*count += int64(n)
			moved = true
		}
		if err != nil && err != syscall.EAGAIN {
			c.finish(outcomeOK)
			return moved, true
		}
		if len(*pend) > 0 {
			*dstWr = false
			return moved, false
		}
		*pend = nil
	}
	if *srcEOF {
		return c.shut(dst, dstShut, moved)
	}
	for range c.l.e.g.opts.relayReads {
		if !*srcRd {
			return moved, false
		}
		buf := c.l.buf
		n, err := sysRead(src, buf)
		if err == syscall.EAGAIN {
			*srcRd = false
			return moved, false
		}
		if err != nil {
			c.finish(outcomeOK)
			return moved, true
		}
		if n == 0 {
			*srcEOF = true
			return c.shut(dst, dstShut, true)
		}
		if n < len(buf) && !srcHup {
			*srcRd = false // drained: the next bytes bring a new edge
		}
		c.lastActive = now.UnixNano()
		moved = true
		w, err := sysWrite(dst, buf[:n])
		if w < 0 {
			w = 0
		}
		*count += int64(w)
		if err != nil && err != syscall.EAGAIN {
			c.finish(outcomeOK)
			return moved, true
		}
		if w < n {
			*pend = append(make([]byte, 0, n-w), buf[w:n]...)
			*dstWr = false
			return moved, false
		}
	}
	return moved, false
}

// shut half-closes dst once its source ended and nothing is pending; when
// both directions ended the connection is done.
func (c *econn) shut(dst int, dstShut *bool, moved bool) (bool, bool) {
	if c.cEOF && c.uEOF && len(c.pendUp) == 0 && len(c.pendDown) == 0 {
		c.finish(outcomeOK)
		return moved, true
	}
	if !*dstShut {
		*dstShut = true
		sysShutdownWrite(dst)
	}
	return moved, false
}

// finish closes everything the connection holds and accounts for it.
func (c *econn) finish(outcome string) {
	if c.state == stDone {
		return
	}
	c.state = stDone
	l, g := c.l, c.l.e.g
	c.clearTimer()
	c.closeUp()
	if c.cfd >= 0 {
		delete(l.conns, c.cfd)
		sysClose(c.cfd)
		c.cfd = -1
	}
	if g.obs != nil {
		if c.tunnelled {
			g.obs.ActiveTunnels(-1)
			g.obs.Bytes(c.nUp, c.nDown)
		}
		proto := "socks5"
		if !c.observed {
			proto = "unknown"
			g.obs.ConnOpened(c.listener, proto)
		}
		g.obs.ConnDone(c.listener, proto, outcome, time.Since(c.start))
	}
	c.release()
}

// release gives back the connection's slot (MaxConns, drain wait).
func (c *econn) release() {
	l, g := c.l, c.l.e.g
	l.nconns--
	g.stats.Active.Add(-1)
	<-g.sem
	g.wg.Done()
	if l.paused && l.lns != nil {
		// a slot is free: accept again now (not resumeAt = 0: when the
		// slot frees in a queued turn the loop parks without a wake-up)
		l.paused = false
		if !l.accept {
			l.addListeners()
		}
	}
}

// detach takes the client socket out of the loop for the goroutine path.
func (c *econn) detach() (int, bool) {
	l := c.l
	c.clearTimer()
	c.closeUp()
	fd := c.cfd
	delete(l.conns, fd)
	sysEpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, fd, 0, 0)
	c.cfd = -1
	c.state = stDone
	l.nconns--
	return fd, true
}

// handoff gives a connection that is not SOCKS5 (HTTP, SOCKS4, or
// something else) to the goroutine path, with the bytes read so far.
func (c *econn) handoff(read []byte) {
	g := c.l.e.g
	pre := append([]byte(nil), read...)
	fd, _ := c.detach()
	nc, err := fdConn(fd)
	cc := &conn{g: g, listener: c.listener, group: c.group}
	if err != nil {
		g.log.WithError(err).Warn("dropping a client connection")
		g.stats.Active.Add(-1)
		<-g.sem
		g.wg.Done()
		return
	}
	cc.c = &prefixConn{Conn: nc, pre: pre}
	g.stats.Handoffs.Add(1)
	g.adopt(cc)
	ctx := c.l.e.ctx
	g.work.run(func() { cc.serve(ctx) })
}

// handoffConnect gives a SOCKS5 client whose handshake is done, and whose
// upstream the loop does not dial itself, to the goroutine path.
func (c *econn) handoffConnect(first upstream.Choice) {
	g := c.l.e.g
	target, sel, pend, start, deadline := c.target, c.sel, c.pendUp, c.start, c.totalEnd
	sel.Attempt, sel.Tried = c.attempt, c.tried[:c.attempt] // connect copies them
	fd, _ := c.detach()
	nc, err := fdConn(fd)
	if err != nil {
		g.log.WithError(err).Warn("dropping a client connection")
		if g.obs != nil {
			g.obs.ConnDone(c.listener, "socks5", "other", time.Since(start))
		}
		g.stats.Active.Add(-1)
		<-g.sem
		g.wg.Done()
		return
	}
	var cl = nc
	if len(pend) > 0 {
		cl = &prefixConn{Conn: nc, pre: pend}
	}
	cc := &conn{g: g, c: cl, listener: c.listener, group: c.group, sel: sel, proto: "socks5"}
	g.stats.Handoffs.Add(1)
	g.adopt(cc)
	ctx := c.l.e.ctx
	g.work.run(func() { cc.connectSOCKS(ctx, target, first, start, deadline) })
}
