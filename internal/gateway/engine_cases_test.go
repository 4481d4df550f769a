package gateway_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/testtool"
	"github.com/proxypool/proxypool/internal/upstream"
)

// A gateway on one event loop whose picker and plain SOCKS5
// upstreams the test controls, to make the loop see exactly the events a
// case needs in one epoll batch.

// oneLoop runs the gateway of the test on a single event loop (these
// tests are about the loops: the goroutine-path re-run skips them).
func oneLoop(t *testing.T) {
	if !loopsOn() {
		t.Skip("event-loop test")
	}
	prev := runtime.GOMAXPROCS(1)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
}

// funcPicker picks with pick; Observe records nothing.
type funcPicker struct {
	pick func(sel *upstream.Selector) (upstream.Choice, error)
}

func (p funcPicker) Pick(sel *upstream.Selector) (upstream.Choice, error) { return p.pick(sel) }
func (funcPicker) Observe(upstream.CheckResult)                           {}

// plainDialer says every socks5 upstream is plain (the loop dials it);
// the goroutine path dials nothing.
type plainDialer struct{}

func (plainDialer) PlainSOCKS5(u upstream.Entry) (netip.AddrPort, bool) {
	if u.Type != upstream.Kind("socks5") {
		return netip.AddrPort{}, false
	}
	a, err := netip.ParseAddr(u.Server)
	return netip.AddrPortFrom(a, uint16(u.Port)), err == nil
}

func (plainDialer) DialContext(ctx context.Context, u upstream.Entry, addr string) (net.Conn, error) {
	return nil, errors.New("plainDialer: the goroutine path dials nothing")
}

// choiceAt is a plain SOCKS5 upstream at addr.
func choiceAt(id, addr string) upstream.Choice {
	host, ps, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(ps)
	// The fakes here read greeting and request before answering both, as
	// an upstream whose probe proved it takes a pipelined handshake.
	return upstream.Choice{Entry: upstream.Entry{ID: id, Type: upstream.Kind("socks5"), Server: host, Port: port, Caps: upstream.CapPipeline}, LatencyMS: 5}
}

// miniGW serves one loopback listener with o (Picker set by the caller,
// Dialer defaulting to plainDialer) until the test ends or stop is called;
// stop returns how long Run took to return (or fails the test).
func miniGW(t testing.TB, o gateway.Options) (addr string, gw *gateway.Gateway, stop func() time.Duration) {
	t.Helper()
	if o.Dialer == nil {
		o.Dialer = plainDialer{}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	o.OnReady = func() { close(ready) }
	gw, err = gateway.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx, map[string][]net.Listener{"gateway": {ln}}) }()
	var once sync.Once
	var took time.Duration
	stop = func() time.Duration {
		once.Do(func() {
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("gateway did not stop")
			}
			took = time.Since(start)
		})
		return took
	}
	t.Cleanup(func() { stop() })
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("gateway not ready")
	}
	return ln.Addr().String(), gw, stop
}

// readSOCKSRequest reads a no-auth greeting and a CONNECT as the loop
// pipelines them to an upstream, and returns the request's ATYP, address and port.
func readSOCKSRequest(c net.Conn) ([]byte, error) {
	var h [3 + 4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return nil, err
	}
	out := []byte{h[6]}
	var n int
	switch h[6] {
	case 1:
		n = 4 + 2
	case 4:
		n = 16 + 2
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return nil, err
		}
		out = append(out, l[0])
		n = int(l[0]) + 2
	default:
		return nil, errors.New("bad atyp")
	}
	rest := make([]byte, n)
	_, err := io.ReadFull(c, rest)
	return append(out, rest...), err
}

var socksOK = []byte{5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0, 1}

