package gateway_test

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/gateway"
)

// dialFrom connects to addr from the loopback address src (this test
// file's sources, in the 127.78.0.0/16 block reserved for it).
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	return c
}

// socksAuth runs a SOCKS5 user/pass handshake and returns the auth status
// (0 ok) and, when it is ok, the CONNECT reply code for target.
func socksAuth(t *testing.T, c net.Conn, user, pass, target string) (status, reply byte) {
	t.Helper()
	io.WriteString(c, "\x05\x01\x02")
	var b [2]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[1] != 2 {
		t.Fatalf("method choice %v %v", b, err)
	}
	io.WriteString(c, "\x01"+string(rune(len(user)))+user+string(rune(len(pass)))+pass)
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("auth status: %v", err)
	}
	if b[1] != 0 {
		return b[1], 0
	}
	host, port, _ := net.SplitHostPort(target)
	var p int
	for _, ch := range port {
		p = p*10 + int(ch-'0')
	}
	io.WriteString(c, "\x05\x01\x00\x03"+string(rune(len(host)))+host+string([]byte{byte(p >> 8), byte(p)}))
	var r [10]byte
	if _, err := io.ReadFull(c, r[:]); err != nil {
		t.Fatalf("connect reply: %v", err)
	}
	return 0, r[1]
}

// After a few wrong passwords in a row a source waits longer and longer
// for each refusal (bounded), on HTTP and SOCKS5 alike; other sources and
// the right password are not held back; one summary line says so.
func TestAuthFailuresAreDelayedPerSource(t *testing.T) {
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.InfoLevel)
	rec := &recorder{}
	w := newWorld(t, worldOpts{spec: fleet.Uniform(1, fleet.SOCKS5, fleet.Good), gw: gateway.Options{
		Users: map[string]string{"alice": "s3cret"}, AuthDelayMax: 400 * time.Millisecond, Log: log, Observer: rec,
	}})
	httpGuess := func(src, pass string) (int, time.Duration) {
		c := dialFrom(t, src, w.addr)
		start := time.Now()
		auth := base64.StdEncoding.EncodeToString([]byte("alice:" + pass))
		io.WriteString(c, "GET "+w.judge+"/ HTTP/1.1\r\nHost: j\r\nProxy-Authorization: Basic "+auth+"\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		return resp.StatusCode, time.Since(start)
	}
	socksGuess := func(src, pass string) (byte, time.Duration) {
		c := dialFrom(t, src, w.addr)
		start := time.Now()
		st, _ := socksAuth(t, c, "alice", pass, "h:1")
		return st, time.Since(start)
	}
	const fast = 80 * time.Millisecond
	var took []time.Duration
	for i := range 8 {
		var d time.Duration
		if i%2 == 0 {
			var st int
			st, d = httpGuess("127.78.0.1", "guess")
			if st != http.StatusProxyAuthRequired {
				t.Fatalf("guess %d: %d, want 407", i, st)
			}
		} else {
			var st byte
			st, d = socksGuess("127.78.0.1", "guess")
			if st == 0 {
				t.Fatalf("guess %d: a wrong password was accepted", i)
			}
		}
		took = append(took, d)
	}
	t.Logf("refusals took %v", took)
	for i, d := range took {
		switch {
		case i < 3 && d > fast:
			t.Errorf("refusal %d took %v: the first three are answered at once", i, d)
		case i >= 3 && d < 90*time.Millisecond:
			t.Errorf("refusal %d took %v: no delay after %d failures in a row", i, d, i)
		case d > 400*time.Millisecond+fast:
			t.Errorf("refusal %d took %v, over the cap of 400ms", i, d)
		}
	}
	if took[4] <= took[3] || took[5] <= took[4] {
		t.Errorf("the delay does not grow: %v", took[3:6])
	}
	// another source is not held back, nor the right password
	if st, d := httpGuess("127.78.0.2", "guess"); st != 407 || d > fast {
		t.Errorf("another source's first guess: %d after %v, want 407 at once", st, d)
	}
	if st, d := httpGuess("127.78.0.1", "s3cret"); st != 200 || d > time.Second {
		t.Errorf("the right password from the delayed source: %d after %v", st, d)
	}
	if st, d := socksGuess("127.78.0.1", "s3cret"); st != 0 || d > fast {
		t.Errorf("the right SOCKS5 password from the delayed source: %d after %v", st, d)
	}
	rec.mu.Lock()
	delayed := rec.delayed
	rec.mu.Unlock()
	if delayed != 5 {
		t.Errorf("%d delayed refusals counted, want 5", delayed)
	}
	w.gw.LogClientSummary()
	var lines []string
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "auth refused") {
			lines = append(lines, e.Message)
			if e.Level != logrus.InfoLevel {
				t.Errorf("summary at %v, want info", e.Level)
			}
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "auth refused 9 times from 2 sources") || !strings.Contains(lines[0], "5 answers delayed") {
		t.Errorf("summary lines %q, want one naming 9 refusals from 2 sources, 5 delayed", lines)
	}
}

