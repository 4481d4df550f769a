package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/gateway/evloop"
	"github.com/proxypool/proxypool/internal/gateway/failover"
	"github.com/proxypool/proxypool/internal/upstream"
)

// Picker chooses upstreams (the pool). Pick errors wrap
// upstream.ErrNoUpstream or upstream.ErrUnknownGroup; Observe takes each
// passive outcome so the picker can eject failing upstreams at once.
type Picker interface {
	Pick(sel *upstream.Selector) (upstream.Choice, error)
	Observe(r upstream.CheckResult)
}

// Dialer opens a connection to addr ("host:port", names unresolved)
// through u. ctx's deadline bounds connect and handshake.
type Dialer interface {
	DialContext(ctx context.Context, u upstream.Entry, addr string) (net.Conn, error)
}

// Reporter receives each passive outcome (the store, for the probe).
type Reporter interface {
	Submit(r upstream.CheckResult)
}

// Options configure a Gateway. Zero values take the documented defaults.
type Options struct {
	Picker   Picker
	Dialer   Dialer
	Reporter Reporter // optional
	// Classify names a dial error's cause; nil uses a built-in
	// classification of OS errors and SOCKS5 replies. A target cause
	// (Cause.IsTarget) means the upstream worked but could not reach the
	// target: the client gets that answer at once, with no retry and
	// nothing counted against the upstream.
	Classify func(error) upstream.Cause
	Log      logrus.FieldLogger
	// Observer, when set, is told about connections, dials, tunnels and
	// bytes (metrics). Listener names given to Run reach it as is.
	Observer Observer
	// Tunnels, when set, hears of each tunnel on the goroutine path.
	Tunnels Tunnels

	// Ports maps listener names (systemd FileDescriptorName=) to the group
	// their clients are pinned to. Other listeners serve the whole pool.
	Ports map[string]string
	// Pickers maps listener names to a picker of their own (a pinned
	// port's strategy, with its own counters and sessions); the others
	// pick through Picker. Passive outcomes always go to Picker.
	Pickers map[string]failover.Picker
	// Users maps account names to passwords. Empty: no auth (username
	// parameters still apply).
	Users map[string]string
	// AllowOpen permits listening on a non-loopback address without auth.
	AllowOpen bool
	// MaxConnsPerClient bounds the connections of one source IP (default:
	// MaxConns, no bound of its own); the excess is answered 429 or SOCKS
	// "not allowed" and closed.
	MaxConnsPerClient int
	// AuthDelayMax caps the delay before refusing credentials from a
	// source that keeps failing: after a few failures in a row each
	// refusal waits 100 ms, doubling up to this (default 0: none).
	AuthDelayMax time.Duration
	// Usernames bound the session ids and ttls usernames ask for (the
	// pool remembers each session).
	Usernames UsernameLimits

	// MaxTries is how many upstreams that failed slowly end a request
	// (default 3); a connect refused or unreachable at once
	// (failover.Instant) does not count. MaxAttempts caps every try,
	// those included (default and at most failover.MaxTries, 16).
	MaxTries, MaxAttempts int
	TotalTimeout          time.Duration // bound on all tries of one request (default 10s)
	DialTimeout           time.Duration // cap of one try (default 5s)
	MinDialTimeout        time.Duration // floor of one try (default 1s); a try gets 3× the upstream's latency within [min, cap]
	// TryTimeout, when set, is every try's bound instead
	// (upstream-handshake-timeout: a duration rather than auto).
	TryTimeout      time.Duration
	ClientTimeout   time.Duration // client greeting/request head (default 10s)
	IdleTimeout     time.Duration // tunnel and keep-alive idle (default 5m)
	DrainTimeout    time.Duration // wait for tunnels on shutdown (default 10s)
	MaxHeaderBytes  int           // HTTP request head cap (default 64 KiB)
	MaxHeaderFields int           // HTTP request header fields cap (default 100, as Apache's LimitRequestFields)
	MaxConns        int           // concurrent client connections (default: from RLIMIT_NOFILE)
	// InfoHeader, when set, names a response header (e.g.
	// "X-Proxypool-Upstream") carrying the upstream id, exit IP and
	// country; on CONNECT it is on the 200 response.
	InfoHeader string
	// GoroutinesOnly serves every connection on goroutines, never on the
	// event loops (package evloop); for tests and comparison.
	GoroutinesOnly bool
	// OnReady is called once every listener is being served.
	OnReady func()

	// relayRounds × relayReads bound what one event-loop turn relays for
	// a tunnel (defaults 4 and 8 reads of 64 KiB); tests shrink them.
	relayRounds, relayReads int
}

