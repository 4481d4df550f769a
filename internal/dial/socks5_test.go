package dial

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/socks/sockstest"
	"github.com/proxypool/proxypool/internal/testtool"
	"github.com/proxypool/proxypool/internal/upstream"
)

// replyServer is a loopback SOCKS5 server that answers every CONNECT with
// a fixed method and reply; after a success it writes banner (a target
// that speaks first). split sends the method answer and the reply in two
// writes, 20ms apart.
type replyServer struct {
	method, code, atyp byte
	split              bool
	banner             string
}

func (s replyServer) start(t *testing.T) string {
	return testtool.ServeTCP(t, s.serve)
}

func (s replyServer) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	var b [512]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return
	}
	if _, err := io.ReadFull(c, b[:b[1]]); err != nil {
		return
	}
	c.Write([]byte{5, s.method})
	if s.method == 0xff {
		return
	}
	if s.method == 2 {
		if _, err := io.ReadFull(c, b[:2]); err != nil {
			return
		}
		io.ReadFull(c, b[:int(b[1])+1])
		io.ReadFull(c, b[:b[int(b[1])]])
		c.Write([]byte{1, 0})
	}
	if _, err := io.ReadFull(c, b[:4]); err != nil { // VER CMD RSV ATYP
		return
	}
	switch b[3] {
	case 1:
		io.ReadFull(c, b[:4+2])
	case 4:
		io.ReadFull(c, b[:16+2])
	case 3:
		io.ReadFull(c, b[:1])
		io.ReadFull(c, b[:int(b[0])+2])
	}
	if s.split {
		time.Sleep(20 * time.Millisecond)
	}
	rep := []byte{5, s.code, 0, s.atyp}
	switch s.atyp {
	case 1:
		rep = append(rep, 127, 0, 0, 1, 0x1f, 0x90)
	case 4:
		rep = append(rep, make([]byte, 18)...)
	case 3:
		rep = append(rep, 1, 'x', 0, 80) // shortest possible reply: 8 bytes
	}
	c.Write(append(rep, s.banner...))
	if s.code == 0 {
		io.Copy(io.Discard, c)
	}
}

// TestSOCKS5ReplyCodes: every SOCKS5 reply code becomes its cause, target
// failures are told apart from upstream failures, and bytes the target
// sends right after the reply reach the caller.
func TestSOCKS5ReplyCodes(t *testing.T) {
	tests := []struct {
		name   string
		srv    replyServer
		user   string
		want   upstream.Cause // CauseNone = success
		target bool
	}{
		{"succeeded", replyServer{code: 0, atyp: 1, banner: "SSH-2.0-x\r\n"}, "", upstream.CauseNone, false},
		{"succeeded split", replyServer{code: 0, atyp: 1, split: true, banner: "hi"}, "", upstream.CauseNone, false},
		{"succeeded ipv6 bound", replyServer{code: 0, atyp: 4, banner: "hi"}, "", upstream.CauseNone, false},
		{"succeeded short name bound", replyServer{code: 0, atyp: 3, banner: "hi"}, "", upstream.CauseNone, false},
		{"succeeded with password", replyServer{method: 2, code: 0, atyp: 1, banner: "hi"}, "u", upstream.CauseNone, false},
		{"general failure", replyServer{code: 1, atyp: 1}, "", upstream.CauseOther, false},
		{"not allowed", replyServer{code: 2, atyp: 1}, "", upstream.CauseTargetDenied, true}, // its rules, not its failure
		{"network unreachable", replyServer{code: 3, atyp: 1}, "", upstream.CauseTargetUnreachable, true},
		{"host unreachable", replyServer{code: 4, atyp: 1}, "", upstream.CauseTargetUnreachable, true},
		{"host unreachable split", replyServer{code: 4, atyp: 1, split: true}, "", upstream.CauseTargetUnreachable, true},
		{"connection refused", replyServer{code: 5, atyp: 1}, "", upstream.CauseTargetRefused, true},
		{"ttl expired", replyServer{code: 6, atyp: 1}, "", upstream.CauseTargetTimeout, true},
		{"command not supported", replyServer{code: 7, atyp: 1}, "", upstream.CauseHandshake, false},
		{"address type not supported", replyServer{code: 8, atyp: 1}, "", upstream.CauseTargetDenied, true}, // this target's type, not its failure
		{"unknown code", replyServer{code: 0x42, atyp: 1}, "", upstream.CauseHandshake, false},
		{"refused with password", replyServer{method: 2, code: 5, atyp: 1}, "u", upstream.CauseTargetRefused, true},
		{"no acceptable method", replyServer{method: 0xff}, "", upstream.CauseAuth, false},
		{"wants password", replyServer{method: 2, code: 0, atyp: 1}, "", upstream.CauseAuth, false},
	}
	p := New(Options{})
	defer p.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, port, _ := net.SplitHostPort(tt.srv.start(t))
			mp := map[string]any{"type": "socks5", "server": host, "port": port}
			if tt.user != "" {
				mp["username"], mp["password"] = tt.user, "p"
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			c, err := p.DialContext(ctx, entry(t, upstream.MustNew(mp)), "example.com:443")
			if got := Classify(err); got != tt.want {
				t.Fatalf("dial: %v (cause %q), want cause %q", err, got, tt.want)
			}
			if Classify(err).IsTarget() != tt.target {
				t.Errorf("cause %q Target() = %v, want %v", Classify(err), !tt.target, tt.target)
			}
			if err != nil {
				return
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			got := make([]byte, len(tt.srv.banner))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != tt.srv.banner {
				t.Errorf("first bytes from the target: %q %v, want %q", got, err, tt.srv.banner)
			}
		})
	}
}

