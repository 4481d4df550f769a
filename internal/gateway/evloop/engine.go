// Package evloop is the gateway's event-loop engine. It serves SOCKS5
// clients whose upstream is a plain SOCKS5 server (the common case:
// free-list SOCKS5 proxies and tor) the way HAProxy serves TCP: a few
// loops, each one goroutine around its own epoll set, drive every such
// connection with nonblocking syscalls and a shared buffer: accept,
// greeting, auth, request, nonblocking connect to the upstream, pipelined
// SOCKS5 to it, failover to the next upstream, then the relay. It reads a
// socket only after epoll said it became readable (never a read that ends
// in EAGAIN just to find out), and no goroutine, netFD, timer or finalizer
// exists per connection. What it does not speak (HTTP, SOCKS4, upstreams
// of other kinds or with credentials) it hands to the goroutine path: the
// client socket becomes a net.Conn with the bytes read so far put back in
// front.
//
// The loops know the gateway only through Host (admission, auth, the
// answer to a failed request, hand-off) and failover.Failover (picks and
// outcomes), so neither side reaches into the other's state.
package evloop

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/proxypool/proxypool/internal/gateway/failover"
)

// Listener is one listening socket served by the loops. Route is read
// once per connection accepted, so swapping it (a reload) changes where
// the next connections go, not those already open.
type Listener struct {
	FD    int
	Name  string
	Route *atomic.Pointer[failover.Route]
	ID    uint64 // the host's name for it, in each Admission.Port
}

const (
	loopBufSize = 64 << 10
	maxEvents   = 256
	// evWake is the epoll data of a loop's eventfd.
	evWake = -1
)

// Engine is the set of loops serving some listeners.
type Engine struct {
	o     Options
	ctx   context.Context
	loops []*loop
	wg    sync.WaitGroup // the loops
}

// New makes one loop per P for lns; Start runs them. ctx is the one the
// goroutine path serves handed-off connections under.
func New(ctx context.Context, o Options, lns []Listener) (*Engine, error) {
	if o.Log == nil {
		l := logrus.New()
		l.Out = io.Discard
		o.Log = l
	}
	e := &Engine{o: o, ctx: ctx}
	// Accepted sockets inherit TCP_NODELAY from their listener (Linux
	// copies the listening socket's TCP options to each child): set once
	// here (proxy-gateway.socket's NoDelay= does the same), it saves a
	// setsockopt per connection.
	for _, ln := range lns {
		sysNoDelay(ln.FD)
	}
	// one loop per P: on a machine shared with other busy processes the
	// kernel shares CPU time by runnable thread, and one loop on two
	// CPUs got measurably less than HAProxy's two threads
	n := min(max(runtime.GOMAXPROCS(0), 1), 16)
	for range n {
		l, err := newLoop(e, lns)
		if err != nil {
			for _, l := range e.loops {
				l.closeFDs()
			}
			return nil, err
		}
		e.loops = append(e.loops, l)
	}
	return e, nil
}

// Start runs the loops.
func (e *Engine) Start() {
	for _, l := range e.loops {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			l.run()
		}()
	}
}

// call runs f on every loop and waits until all ran it.
func (e *Engine) call(f func(l *loop)) {
	var wg sync.WaitGroup
	for _, l := range e.loops {
		wg.Add(1)
		l.send(func() { f(l); wg.Done() })
	}
	wg.Wait()
}

// StopAccepting takes the listeners out of every loop; after it returns
// no loop touches a listener fd again, so the caller may close them.
func (e *Engine) StopAccepting() { e.call(func(l *loop) { l.stopAccepting() }) }