// PlainSOCKS5 is optionally implemented by Options.Dialer: it names the
// upstreams that are SOCKS5 servers without TLS or credentials at an IP
// address. Only with it do the event loops dial upstreams themselves.
type PlainSOCKS5 = evloop.PlainSOCKS5

// Gateway serves clients through the pool. Create it with New.
type Gateway struct {
	opts Options
	log  logrus.FieldLogger
	obs  Observer // nil: no observer
	adm  *admission
	// clients are the per-source connection counts and auth failures
	clients *clients

	mu    sync.Mutex
	conns map[*conn]struct{} // the goroutine path's, for the drain

	// lnMu guards the listeners being served (Run's, then SetPorts').
	lnMu    sync.Mutex
	ports   []*port
	runCtx  context.Context // Run's: what added listeners serve under
	errc    chan error      // an accept error that ends Run
	stopped bool            // Run is shutting down
	portIDs uint64          // the last port.id handed out
	accept  sync.WaitGroup  // goroutine-path accept loops

	stats Stats
	// tries and loopTries are how requests fail over, reporting
	// outcomes on the goroutine path and without blocking on the loops
	tries, loopTries failover.Env
	nopipe           failover.NoPipeline // upstreams that stalled on a pipelined handshake
	work             *workers            // connection and relay goroutines, reused
	eng              *evloop.Engine      // nil: no listener is served by event loops
	// routes are each listener name's group and picker, read per
	// connection accepted; SetRoute and SetPorts swap one. Under lnMu.
	routes    map[string]*atomic.Pointer[failover.Route]
	reports   chan upstream.CheckResult
	forwarded chan struct{} // closed when reports is drained
	targetLog everySecond   // info lines for refused targets
}

// Stats are running counters, safe to read concurrently.
type Stats struct {
	Accepted  atomic.Uint64
	Active    atomic.Int64
	Tunnels   atomic.Uint64 // upstream connections established
	Failed    atomic.Uint64 // requests answered with an error
	Retries   atomic.Uint64 // extra dials after a failed one
	AuthFails atomic.Uint64
	// LoopConns counts connections accepted by the event loops; Handoffs
	// those of them passed on to the goroutine path (HTTP, SOCKS4, or an
	// upstream the loops do not dial).
	LoopConns atomic.Uint64
	Handoffs  atomic.Uint64
}

// New checks options and returns a Gateway.
func New(o Options) (*Gateway, error) {
	if o.Picker == nil || o.Dialer == nil {
		return nil, errors.New("gateway: picker and dialer are required")
	}
	if o.MaxTries <= 0 {
		o.MaxTries = 3
	}
	if o.MaxAttempts <= 0 || o.MaxAttempts > failover.MaxTries {
		o.MaxAttempts = failover.MaxTries
	}
	o.MaxTries = min(o.MaxTries, o.MaxAttempts)
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.TotalTimeout, 10*time.Second)
	def(&o.DialTimeout, 5*time.Second)
	def(&o.MinDialTimeout, time.Second)
	def(&o.ClientTimeout, 10*time.Second)
	def(&o.IdleTimeout, 5*time.Minute)
	def(&o.DrainTimeout, 10*time.Second)
	if o.MinDialTimeout > o.DialTimeout {
		o.MinDialTimeout = o.DialTimeout
	}
	minTry, maxTry := o.MinDialTimeout, o.DialTimeout
	if o.TryTimeout > 0 {
		minTry, maxTry = o.TryTimeout, o.TryTimeout
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 64 << 10
	}
	o.Usernames = o.Usernames.withDefaults()
	if o.MaxHeaderFields <= 0 {
		o.MaxHeaderFields = 100
	}
	if o.relayRounds <= 0 {
		o.relayRounds = 4
	}
	if o.relayReads <= 0 {
		o.relayReads = 8
	}
	if o.MaxConns <= 0 {
		o.MaxConns = defaultMaxConns()
	}
	if o.Log == nil {
		l := logrus.New()
		l.Out = io.Discard
		o.Log = l
	}
	if o.Classify == nil {
		o.Classify = classifyErr
	}
	if o.MaxConnsPerClient <= 0 || o.MaxConnsPerClient > o.MaxConns {
		o.MaxConnsPerClient = o.MaxConns
	}
	g := &Gateway{opts: o, log: o.Log, obs: o.Observer, conns: map[*conn]struct{}{}, work: newWorkers(maxIdleWorkers)}
	g.clients = newClients(o.MaxConnsPerClient, o.AuthDelayMax)
	g.adm = newAdmission(o.MaxConns, &g.stats.Active)
	g.tries = failover.Env{
		Report: g.report, Classify: o.Classify,
		Retries: &g.stats.Retries, Tunnels: &g.stats.Tunnels, NoPipe: &g.nopipe,
		MaxTries: o.MaxTries, MaxAttempts: o.MaxAttempts, Total: o.TotalTimeout, MinTry: minTry, MaxTry: maxTry,
	}
	if o.Observer != nil {
		g.tries.Observer = o.Observer
	}
	g.loopTries = g.tries
	g.loopTries.Report = g.reportLoop
	return g, nil
}

