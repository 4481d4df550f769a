package gateway_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/testtool"
)

// Tests of what the event loops do that a plain HTTP client would not
// show: messages split across reads or pipelined, bulk transfers that
// fill socket buffers both ways, half-close, the hand-off of what the
// loops do not serve, MaxConns and the idle timeout.

// socks5Msgs is a no-auth greeting and a CONNECT to target (an IP:port).
func socks5Msgs(t testing.TB, target string) []byte {
	host, ps, _ := net.SplitHostPort(target)
	port, _ := strconv.Atoi(ps)
	ip := net.ParseIP(host).To4()
	if ip == nil {
		t.Fatalf("target %s is not IPv4", target)
	}
	b := []byte{5, 1, 0, 5, 1, 0, 1}
	b = append(b, ip...)
	return binary.BigEndian.AppendUint16(b, uint16(port))
}

// readReplies reads the method answer and the CONNECT reply.
func readReplies(t testing.TB, c net.Conn) {
	t.Helper()
	var b [12]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("reading the socks5 replies: %v", err)
	}
	if b[0] != 5 || b[1] != 0 || b[2] != 5 || b[3] != 0 {
		t.Fatalf("socks5 replies % x", b)
	}
}

func dialGW(t testing.TB, addr string) net.Conn {
	t.Helper()
	return dialFrom(t, "", addr)
}

func loopsOn() bool { return os.Getenv(goroutinesEnv) == "" }

func TestLoopServesSOCKS5AndHandsOffTheRest(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(3, fleet.SOCKS5, fleet.Good)})
	exits := exitsOf(w.fleet)
	for range 5 {
		ip, err := get(client("socks5://"+w.addr, false), w.judge)
		if err != nil || !exits[ip] {
			t.Fatalf("socks5: %q %v", ip, err)
		}
	}
	st := w.gw.Stats()
	if loopsOn() && (st.LoopConns.Load() != 5 || st.Handoffs.Load() != 0) {
		t.Fatalf("5 socks5 requests: %d on the loops, %d handed off; want 5 and 0", st.LoopConns.Load(), st.Handoffs.Load())
	}
	for _, proxy := range []string{"http://" + w.addr} {
		if ip, err := get(client(proxy, false), w.judge); err != nil || !exits[ip] {
			t.Fatalf("%s: %q %v", proxy, ip, err)
		}
	}
	if ip, err := curl(t, "--socks4a", w.addr, w.judge); err != nil || !exits[ip] {
		t.Fatalf("socks4a: %q %v", ip, err)
	}
	if loopsOn() && st.Handoffs.Load() != 2 {
		t.Fatalf("an http and a socks4a client: %d handed off, want 2", st.Handoffs.Load())
	}
}