// AddListener has every loop accept from ln too (a port a config reload
// added). Call it only between Start and StopAccepting.
func (e *Engine) AddListener(ln Listener) error {
	sysNoDelay(ln.FD)
	var mu sync.Mutex
	var errs []error
	e.call(func(l *loop) {
		// the loops share the first slice: each appends to its own copy
		l.lns = append(l.lns[:len(l.lns):len(l.lns)], ln)
		if !l.accept {
			return // paused: addListeners takes it in on resuming
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(ln.FD)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, ln.FD, &ev); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	})
	if len(errs) > 0 {
		e.RemoveListener(ln.FD)
		return fmt.Errorf("adding listener %q to epoll: %w", ln.Name, errs[0])
	}
	return nil
}

// RemoveListener takes the listener fd out of every loop; after it returns
// no loop touches fd again, so the caller may close it. Connections it
// accepted go on.
func (e *Engine) RemoveListener(fd int) {
	e.call(func(l *loop) {
		for i, ln := range l.lns {
			if ln.FD == fd {
				if l.accept {
					unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
				}
				l.lns = append(l.lns[:i:i], l.lns[i+1:]...)
				break
			}
		}
	})
}

// CloseFrom ends every connection the loops hold that was accepted from
// the listener with that ID (a removed port's drain timeout).
func (e *Engine) CloseFrom(id uint64) {
	e.call(func(l *loop) { l.closeWhere(func(c *econn) bool { return c.adm.Port == id }) })
}

// CloseAll ends every connection the loops hold (drain timeout).
func (e *Engine) CloseAll() { e.call(func(l *loop) { l.closeAll() }) }

// Stop makes the loops exit once they hold no connection, and waits.
func (e *Engine) Stop() {
	for _, l := range e.loops {
		l.send(func() { l.quitting = true })
	}
	e.wg.Wait()
}

// loop is one epoll set and everything registered in it.
type loop struct {
	e      *Engine
	epfd   int
	wakefd int // eventfd: other goroutines' send
	lns    []Listener
	accept bool // listeners are in the epoll set

	mu   sync.Mutex
	cmds []func()

	conns    map[int]*econn // by fd, both sides
	timers   timerHeap
	nconns   int
	paused   bool  // at MaxConns: listeners taken out until resumeAt
	resumeAt int64 // unix nanos
	quitting bool

	buf    []byte
	events [maxEvents]unix.EpollEvent
	tag    int32    // the last socket tag handed out (nextTag)
	queue  []*econn // relays that used their turn's budget with bytes left
	spare  []*econn
}

func newLoop(e *Engine, lns []Listener) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("creating epoll set: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("creating eventfd: %w", err)
	}
	l := &loop{e: e, epfd: epfd, wakefd: wakefd, lns: lns, conns: map[int]*econn{}, buf: make([]byte, loopBufSize)}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: evWake}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, l.wakefd, &ev); err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("adding eventfd to epoll: %w", err)
	}
	if err := l.addListeners(); err != nil {
		l.closeFDs()
		return nil, err
	}
	return l, nil
}

func (l *loop) closeFDs() {
	if l.wakefd >= 0 {
		unix.Close(l.wakefd)
		l.wakefd = -1
	}
	if l.epfd >= 0 {
		unix.Close(l.epfd)
		l.epfd = -1
	}
}

// connEvents: edge-triggered readability, writability and peer
// half-close of a connection's sockets.
const connEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

func (l *loop) addListeners() error {
	for _, ln := range l.lns {
		// EPOLLEXCLUSIVE: wake one loop per new connection
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(ln.FD)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, ln.FD, &ev); err != nil {
			return fmt.Errorf("adding listener %q to epoll: %w", ln.Name, err)
		}
	}
	l.accept = true
	return nil
}

func (l *loop) removeListeners() {
	if !l.accept {
		return
	}
	for _, ln := range l.lns {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, ln.FD, nil)
	}
	l.accept = false
}

func (l *loop) stopAccepting() {
	l.removeListeners()
	l.lns = nil
	l.paused = false
}

// send queues f for the loop goroutine and wakes it.
func (l *loop) send(f func()) {
	l.mu.Lock()
	l.cmds = append(l.cmds, f)
	l.mu.Unlock()
	one := uint64(1)
	unix.Write(l.wakefd, (*[8]byte)(unsafe.Pointer(&one))[:])
}