// maxIdleWorkers bounds the goroutines kept waiting for the next
// connection or relay direction (a few KiB of stack each).
const maxIdleWorkers = 512

// Stats returns the gateway's counters.
func (g *Gateway) Stats() *Stats { return &g.stats }

// defaultMaxConns leaves room for two fds per tunnel plus the rest.
func defaultMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur < 256 {
		return 1000
	}
	return int((rl.Cur - 128) / 2)
}

// RaiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit (each
// tunnel holds two sockets) and returns the new soft limit.
func RaiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", rl.Max, err)
		}
	}
	return rl.Cur, nil
}

// Run serves every listener until ctx is done, then stops accepting,
// lets open tunnels finish for up to DrainTimeout, closes the rest and
// returns nil. Listener names found in Options.Ports pin their clients to
// that group. A non-loopback listener without Users needs AllowOpen.
func (g *Gateway) Run(ctx context.Context, lns map[string][]net.Listener) error {
	n := 0
	for name, list := range lns {
		for _, ln := range list {
			n++
			if err := g.checkOpen(name, ln); err != nil {
				return err
			}
		}
	}
	if n == 0 {
		return errors.New("gateway: no listeners")
	}
	g.lnMu.Lock()
	g.runCtx, g.errc = ctx, make(chan error, n)
	g.routes = make(map[string]*atomic.Pointer[failover.Route], len(lns))
	var loopLns []evloop.Listener
	var goLns []*port
	for name, list := range lns {
		route := g.route(name, g.opts.Ports[name], g.opts.Pickers[name])
		for _, ln := range list {
			p := g.newPort(name, route, ln)
			if fd, loop := g.loopFD(ln); loop {
				p.fd = fd
				loopLns = append(loopLns, p.loopListener())
			} else {
				goLns = append(goLns, p)
			}
			g.ports = append(g.ports, p)
			g.logListening(p)
		}
	}
	for _, p := range goLns {
		g.serveGo(p, true)
	}
	if len(loopLns) > 0 {
		if err := g.startLoops(ctx, loopLns); err != nil {
			g.lnMu.Unlock()
			return fmt.Errorf("starting the event loops: %w", err)
		}
	}
	g.lnMu.Unlock()
	sumCtx, endSummary := context.WithCancel(context.Background())
	summaryDone := make(chan struct{})
	go func() { defer close(summaryDone); g.clients.summarize(sumCtx, g.log) }()
	defer func() { endSummary(); <-summaryDone }()
	if g.opts.OnReady != nil {
		g.opts.OnReady()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-g.errc:
	}
	g.lnMu.Lock()
	g.stopped = true // SetPorts opens nothing more
	if g.eng != nil {
		g.eng.StopAccepting() // before the listeners close: no loop touches their fds again
	}
	for _, p := range g.ports {
		p.ln.Close()
	}
	g.lnMu.Unlock()
	g.accept.Wait()
	g.drain()
	g.stopLoops()
	g.work.stop()
	return err
}

// checkOpen refuses a non-loopback listener without users unless
// AllowOpen, and warns when it is allowed.
func (g *Gateway) checkOpen(name string, ln net.Listener) error {
	if isLoopback(ln.Addr()) {
		return nil
	}
	if len(g.opts.Users) == 0 && !g.opts.AllowOpen {
		return fmt.Errorf("listener %q on %s is not loopback and no users are configured: set allow-open: true to serve it without auth", name, ln.Addr())
	}
	if len(g.opts.Users) == 0 {
		g.log.WithFields(logrus.Fields{"listener": name, "addr": ln.Addr().String()}).Warn("OPEN PROXY: serving a non-loopback address without authentication (allow-open: true)")
	}
	return nil
}

