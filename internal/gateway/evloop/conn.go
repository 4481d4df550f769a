package evloop

import (
	"container/heap"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/proxypool/proxypool/internal/gateway/failover"
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
	listener            string
	route               *failover.Route // the listener's when accepted
	start               time.Time
	deadline            int64 // unix nanos of the one timer
	ti                  int   // index in the timer heap; -1 when none
	idle                bool  // timer is the relay's idle check
	lastActive          int64
	sel                 upstream.Selector
	hs                  []byte // partial handshake bytes (client, then upstream reply)
	target              string
	f                   failover.Failover // the request's tries
	pendUp, pendDown    []byte            // bytes waiting for the other side to become writable
	nUp, nDown          int64
	outcome             string
	observed, tunnelled bool
	tunDone             func(up, down int64) // Options.Tunnel's, while tunnelled
	queued              bool                 // in the loop's list for another turn
	upAP                netip.AddrPort
	upMethod            bool      // the upstream's method choice has arrived
	pipelined           bool      // this try sent greeting and CONNECT in one write
	stalling            bool      // pipelined, method choice in, timer is the stall bound
	tryEnd              time.Time // the try's own deadline (the stall bound is shorter)
	// The tunnel's probation, as on the goroutine path (gateway's
	// watch.go): until the target's first byte reached the client, an
	// upstream that closes, resets or answers with another protocol's
	// bytes is charged, and replaced while none of the client's bytes
	// reached it.
	watching bool
	replied  bool     // the client has its success reply (a redial must not send another)
	sentUp   bool     // a client byte went to this try's upstream
	firstUp  [16]byte // the client's first bytes, for failover.Mismatch
	nFirst   uint8
	adm      Admission // the Host's, given back with the connection
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
	r := ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	w := ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0
	hup := ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
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
	case err == unix.EAGAIN:
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
		c.fail(failover.OutcomeClientError)
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
			if len(b) >= 2 && b[1] == 0 {
				c.write([]byte{socks.Version5, 0xff})
				c.malformed("greeting without methods")
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
			case hasNone && !c.l.e.o.NeedAuth:
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
				c.write([]byte{1, 1})
				c.malformed("auth subnegotiation version " + strconv.Itoa(int(b[0])))
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
			if err := c.l.e.o.Host.Authorize(&c.sel, c.route.Group, user, pass); err != nil {
				c.write([]byte{1, 1})
				c.authRejected()
				c.l.e.o.Log.WithError(err).Debug("socks auth refused")
				return used, false
			}
			if !c.write([]byte{1, 0}) {
				return used, false
			}
			c.state = stRequest
		case stRequest:
			if len(b) < 5 {
				return used, true
			}
			if b[0] != socks.Version5 {
				c.reply(socks.GeneralFailure)
				c.malformed("request version " + strconv.Itoa(int(b[0])))
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
				c.malformed("address type " + strconv.Itoa(int(b[3])))
				return used, false
			}
			if len(b) < 4+alen+2 {
				return used, true
			}
			if b[1] != 1 { // CONNECT only
				c.reply(socks.CommandUnsupported)
				c.malformed("command " + strconv.Itoa(int(b[1])))
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
			c.l.e.o.Tries.Start(&c.f, &c.sel, c.route.Picker, c.target, now, time.Time{})
			c.tryNext(now)
			return used, false
		default:
			return used, false
		}
	}
}

func (c *econn) observe() {
	if c.observed {
		return
	}
	c.observed = true
	if obs := c.l.e.o.Observer; obs != nil {
		obs.ConnOpened(c.listener, "socks5")
	}
}

func (c *econn) authRejected() {
	c.l.e.o.Host.AuthRejected(c.listener)
	c.finish(failover.OutcomeAuth)
}