// One source cannot take more than max-conns-per-client; its excess is
// answered in its own protocol, and other sources are served.
func TestMaxConnsPerClient(t *testing.T) {
	rec := &recorder{}
	w := newWorld(t, worldOpts{spec: fleet.Uniform(1, fleet.SOCKS5, fleet.Good), gw: gateway.Options{MaxConnsPerClient: 3, Observer: rec}})
	target := strings.TrimPrefix(w.judge, "http://")
	open := func(src string) (net.Conn, byte) {
		c := dialFrom(t, src, w.addr)
		io.WriteString(c, "\x05\x01\x00")
		var b [2]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatalf("greeting: %v", err)
		}
		host, port, _ := net.SplitHostPort(target)
		var p int
		for _, ch := range port {
			p = p*10 + int(ch-'0')
		}
		io.WriteString(c, "\x05\x01\x00\x03"+string(rune(len(host)))+host+string([]byte{byte(p >> 8), byte(p)}))
		var r [10]byte
		if _, err := io.ReadFull(c, r[:]); err != nil {
			t.Fatalf("connect reply: %v", err)
		}
		return c, r[1]
	}
	var held []net.Conn
	for i := range 3 {
		c, code := open("127.78.1.1")
		if code != 0 {
			t.Fatalf("tunnel %d refused with %d within the limit", i, code)
		}
		held = append(held, c)
	}
	if _, code := open("127.78.1.1"); code != 2 {
		t.Fatalf("a 4th SOCKS5 tunnel from one source got reply %d, want 2 (not allowed)", code)
	}
	c := dialFrom(t, "127.78.1.1", w.addr)
	io.WriteString(c, "GET "+w.judge+"/ HTTP/1.1\r\nHost: j\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a 4th HTTP request from one source: %v %v, want 429", resp, err)
	}
	if _, code := open("127.78.1.2"); code != 0 {
		t.Fatalf("another source refused with %d", code)
	}
	held[0].Close()
	waitFor(t, func() bool {
		c, code := open("127.78.1.1")
		c.Close()
		return code == 0
	})
	rec.mu.Lock()
	limited := rec.limited
	rec.mu.Unlock()
	if limited < 2 {
		t.Errorf("%d refusals counted, want at least 2", limited)
	}
}

// A failed request's answer names the cause and the upstream's id, never
// the upstream's address nor the dialer's words about it (they stay in
// the log, and reach the body only with the debug header on).
func TestErrorAnswersHideThePool(t *testing.T) {
	for _, debug := range []bool{false, true} {
		o := gateway.Options{MaxTries: 1}
		if debug {
			o.InfoHeader = "X-Proxypool-Upstream"
		}
		w := newWorld(t, worldOpts{spec: fleet.Uniform(1, fleet.SOCKS5, fleet.Garbage), gw: o})
		m := w.fleet.Members()[0]
		host, _, _ := net.SplitHostPort(m.Addr)
		for _, raw := range []string{
			"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n",
			"GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n",
		} {
			c := dialFrom(t, "127.78.2.1", w.addr)
			io.WriteString(c, raw)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			answer := resp.Header.Get("Proxy-Status") + "\n" + string(b)
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(answer, m.Upstream.ID) || !strings.Contains(answer, "handshake") {
				t.Errorf("debug %v: %d %q, want 502 naming the cause and upstream %s", debug, resp.StatusCode, answer, m.Upstream.ID)
			}
			leaks := strings.Contains(answer, host) || strings.Contains(answer, "socks5:")
			if leaks != debug {
				t.Errorf("debug %v: the answer names the upstream's address or dialer detail: %v\n%s", debug, leaks, answer)
			}
		}
	}
}