func TestLoopSplitAndPipelinedMessages(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(2, fleet.SOCKS5, fleet.Good)})
	exits := exitsOf(w.fleet)
	judge := strings.TrimPrefix(w.judge, "http://")
	get := []byte("GET / HTTP/1.0\r\nHost: judge\r\n\r\n")
	check := func(t *testing.T, c net.Conn) {
		t.Helper()
		readReplies(t, c)
		body, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		_, ip, _ := bytes.Cut(body, []byte("\r\n\r\n"))
		if !exits[string(ip)] {
			t.Fatalf("response %q does not name a fleet exit", body)
		}
	}
	t.Run("byte by byte", func(t *testing.T) {
		c := dialGW(t, w.addr)
		msgs := socks5Msgs(t, judge)
		for i := range msgs {
			if _, err := c.Write(msgs[i : i+1]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
		c.Write(get)
		check(t, c)
	})
	t.Run("all in one write", func(t *testing.T) {
		c := dialGW(t, w.addr)
		c.Write(append(socks5Msgs(t, judge), get...))
		check(t, c)
	})
	t.Run("domain name target, resolved upstream", func(t *testing.T) {
		c := dialGW(t, w.addr)
		_, port, _ := net.SplitHostPort(judge)
		p, _ := strconv.Atoi(port)
		msg := append([]byte{5, 1, 0, 5, 1, 0, 3, 9}, "localhost"...)
		msg = binary.BigEndian.AppendUint16(msg, uint16(p))
		c.Write(append(msg, get...))
		check(t, c)
	})
}

// TestLoopBulkBothWays sends 8 MiB each way at once through one tunnel,
// the client reading slowly at first so that every buffer on the way
// fills, then half-closes; the target answers the digest of what it got
// only after that EOF.
func TestLoopBulkBothWays(t *testing.T) {
	tests := []struct {
		name          string
		rounds, reads int
	}{
		{"default budget", 0, 0},
		// one 64 KiB read per turn: a tunnel that still has bytes
		// must get the next turn without a new epoll edge
		{"budget of one read", 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { bulkBothWays(t, tc.rounds, tc.reads) })
	}
}

func bulkBothWays(t *testing.T, rounds, reads int) {
	var o gateway.Options
	gateway.SetRelayBudget(&o, rounds, reads)
	w := newWorld(t, worldOpts{spec: fleet.Uniform(1, fleet.SOCKS5, fleet.Good), gw: o})
	const size = 8 << 20
	down := make([]byte, size)
	up := make([]byte, size)
	r := rand.NewChaCha8([32]byte{7})
	r.Read(down)
	r.Read(up)
	target := testtool.ServeTCP(t, func(c net.Conn) {
		go c.Write(down)
		h := sha256.New()
		io.Copy(h, c) // to the client's EOF
		time.Sleep(50 * time.Millisecond)
		c.Write(h.Sum(nil))
	})
	c := dialGW(t, w.addr)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	c.Write(socks5Msgs(t, target))
	readReplies(t, c)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(up)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	time.Sleep(300 * time.Millisecond) // let both directions back up
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("upload: %v", err)
	}
	if len(got) != size+sha256.Size {
		t.Fatalf("got %d bytes down, want %d + digest", len(got), size)
	}
	if !bytes.Equal(got[:size], down) {
		t.Fatal("download corrupted")
	}
	if want := sha256.Sum256(up); !bytes.Equal(got[size:], want[:]) {
		t.Fatal("the target received a corrupted upload")
	}
}

// TestLoopHandsOffUpstreamsItDoesNotDial: upstreams with credentials are
// dialled by the dial package on the goroutine path after the loop did
// the client's handshake.
func TestLoopHandsOffUpstreamsItDoesNotDial(t *testing.T) {
	spec := fleet.Spec{Members: []fleet.MemberSpec{
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Username: "u", Password: "p"},
		{Kind: fleet.HTTP, Behavior: fleet.Good},
	}}
	w := newWorld(t, worldOpts{spec: spec})
	exits := exitsOf(w.fleet)
	seen := map[string]bool{}
	for range 4 {
		ip, err := get(client("socks5://"+w.addr, false), w.judge)
		if err != nil || !exits[ip] {
			t.Fatalf("%q %v", ip, err)
		}
		seen[ip] = true
	}
	if len(seen) != 2 {
		t.Fatalf("rotation reached %d of 2 upstreams", len(seen))
	}
	if st := w.gw.Stats(); loopsOn() && st.Handoffs.Load() != 4 {
		t.Fatalf("%d of 4 handed off", st.Handoffs.Load())
	}
}