// write sends a short handshake answer; false (and the connection ended)
// when it did not go out whole.
func (c *econn) write(b []byte) bool {
	n, err := sysWrite(c.cfd, b)
	if err != nil || n != len(b) {
		c.finish(failover.OutcomeClientClosed)
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

// malformed ends a connection whose handshake could not be valid, after
// its answer went out, and tells the Host (a log line).
func (c *econn) malformed(what string) {
	if c.state == stDone { // the answer's write failed
		return
	}
	c.l.e.o.Host.Malformed(c.listener, c.sel.Client, "socks5 "+what)
	c.fail(failover.OutcomeClientError)
}

// clientGone ends a connection whose client read failed.
func (c *econn) clientGone(err error) {
	switch {
	case errors.Is(err, io.EOF), err == unix.ECONNRESET:
		c.finish(c.outcomeOr(failover.OutcomeClientClosed))
	default:
		c.finish(failover.OutcomeClientError)
	}
}

// timeout is the connection's timer firing.
func (c *econn) timeout(now time.Time) {
	switch c.state {
	case stGreeting, stAuth, stRequest:
		c.finish(failover.OutcomeClientTimout)
	case stConnecting, stUpReply:
		if c.stalling {
			c.pipelineFailed(now)
			return
		}
		c.tryFailedAs(now, upstream.CauseTimeout, os.ErrDeadlineExceeded)
	case stRelay:
		idle := c.l.e.o.IdleTimeout
		last := time.Unix(0, c.lastActive)
		if now.Sub(last) >= idle {
			c.finish(failover.OutcomeOK)
			return
		}
		c.setTimer(last.Add(idle))
	}
}

// tryNext picks the next upstream and starts dialing it, or answers the
// client when there is none left.
func (c *econn) tryNext(now time.Time) {
	ch, ok := c.f.Next(now)
	if !ok {
		c.dialFailed()
		return
	}
	var ap netip.AddrPort
	plain := false
	if c.l.e.o.Plain != nil {
		ap, plain = c.l.e.o.Plain.PlainSOCKS5(ch.Entry)
	}
	if !plain && c.replied {
		// a redial after a broken tunnel: the goroutine path would
		// answer the client a second time
		c.finish(failover.OutcomeUpstream)
		return
	}
	if !plain {
		// not ours to dial: the goroutine path dials it (and fails
		// over from there)
		c.handoffConnect()
		return
	}
	c.tryEnd = now.Add(c.f.Begin(now))
	c.setTimer(c.tryEnd)
	c.upAP = ap
	c.pipelined = c.f.Pipeline(now)
	if err := c.dial(ap); err != nil {
		c.tryFailed(now, err)
		return
	}
	c.state = stConnecting
}

// dial starts a nonblocking connect to ap.
func (c *econn) dial(ap netip.AddrPort) error {
	l := c.l
	fd, err := sysDial(ap)
	if err != nil {
		return err
	}
	tag := l.nextTag()
	if err := sysEpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, connEvents, tag); err != nil {
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
			c.tryFailed(now, err)
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
	if err == unix.EAGAIN {
		// not connected yet after all (SO_ERROR is 0 while the
		// connect is in progress): wait for its EPOLLOUT
		c.uwr = false
		return
	}
	if err != nil || n != len(b) {
		if err == nil {
			err = unix.EAGAIN
		}
		c.tryFailed(now, err)
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
	c.f.Stalled(now)
	c.closeUp()
	c.pipelined, c.stalling = false, false
	c.setTimer(c.tryEnd)
	if err := c.dial(c.upAP); err != nil {
		c.tryFailed(now, err)
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
	var tmp [512]byte
	n, err := sysRead(c.ufd, tmp[:])
	switch {
	case err == unix.EAGAIN:
		c.urd = false
		return
	case err != nil && c.pipelined && c.upMethod:
		c.pipelineFailed(now) // reset after the method choice
		return
	case err != nil:
		c.tryFailed(now, err)
		return
	case n == 0:
		if c.pipelined && c.upMethod && len(c.hs) == 0 {
			c.pipelineFailed(now) // closed after the method choice
			return
		}
		c.tryFailedAs(now, upstream.CauseClosed, io.EOF)
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
		if c.upParseFailed(now, in, err) {
			return
		}
		switch {
		case m == socks.MethodUserPass:
			c.tryFailedAs(now, upstream.CauseAuth, errors.New("socks5: server wants a password"))
			return
		case m == socks.MethodNoGood:
			c.tryFailedAs(now, upstream.CauseAuth, errors.New("socks5: no acceptable auth method"))
			return
		case m != socks.MethodNone:
			c.tryFailedAs(now, upstream.CauseHandshake, errors.New("socks5: unexpected method "+strconv.Itoa(int(m))))
			return
		}
		c.upMethod = true
		in = in[used:]
		if !c.pipelined {
			b := c.appendRequest(c.l.buf[:0])
			if n, err := sysWrite(c.ufd, b); err != nil || n != len(b) {
				if err == nil {
					err = unix.EAGAIN
				}
				c.tryFailed(now, err)
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
	if c.upParseFailed(now, in, err) {
		return
	}
	if code != socks.Succeeded {
		r := socks.ReplyCode(code)
		c.tryFailedAs(now, r.Cause, errors.New("socks5: "+r.Text))
		return
	}
	if extra := in[used:]; len(extra) > 0 { // the target spoke first
		c.pendDown = append([]byte(nil), extra...)
	}
	c.hs = nil
	c.established(now)
}

// upParseFailed handles an upstream answer that is incomplete (kept for
// the next read) or malformed (the try fails); false when err is nil.
func (c *econn) upParseFailed(now time.Time, in []byte, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, socks.ErrShort):
		c.hs = append(c.hs[:0], in...)
	default:
		c.tryFailedAs(now, upstream.CauseHandshake, err)
	}
	return true
}

// tryFailed ends the current try with err and fails over.
func (c *econn) tryFailed(now time.Time, err error) {
	c.closeUp()
	c.next(now, c.f.Failed(now, err))
}

// tryFailedAs is tryFailed for a cause the loop read off the handshake.
func (c *econn) tryFailedAs(now time.Time, cause upstream.Cause, err error) {
	c.closeUp()
	c.next(now, c.f.FailedAs(now, cause, err))
}

func (c *econn) next(now time.Time, again bool) {
	if !again {
		c.dialFailed()
		return
	}
	c.hs = c.hs[:0]
	c.state = stRequest // between tries
	c.tryNext(now)
}

// dialFailed answers the client that the request got no tunnel, and ends.
// After a broken tunnel the client already has its success reply: it is
// closed without another.
func (c *econn) dialFailed() {
	code, outcome := c.l.e.o.Host.Refused(&c.f)
	if c.replied {
		outcome = failover.OutcomeUpstream
	} else {
		c.reply(code)
	}
	if c.state != stDone {
		c.finish(outcome)
	}
}

// established: the upstream said yes. Answer the client (unless this is
// the redial of a broken tunnel) and relay, on probation.
func (c *econn) established(now time.Time) {
	c.f.Succeeded(now)
	c.outcome = failover.OutcomeOK
	c.watching, c.sentUp, c.uEOF, c.upShut = true, false, false, false
	if !c.replied {
		if !c.reply(socks.Succeeded) {
			c.f.Confirm() // the client left; the upstream did its part
			return
		}
		c.replied = true
		c.tunnelled = true
		if obs := c.l.e.o.Observer; obs != nil {
			obs.ActiveTunnels(1)
		}
		if tun := c.l.e.o.Tunnel; tun != nil {
			c.tunDone = tun(c.listener, c.adm.Peer.String(), c.target, c.route.Group, c.f.Current().ID)
		}
	}
	if len(c.pendDown) > 0 && !c.checkDown(now, c.pendDown) { // the target spoke first
		return
	}
	c.state = stRelay
	c.lastActive = now.UnixNano()
	c.idle = true
	c.setTimer(now.Add(c.l.e.o.IdleTimeout))
	c.cwr, c.uwr = true, true
}

// relay moves bytes both ways as far as readiness allows, within a
// budget per turn so that one busy tunnel does not hold the loop; one that
// used its budget with bytes still readable is queued for another turn
// (edge-triggered epoll says nothing more about bytes already there, and
// a peer blocked on a full buffer sends no new ones).
func (c *econn) relay(now time.Time) {
	for range c.l.e.o.RelayRounds {
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
		if dst == c.ufd {
			c.upward(*pend)
		}
		n, err := sysWrite(dst, *pend)
		if n > 0 {
			*pend = (*pend)[n:]
			*count += int64(n)
			moved = true
		}
		if err != nil && err != unix.EAGAIN {
			c.finish(failover.OutcomeOK)
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
	for range c.l.e.o.RelayReads {
		if !*srcRd {
			return moved, false
		}
		buf := c.l.buf
		n, err := sysRead(src, buf)
		if err == unix.EAGAIN {
			*srcRd = false
			return moved, false
		}
		if c.watching && src == c.ufd && (err != nil || n == 0) && !c.cEOF {
			if err == nil {
				err = io.EOF
			}
			c.broke(now, c.l.e.o.Tries.Classify(err), err)
			return moved, true
		}
		if err != nil {
			c.finish(failover.OutcomeOK)
			return moved, true
		}
		if n == 0 {
			*srcEOF = true
			return c.shut(dst, dstShut, true)
		}
		if src == c.ufd && !c.checkDown(now, buf[:n]) {
			return moved, true
		}
		if src == c.cfd {
			c.upward(buf[:n])
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
		if err != nil && err != unix.EAGAIN {
			c.finish(failover.OutcomeOK)
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

// upward notes client bytes about to go to the upstream: the first ones
// for the probation's protocol check, and that a redial could no longer
// replay the request.
func (c *econn) upward(b []byte) {
	if !c.watching || c.sentUp {
		return
	}
	c.sentUp = true
	c.nFirst = uint8(copy(c.firstUp[:], b))
}

// checkDown looks at the upstream's first bytes on probation: another
// protocol's bytes break the tunnel (false), anything else confirms the
// upstream.
func (c *econn) checkDown(now time.Time, b []byte) bool {
	if !c.watching {
		return true
	}
	if failover.Mismatch(c.firstUp[:c.nFirst], b) {
		c.broke(now, upstream.CauseHandshake, failover.ErrGarbage)
		return false
	}
	c.watching = false
	c.f.Confirm()
	return true
}

// broke charges the upstream that broke the tunnel on probation and, when
// none of the client's bytes reached it, dials the next one; bytes the
// client sent since stay in pendUp for it. Otherwise the client is closed:
// what it sent may have had its effect.
func (c *econn) broke(now time.Time, cause upstream.Cause, err error) {
	c.watching = false
	c.f.Broke(now, cause, err)
	c.l.e.o.Log.WithError(err).WithField("UPSTREAM_ID", c.f.Current().ID).Debug("tunnel broke after the upstream's handshake")
	if c.sentUp {
		c.finish(failover.OutcomeUpstream)
		return
	}
	c.closeUp()
	c.pendDown = nil
	c.state = stRequest // between tries
	c.tryNext(now)
}

// shut half-closes dst once its source ended and nothing is pending; when
// both directions ended the connection is done.
func (c *econn) shut(dst int, dstShut *bool, moved bool) (bool, bool) {
	if c.cEOF && c.uEOF && len(c.pendUp) == 0 && len(c.pendDown) == 0 {
		c.finish(failover.OutcomeOK)
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
	if c.watching {
		// ended on probation without a break (the client left first, or
		// the tunnel sat idle): the upstream did its part
		c.watching = false
		c.f.Confirm()
	}
	l := c.l
	c.clearTimer()
	c.closeUp()
	if c.cfd >= 0 {
		delete(l.conns, c.cfd)
		sysClose(c.cfd)
		c.cfd = -1
	}
	if c.tunDone != nil {
		c.tunDone(c.nUp, c.nDown)
		c.tunDone = nil
	}
	if obs := l.e.o.Observer; obs != nil {
		if c.tunnelled {
			obs.ActiveTunnels(-1)
			obs.Bytes(c.nUp, c.nDown)
		}
		proto := "socks5"
		if !c.observed {
			proto = "unknown"
			obs.ConnOpened(c.listener, proto)
		}
		obs.ConnDone(c.listener, proto, outcome, time.Since(c.start))
	}
	c.release()
}

// release gives back the connection's slot (MaxConns, drain wait).
func (c *econn) release() {
	l := c.l
	l.nconns--
	l.e.o.Host.Release(c.adm)
	if l.paused && l.lns != nil {
		// a slot is free: accept again now (not resumeAt = 0: when the
		// slot frees in a queued turn the loop parks without a wake-up)
		l.paused = false
		if !l.accept {
			l.addListeners()
		}
	}
}

// detach takes the client socket out of the loop for the goroutine path
// and makes it a net.Conn; on failure the connection ends here.
func (c *econn) detach(proto string) (net.Conn, bool) {
	l := c.l
	c.clearTimer()
	c.closeUp()
	fd := c.cfd
	delete(l.conns, fd)
	sysEpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, 0, 0)
	c.cfd = -1
	c.state = stDone
	l.nconns--
	nc, err := fdConn(fd)
	if err != nil {
		l.e.o.Log.WithError(err).Warn("dropping a client connection")
		if obs := l.e.o.Observer; obs != nil && proto != "" {
			obs.ConnDone(c.listener, proto, "other", time.Since(c.start))
		}
		l.e.o.Host.Release(c.adm)
		return nil, false
	}
	return nc, true
}

// handoff gives a connection that is not SOCKS5 (HTTP, SOCKS4, or
// something else) to the goroutine path, with the bytes read so far.
func (c *econn) handoff(read []byte) {
	pre := append([]byte(nil), read...)
	nc, ok := c.detach("")
	if !ok {
		return
	}
	c.l.e.o.Host.Handoff(c.l.e.ctx, &prefixConn{Conn: nc, pre: pre}, c.listener, c.route, nil, c.start, c.adm)
}

// handoffConnect gives a SOCKS5 client whose handshake is done, and whose
// next upstream the loop does not dial itself, to the goroutine path with
// its tries so far.
func (c *econn) handoffConnect() {
	pend := c.pendUp
	nc, ok := c.detach("socks5")
	if !ok {
		return
	}
	if len(pend) > 0 {
		nc = &prefixConn{Conn: nc, pre: pend}
	}
	c.l.e.o.Host.Handoff(c.l.e.ctx, nc, c.listener, c.route, &c.f, c.start, c.adm)
}