// TestSOCKS5FirstSegment: by default the upstream gets the greeting alone
// (RFC 1928: the request follows the method reply); asked to pipeline, it
// gets greeting and request in one segment, and the dial reports that it
// worked.
func TestSOCKS5FirstSegment(t *testing.T) {
	tests := []struct {
		name     string
		try      upstream.Caps
		want     []byte
		wantCaps upstream.Caps
	}{
		{"sequential", 0, []byte{5, 1, 0}, 0},
		{"pipelined", upstream.CapPipeline, []byte{5, 1, 0, 5, 1, 0, 1, 10, 1, 2, 3, 0, 80}, upstream.CapPipeline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan []byte, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Second))
				time.Sleep(50 * time.Millisecond) // let everything the client wrote arrive
				b := make([]byte, 64)
				n, _ := c.Read(b)
				got <- b[:n]
				c.Write([]byte{5, 0})
				if n == 3 {
					io.ReadFull(c, b[:10])
				}
				c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
			}()
			host, port, _ := net.SplitHostPort(ln.Addr().String())
			p := New(Options{})
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			c, caps, err := p.DialCaps(ctx, entry(t, upstream.MustNew(map[string]any{"type": "socks5", "server": host, "port": port})), "10.1.2.3:80", tt.try)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if b := <-got; string(b) != string(tt.want) {
				t.Errorf("first read at the upstream: % x, want % x", b, tt.want)
			}
			if caps != tt.wantCaps {
				t.Errorf("caps %q, want %q", caps, tt.wantCaps)
			}
		})
	}
}

// TestMicrosocks: the dial client reaches a target through microsocks,
// which drops whatever follows the message it asked for; asked to
// pipeline, the dial falls back to the sequential handshake and reports
// that the upstream does not pipeline.
func TestMicrosocks(t *testing.T) {
	target, err := net.Listen("tcp", "127.64.1.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	tests := []struct {
		name, user, pass string
		port             int
		try              upstream.Caps
	}{
		{"no auth", "", "", 24001, 0},
		{"auth", "alice", "s3cret", 24002, 0},
		{"no auth, pipelining asked", "", "", 24003, upstream.CapPipeline},
		{"auth, pipelining asked", "alice", "s3cret", 24004, upstream.CapPipeline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := sockstest.Microsocks(t, "127.64.1.2", tt.port, tt.user, tt.pass)
			host, port, _ := net.SplitHostPort(addr)
			m := map[string]any{"type": "socks5", "server": host, "port": port}
			if tt.user != "" {
				m["username"], m["password"] = tt.user, tt.pass
			}
			p := New(Options{})
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, caps, err := p.DialCaps(ctx, entry(t, upstream.MustNew(m)), target.Addr().String(), tt.try)
			if err != nil {
				t.Fatalf("dial through microsocks: %v", err)
			}
			defer c.Close()
			if caps.Has(upstream.CapPipeline) {
				t.Errorf("caps %q: microsocks does not pipeline", caps)
			}
			c.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.WriteString(c, "ping"); err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 4)
			if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
				t.Fatalf("echo through microsocks: %q, %v", b, err)
			}
		})
	}
}