// TestLoopMaxConnsAndIdle: at MaxConns a new client waits (it is not
// accepted) until a tunnel ends; idle tunnels end after IdleTimeout; a
// silent client is cut off after ClientTimeout.
func TestLoopMaxConnsAndIdle(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(1, fleet.SOCKS5, fleet.Good), gw: gateway.Options{
		MaxConns: 2, IdleTimeout: 600 * time.Millisecond, ClientTimeout: 400 * time.Millisecond}})
	hold := testtool.ServeTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	var open []net.Conn
	for range 2 {
		c := dialGW(t, w.addr)
		c.Write(socks5Msgs(t, hold))
		readReplies(t, c)
		open = append(open, c)
	}
	start := time.Now()
	third := dialGW(t, w.addr)
	third.Write(socks5Msgs(t, hold))
	third.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var b [1]byte
	if _, err := third.Read(b[:]); err == nil {
		t.Fatal("a third client was served at MaxConns 2")
	}
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	readReplies(t, third)
	if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
		t.Fatalf("third client served after %v; want after the idle timeout of the first two", d)
	}
	for i, c := range open {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(b[:]); err != io.EOF {
			t.Fatalf("idle tunnel %d: %v, want EOF", i, err)
		}
	}
	third.Close()
	silent := dialGW(t, w.addr)
	silent.Write([]byte{5})
	start = time.Now()
	silent.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := silent.Read(b[:]); err != io.EOF || time.Since(start) > 2*time.Second {
		t.Fatalf("silent client: %v after %v", err, time.Since(start))
	}
}

// FuzzLoopHandshake throws arbitrary first bytes at the mixed port; the
// gateway must answer or hang up, never crash, and go on serving.
func FuzzLoopHandshake(f *testing.F) {
	w := newWorld(f, worldOpts{spec: fleet.Uniform(1, fleet.SOCKS5, fleet.Good), gw: gateway.Options{ClientTimeout: 100 * time.Millisecond}})
	echo := testtool.ServeTCP(f, func(c net.Conn) { io.Copy(c, c) })
	valid := socks5Msgs(f, echo)
	for _, s := range [][]byte{valid, valid[:5], {5, 1, 2, 1, 3, 'a', 1, 'b'}, {5, 2, 0, 2, 5, 2, 0, 3, 0, 0, 80},
		{5, 1, 0, 5, 9, 0, 1, 127, 0, 0, 1, 0, 80}, {5, 1, 0, 5, 1, 0, 7}, {4, 1, 0, 80, 0, 0, 0, 1, 0, 'x', 0},
		[]byte("GET http://127.0.0.1:1/ HTTP/1.1\r\n\r\n"), {5, 255}, {5, 0}, {}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", w.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(time.Second))
		c.Write(in)
		c.(*net.TCPConn).CloseWrite() // no waiting for a handshake timeout
		io.Copy(io.Discard, c)
		c.Close()
		// still serving
		h := dialGW(t, w.addr)
		h.Write(append(append([]byte(nil), valid...), "ping"...))
		readReplies(t, h)
		var b [4]byte
		if _, err := io.ReadFull(h, b[:]); err != nil || string(b[:]) != "ping" {
			t.Fatalf("after input % x the gateway no longer relays: %q %v", in, b, err)
		}
		h.Close()
	})
}

// TestLoopSmallWritesNotDelayed: a target answering each request in two
// small writes reaches the client without Nagle's wait for an ACK (the
// client's delayed ACK is 40 ms or more): the client-facing sockets the
// loops accept have TCP_NODELAY, from their listener.
func TestLoopSmallWritesNotDelayed(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(1, fleet.SOCKS5, fleet.Good)})
	target := testtool.ServeTCP(t, func(c net.Conn) {
		b := make([]byte, 1)
		for {
			if _, err := io.ReadFull(c, b); err != nil {
				return
			}
			c.Write([]byte("ab"))
			time.Sleep(time.Millisecond)
			c.Write([]byte("cd"))
		}
	})
	c := dialGW(t, w.addr)
	c.Write(socks5Msgs(t, target))
	readReplies(t, c)
	var took []time.Duration
	b := make([]byte, 4)
	for range 15 {
		start := time.Now()
		c.Write([]byte{'?'})
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "abcd" {
			t.Fatalf("answer %q, %v", b, err)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	if med := took[len(took)/2]; med > 25*time.Millisecond {
		t.Errorf("median round trip %v (all %v): small writes wait for ACKs", med, took)
	}
}