func (g *Gateway) logListening(p *port) {
	mode := "goroutines"
	if p.fd >= 0 {
		mode = "event loops"
	}
	g.log.WithFields(logrus.Fields{"listener": p.name, "addr": p.ln.Addr().String(), "GROUP": p.route.Load().Group, "engine": mode}).Info("gateway listening")
}

// serveGo accepts from p on a goroutine until its listener closes. An
// accept error of a listener Run was given ends Run (fatal); one of a
// port a reload added is logged, and that port is closed.
func (g *Gateway) serveGo(p *port, fatal bool) {
	g.accept.Add(1)
	go func() {
		defer g.accept.Done()
		err := g.serve(g.runCtx, p)
		if err == nil {
			return
		}
		err = fmt.Errorf("listener %q on %s: %w", p.name, p.ln.Addr(), err)
		if fatal {
			g.errc <- err
			return
		}
		g.log.WithError(err).Error("port stopped accepting")
		p.ln.Close()
	}()
}

// loopFD returns the fd of a TCP listener the event loops can serve.
func (g *Gateway) loopFD(ln net.Listener) (int, bool) {
	if g.opts.GoroutinesOnly {
		return 0, false
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return 0, false
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return 0, false
	}
	fd := -1
	if rc.Control(func(f uintptr) { fd = int(f) }) != nil || fd < 0 {
		return 0, false
	}
	return fd, true
}

func isLoopback(a net.Addr) bool {
	switch t := a.(type) {
	case *net.TCPAddr:
		return t.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}

// SetRoute makes listener name's next connections go to group through
// picker (nil: Options.Picker): a new strategy or group for a port.
// Connections already open keep their route. False when Run serves no
// such listener.
func (g *Gateway) SetRoute(name, group string, picker failover.Picker) bool {
	g.lnMu.Lock()
	defer g.lnMu.Unlock()
	if g.routes[name] == nil {
		return false
	}
	g.route(name, group, picker)
	return true
}

// route sets listener name's route to group and picker (nil:
// Options.Picker), making it on first use: how Run routes its listeners,
// and SetPorts and SetRoute those a reload keeps, changes or adds. Called
// with lnMu held.
func (g *Gateway) route(name, group string, picker failover.Picker) *atomic.Pointer[failover.Route] {
	if picker == nil {
		picker = g.opts.Picker
	}
	r := g.routes[name]
	if r == nil {
		r = new(atomic.Pointer[failover.Route])
		g.routes[name] = r
	}
	r.Store(&failover.Route{Group: group, Picker: picker})
	return r
}

func (g *Gateway) serve(ctx context.Context, p *port) error {
	ln := p.ln
	var delay time.Duration
	for {
		if !g.adm.wait(ctx) {
			return nil
		}
		c, err := ln.Accept()
		if err != nil {
			g.adm.unadmit()
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// out of fds or transient: back off like net/http
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				g.log.WithError(err).Warn("accept failed; backing off")
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		g.stats.Accepted.Add(1)
		cc := &conn{g: g, c: c, listener: p.name, route: p.route.Load(), port: p.id}
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			cc.client = a.AddrPort().Addr().Unmap()
		}
		cc.counted = g.clients.open(cc.client)
		if !g.track(cc) {
			cc.release()
			c.Close()
			continue
		}
		g.work.run(func() { cc.serve(ctx) })
	}
}

func (g *Gateway) track(c *conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.adm.open() {
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

// adopt tracks a connection the event loop accepted (and counted) and
// handed to the goroutine path.
func (g *Gateway) adopt(c *conn) {
	g.mu.Lock()
	g.conns[c] = struct{}{}
	g.mu.Unlock()
}

func (g *Gateway) untrack(c *conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
	c.release()
	g.adm.done()
}

// drain closes idle keep-alive connections now, waits for tunnels up to
// DrainTimeout, then closes whatever is left.
func (g *Gateway) drain() {
	g.mu.Lock()
	g.adm.draining.Store(true)
	for c := range g.conns {
		if c.idle.Load() {
			c.c.Close()
		}
	}
	g.mu.Unlock()
	done := make(chan struct{})
	go func() { g.adm.wg.Wait(); close(done) }()
	t := time.NewTimer(g.opts.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	g.mu.Lock()
	left := len(g.conns)
	for c := range g.conns {
		c.closeAll()
	}
	g.mu.Unlock()
	if g.eng != nil {
		left = int(g.stats.Active.Load())
		g.eng.CloseAll()
	}
	g.log.WithField("connections", left).Warn("drain timeout: closed open tunnels")
	<-done
}
