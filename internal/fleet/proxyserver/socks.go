package proxyserver

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/proxypool/proxypool/internal/socks"
)

// SOCKS is a minimal SOCKS4/4a/5 CONNECT server that dials targets itself.
type SOCKS struct {
	// Auth, when set, checks credentials; RequireAuth refuses clients
	// without any.
	Auth        socks.AuthFunc
	RequireAuth bool
	// Dialer dials the target; nil means a net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// HandshakeTimeout bounds greeting+request (default 10s).
	HandshakeTimeout time.Duration
}

// Serve accepts on ln until ctx is done or ln fails, serving each
// connection in its own goroutine. It closes ln when ctx is done.
func (s *SOCKS) Serve(ctx context.Context, ln net.Listener) error {
	return serve(ctx, ln, s.ServeConn)
}

// brPool reuses handshake readers: benchmarks open many short connections.
var brPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 1024) }}

// ServeConn serves one client connection and closes it.
func (s *SOCKS) ServeConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	ht := timeoutOr(s.HandshakeTimeout)
	c.SetDeadline(time.Now().Add(ht))
	br := brPool.Get().(*bufio.Reader)
	br.Reset(c)
	req, err := socks.ServerHandshake(br, c, s.Auth, s.RequireAuth)
	if err != nil {
		br.Reset(nil)
		brPool.Put(br)
		return
	}
	dctx, cancel := context.WithTimeout(ctx, ht)
	t, err := dialer(s.Dialer)(dctx, "tcp", req.Addr)
	cancel()
	if err != nil {
		socks.Reply(c, req.Version, replyFor(err))
		br.Reset(nil)
		brPool.Put(br)
		return
	}
	defer t.Close()
	if err := socks.Reply(c, req.Version, socks.Succeeded); err != nil {
		return
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := t.Write(b); err != nil {
			return
		}
	}
	br.Reset(nil)
	brPool.Put(br)
	c.SetDeadline(time.Time{})
	pipe(c, t)
}

// replyFor is the reply code a client sees when dialing its target failed.
func replyFor(err error) byte {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return socks.ConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return socks.NetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH):
		return socks.HostUnreachable
	case errors.As(err, &ne) && ne.Timeout():
		return socks.TTLExpired
	}
	return socks.HostUnreachable
}