// TestLoopMaxConnsResumeAfterQueuedTurn: at MaxConns a new client waits
// unaccepted; when a slot frees it must be accepted promptly (the loop
// polls every 20 ms while paused, and a slot freed on the loop resumes at
// once). Here the slot is freed by a tunnel that ends in a queued turn
// (the relay budget is one read per turn), in the same turn that paused
// accepting.
func TestLoopMaxConnsResumeAfterQueuedTurn(t *testing.T) {
	oneLoop(t)
	// U1 answers, then waits for the client's EOF, then for go, then
	// sends a few bytes and closes
	goSend := make(chan struct{})
	u1got := make(chan struct{})
	u1 := testtool.ServeTCP(t, func(c net.Conn) {
		if _, err := readSOCKSRequest(c); err != nil {
			return
		}
		c.Write(socksOK)
		io.Copy(io.Discard, c) // to the gateway's shutdown(SHUT_WR)
		close(u1got)
		<-goSend
		c.Write([]byte("0123456789"))
	})
	// U0 accepts and does not answer until the end: its client holds a slot
	end := make(chan struct{})
	u0 := testtool.ServeTCP(t, func(c net.Conn) { <-end })

	var mu sync.Mutex
	picks := 0
	release := make(chan struct{})
	pick := func(sel *upstream.Selector) (upstream.Choice, error) {
		mu.Lock()
		picks++
		n := picks
		mu.Unlock()
		switch n {
		case 1:
			return choiceAt("u1", u1), nil
		case 2:
			// blocks the loop while the test lines up its next batch
			<-release
			return choiceAt("u0", u0), nil
		}
		return upstream.Choice{}, upstream.ErrNoUpstream
	}
	var o gateway.Options
	o.Picker = funcPicker{pick}
	o.MaxConns = 2
	o.IdleTimeout = 8 * time.Second
	o.ClientTimeout = 8 * time.Second
	o.DialTimeout, o.MinDialTimeout, o.TotalTimeout = 8*time.Second, 8*time.Second, 8*time.Second
	gateway.SetRelayBudget(&o, 1, 1)
	addr, _, _ := miniGW(t, o)
	defer close(end)

	t1 := dialGW(t, addr)
	t1.Write(socks5Msgs(t, "127.0.0.1:9"))
	readReplies(t, t1)
	t1.(*net.TCPConn).CloseWrite()
	select {
	case <-u1got:
	case <-time.After(5 * time.Second):
		t.Fatal("the client's EOF did not reach the upstream")
	}

	c0 := dialGW(t, addr)
	c0.Write(socks5Msgs(t, "127.0.0.1:9"))
	var b [2]byte
	if _, err := io.ReadFull(c0, b[:]); err != nil { // method answer: the loop is in Pick next
		t.Fatal(err)
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return picks == 2 })

	// while the loop is blocked in Pick: U1's bytes and FIN, and a third
	// client, all wait for the loop's next batch
	close(goSend)
	c2 := dialGW(t, addr)
	c2.Write([]byte{5, 1, 0})
	time.Sleep(50 * time.Millisecond)
	close(release)

	t1.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(t1)
	if err != nil || string(got) != "0123456789" {
		t.Fatalf("tunnel 1: %q %v", got, err)
	}
	ended := time.Now()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c2, b[:]); err != nil {
		t.Fatalf("third client never served after a slot freed: %v", err)
	}
	if d := time.Since(ended); d > time.Second {
		t.Fatalf("third client served %v after a slot freed; want within the 20 ms pause", d)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached in 5 s")
}

// countingDialer is the goroutine path's dialer: every dial fails at once
// and is counted by upstream id.
type countingDialer struct {
	plainDialer
	mu    sync.Mutex
	dials map[string]int
}

func (d *countingDialer) DialContext(ctx context.Context, u upstream.Entry, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dials[u.ID]++
	d.mu.Unlock()
	return nil, errors.New("connection refused")
}