func (l *loop) runCmds() {
	var b [8]byte
	unix.Read(l.wakefd, b[:])
	l.mu.Lock()
	cmds := l.cmds
	l.cmds = nil
	l.mu.Unlock()
	for _, f := range cmds {
		f()
	}
}

// run serves the loop's epoll set until it quits. The goroutine never
// blocks in epoll_wait: the epoll fd itself is registered with Go's
// netpoller (an epoll set is readable while it has events), so between
// bursts the loop parks like any goroutine and no OS thread sits in a
// blocking syscall (which would have the scheduler hand its P to another
// thread and take it back on every wake-up).
func (l *loop) run() {
	unix.SetNonblock(l.epfd, true)
	f := os.NewFile(uintptr(l.epfd), "epoll")
	defer func() {
		unix.Close(l.wakefd)
		l.wakefd, l.epfd = -1, -1
		f.Close() // the epoll set
	}()
	rc, err := f.SyscallConn()
	if err != nil {
		l.e.o.Log.WithError(err).Error("event loop cannot wait on its epoll set")
		return
	}
	var armed int64 // deadline set on f; 0 none
	for !(l.quitting && l.nconns == 0) {
		err := rc.Read(func(uintptr) bool {
			for {
				n := l.poll()
				if n > 0 {
					l.dispatch(n)
				}
				l.expire()
				l.runQueued()
				if l.quitting && l.nconns == 0 {
					return true
				}
				if n < maxEvents && len(l.queue) == 0 {
					break
				}
			}
			// arm the wake-up for the next timer (or the end of a pause)
			next := int64(0)
			if len(l.timers) > 0 {
				next = l.timers[0].deadline
			}
			if l.paused && (next == 0 || l.resumeAt < next) {
				next = l.resumeAt
			}
			// Only ever move the wake-up earlier: a later one would
			// re-arm a runtime timer (and may interrupt the netpoller)
			// on nearly every request; a wake-up with nothing due costs
			// one turn and re-arms.
			if next != 0 && (armed == 0 || next < armed) {
				armed = next
				f.SetReadDeadline(time.Unix(0, next))
			}
			return false // park until the set has events or the deadline
		})
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			l.e.o.Log.WithError(err).Error("event loop stopped")
			return
		}
		if armed != 0 {
			// a deadline that fired keeps failing every wait until reset
			f.SetReadDeadline(time.Time{})
			armed = 0
		}
	}
}

// poll takes the ready events without blocking.
func (l *loop) poll() int {
	r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&l.events[0])), maxEvents, 0, 0, 0)
	if errno != 0 {
		return 0
	}
	return int(r)
}

func (l *loop) dispatch(n int) {
	now := time.Now()
	for i := range n {
		ev := &l.events[i]
		fd := int(ev.Fd)
		if fd == evWake {
			l.runCmds()
			continue
		}
		if c := l.conns[fd]; c != nil {
			// An event taken in this batch for a socket that was
			// closed since, its number already reused by a newer
			// one, is not the newer one's: tags tell them apart.
			if (fd == c.cfd && ev.Pad == c.ctag) || (fd == c.ufd && ev.Pad == c.utag) {
				c.event(fd, ev.Events, now)
			}
			continue
		}
		if l.accept {
			for k := range l.lns {
				if l.lns[k].FD == fd {
					l.acceptFrom(&l.lns[k], now)
					break
				}
			}
		}
	}
}

// nextTag numbers the sockets the loop adds to its epoll set.
func (l *loop) nextTag() int32 {
	l.tag++
	return l.tag
}

// again queues c for another turn before the loop parks.
func (l *loop) again(c *econn) {
	if !c.queued {
		c.queued = true
		l.queue = append(l.queue, c)
	}
}