// TestLoopFailoverToGoroutinePathKeepsTries: a request whose first try
// (a plain SOCKS5 upstream, dialled by the loop) fails and whose next pick
// is an upstream only the goroutine path dials must go on with the same
// request: MaxTries counts every try and the upstream that already failed
// is not tried again.
func TestLoopFailoverToGoroutinePathKeepsTries(t *testing.T) {
	oneLoop(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusing := ln.Addr().String()
	ln.Close() // connects to it are refused
	a := choiceAt("a-plain", refusing)
	b := choiceAt("b-http", "127.0.0.1:9")
	b.Type = upstream.Kind("http")
	var mu sync.Mutex
	var seen [][]string
	pick := func(sel *upstream.Selector) (upstream.Choice, error) {
		mu.Lock()
		seen = append(seen, append([]string(nil), sel.Tried...))
		mu.Unlock()
		for _, ch := range []upstream.Choice{a, b} {
			tried := false
			for _, id := range sel.Tried {
				tried = tried || id == ch.ID
			}
			if !tried {
				return ch, nil
			}
		}
		return upstream.Choice{}, upstream.ErrNoUpstream
	}
	d := &countingDialer{dials: map[string]int{}}
	addr, gw, _ := miniGW(t, gateway.Options{Picker: funcPicker{pick}, Dialer: d, MaxTries: 2})
	c := dialGW(t, addr)
	c.Write(socks5Msgs(t, "127.0.0.1:9"))
	var r [12]byte
	if _, err := io.ReadFull(c, r[:]); err != nil {
		t.Fatal(err)
	}
	if r[3] == 0 {
		t.Fatalf("reply % x: success through upstreams that all fail", r)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if d.dials["a-plain"] != 0 || d.dials["b-http"] != 1 {
		t.Errorf("MaxTries 2, upstreams a (plain, tried by the loop: refused) and b: the goroutine path then dialled %v (picks saw tried lists %q); want b once", d.dials, seen)
	}
	if n := gw.Stats().Retries.Load(); n != 1 {
		t.Errorf("Retries %d, want 1", n)
	}
}

// TestLoopUpstreamReplySplitAndHalfClose: an upstream whose answers come
// one byte at a time, with a domain or IPv6 bound address and the target's
// first bytes right after the reply; an IPv6 or domain target reaches it
// as sent. Then the upstream half-closes first: the client sees EOF and
// its own bytes still flow up until it closes too.
func TestLoopUpstreamReplySplitAndHalfClose(t *testing.T) {
	oneLoop(t)
	type tc struct {
		name   string
		bound  []byte // reply's ATYP, address, port
		target []byte // client request's ATYP and address (port 80 added)
	}
	cases := []tc{
		{"domain bound, IPv6 target", append([]byte{3, 9}, "localhost\x01\xbb"...), append([]byte{4}, netip.MustParseAddr("::1").AsSlice()...)},
		{"IPv6 bound, domain target", append(append([]byte{4}, netip.MustParseAddr("::1").AsSlice()...), 1, 187), append([]byte{3, 11}, "example.org"...)},
	}
	for _, k := range cases {
		t.Run(k.name, func(t *testing.T) {
			gotReq := make(chan []byte, 1)
			gotUp := make(chan string, 1)
			up := testtool.ServeTCP(t, func(c net.Conn) {
				req, err := readSOCKSRequest(c)
				if err != nil {
					return
				}
				gotReq <- req
				ans := append(append([]byte{5, 0, 5, 0, 0}, k.bound...), "hello"...)
				for i := range ans {
					c.Write(ans[i : i+1])
					time.Sleep(2 * time.Millisecond)
				}
				c.(*net.TCPConn).CloseWrite()
				b, _ := io.ReadAll(c)
				gotUp <- string(b)
			})
			addr, _, _ := miniGW(t, gateway.Options{Picker: funcPicker{func(*upstream.Selector) (upstream.Choice, error) { return choiceAt("u", up), nil }}})
			c := dialGW(t, addr)
			c.Write(append(append([]byte{5, 1, 0, 5, 1, 0}, k.target...), 0, 80))
			var r [12]byte
			if _, err := io.ReadFull(c, r[:]); err != nil || r[3] != 0 {
				t.Fatalf("replies % x %v", r, err)
			}
			if req := <-gotReq; string(req) != string(append(append([]byte(nil), k.target...), 0, 80)) {
				t.Fatalf("upstream got request % x, client sent % x", req, k.target)
			}
			got, err := io.ReadAll(c)
			if err != nil || string(got) != "hello" {
				t.Fatalf("down: %q %v; want the bytes after the reply, then EOF", got, err)
			}
			// the upstream's FIN came through; the client's direction goes on
			if _, err := c.Write([]byte("still up")); err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).CloseWrite()
			select {
			case s := <-gotUp:
				if s != "still up" {
					t.Fatalf("upstream got %q after its half-close", s)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the client's bytes and EOF never reached the upstream")
			}
		})
	}
}

// TestLoopDrainTimeoutClosesLoopConns: at shutdown the loops' open
// tunnels, clients still in their handshake and clients waiting on an
// upstream get DrainTimeout, then are closed, and Run returns.
func TestLoopDrainTimeoutClosesLoopConns(t *testing.T) {
	oneLoop(t)
	end := make(chan struct{})
	defer close(end)
	// "hold": answers and relays nothing; "mute": never answers
	hold := testtool.ServeTCP(t, func(c net.Conn) {
		if _, err := readSOCKSRequest(c); err == nil {
			c.Write(socksOK)
		}
		<-end
	})
	mute := testtool.ServeTCP(t, func(c net.Conn) { <-end })
	var mu sync.Mutex
	n := 0
	pick := func(*upstream.Selector) (upstream.Choice, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n == 1 {
			return choiceAt("hold", hold), nil
		}
		return choiceAt("mute", mute), nil
	}
	addr, gw, stop := miniGW(t, gateway.Options{Picker: funcPicker{pick}, DrainTimeout: 300 * time.Millisecond,
		ClientTimeout: 10 * time.Second, DialTimeout: 10 * time.Second, MinDialTimeout: 10 * time.Second, TotalTimeout: 10 * time.Second})
	tun := dialGW(t, addr)
	tun.Write(socks5Msgs(t, "127.0.0.1:9"))
	readReplies(t, tun)
	waiting := dialGW(t, addr)
	waiting.Write(socks5Msgs(t, "127.0.0.1:9"))
	var b [2]byte
	if _, err := io.ReadFull(waiting, b[:]); err != nil {
		t.Fatal(err)
	}
	half := dialGW(t, addr)
	half.Write([]byte{5, 1})
	waitFor(t, func() bool { return gw.Stats().Active.Load() == 3 })
	if d := stop(); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("Run returned %v after the cancel; want just after the 300 ms drain timeout", d)
	}
	for name, c := range map[string]net.Conn{"tunnel": tun, "waiting on its upstream": waiting, "in its handshake": half} {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("client %s: %v, want EOF", name, err)
		}
	}
	if a := gw.Stats().Active.Load(); a != 0 {
		t.Errorf("%d connections still counted active after Run returned", a)
	}
}

// TestLoopEarlyDataHandedOff: bytes a SOCKS5 client sends right behind
// its CONNECT reach the target also when the loop hands the request to
// the goroutine path (an HTTP upstream).
func TestLoopEarlyDataHandedOff(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(1, fleet.HTTP, fleet.Good)})
	echo := testtool.ServeTCP(t, func(c net.Conn) { io.Copy(c, c) })
	c := dialGW(t, w.addr)
	c.Write(append(socks5Msgs(t, echo), "early bytes"...))
	readReplies(t, c)
	got := make([]byte, len("early bytes"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "early bytes" {
		t.Fatalf("echo %q %v", got, err)
	}
	if st := w.gw.Stats(); loopsOn() && st.Handoffs.Load() != 1 {
		t.Fatalf("%d handed off, want 1", st.Handoffs.Load())
	}
}