// runQueued gives every queued relay its next turn (a relay that uses
// that one up too queues itself again, after the next poll).
func (l *loop) runQueued() {
	if len(l.queue) == 0 {
		return
	}
	q := l.queue
	l.queue = l.spare[:0]
	now := time.Now()
	for i, c := range q {
		q[i] = nil
		c.queued = false
		if c.state == stRelay {
			c.step(now)
		}
	}
	l.spare = q[:0]
}

// expire runs the timers that are due and resumes accepting after a pause.
func (l *loop) expire() {
	now := time.Now()
	ns := now.UnixNano()
	for len(l.timers) > 0 && l.timers[0].deadline <= ns {
		c := l.timers[0]
		heap.Pop(&l.timers)
		c.timeout(now)
	}
	if l.paused && ns >= l.resumeAt {
		l.paused = false
		if l.lns != nil && !l.accept {
			l.addListeners()
		}
	}
}

// acceptFrom accepts what is pending on ln, a bounded number at a time so
// that one loop does not take every connection of a burst.
func (l *loop) acceptFrom(ln *Listener, now time.Time) {
	h, log := l.e.o.Host, l.e.o.Log
	for range 16 {
		if !h.Admit() {
			// MaxConns reached: stop listening for a moment
			l.pause(now, 20*time.Millisecond)
			return
		}
		fd, peer, err := sysAccept(ln.FD)
		if err != nil {
			h.Unadmit()
			switch {
			case err == unix.EAGAIN, err == unix.EINTR, err == unix.ECONNABORTED:
			case err == unix.EMFILE, err == unix.ENFILE, err == unix.ENOBUFS, err == unix.ENOMEM:
				log.WithError(err).Warn("accept failed; backing off")
				l.pause(now, 100*time.Millisecond)
			default:
				log.WithError(err).WithField("listener", ln.Name).Error("accept failed")
				l.pause(now, time.Second)
			}
			return
		}
		adm := h.Opened(peer)
		adm.Port = ln.ID
		l.nconns++
		rt := ln.Route.Load()
		c := &econn{l: l, cfd: fd, ufd: -1, ti: -1, listener: ln.Name, route: rt, start: now, crd: true, cwr: true, adm: adm}
		c.sel.Group = rt.Group
		if peer.IsValid() {
			c.sel.Client = peer.String()
		}
		c.ctag = l.nextTag()
		if err := sysEpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, connEvents, c.ctag); err != nil {
			c.finish(failover.OutcomeClientError)
			continue
		}
		l.conns[fd] = c
		if adm.Goroutines {
			c.handoff(nil)
			continue
		}
		c.setTimer(now.Add(l.e.o.ClientTimeout))
		// TCP_DEFER_ACCEPT on the gateway's sockets: the greeting is
		// usually there already
		c.step(now)
	}
}

func (l *loop) pause(now time.Time, d time.Duration) {
	l.removeListeners()
	l.paused = true
	l.resumeAt = now.Add(d).UnixNano()
}

// closeAll ends every connection (drain timeout).
func (l *loop) closeAll() { l.closeWhere(func(*econn) bool { return true }) }

// closeWhere ends the connections that match (each is in conns by both
// its fds).
func (l *loop) closeWhere(match func(c *econn) bool) {
	seen := map[*econn]bool{}
	for _, c := range l.conns {
		if !seen[c] && match(c) {
			seen[c] = true
			c.finish(c.outcomeOr(failover.OutcomeClientClosed))
		}
	}
}

// timerHeap orders connections by their one deadline.
type timerHeap []*econn

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].deadline < h[j].deadline }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].ti, h[j].ti = i, j
}
func (h *timerHeap) Push(x any) {
	c := x.(*econn)
	c.ti = len(*h)
	*h = append(*h, c)
}
func (h *timerHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	c.ti = -1
	return c
}

// fdConn turns a socket the loop owns into a net.Conn for the goroutine
// path (the net package dups it; the loop's fd is closed).
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("handing the client socket to the goroutine path: %w", err)
	}
	return c, nil
}
