package socks

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// Server is a minimal SOCKS4/4a/5 CONNECT server that dials targets itself.
// The gateway does not use it (it has its own dialing policy); test fleets
// and benchmarks do.
type Server struct {
	// Auth, when set, checks credentials; RequireAuth refuses clients
	// without any.
	Auth        AuthFunc
	RequireAuth bool
	// Dialer dials the target; nil means a net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// HandshakeTimeout bounds greeting+request (default 10s).
	HandshakeTimeout time.Duration
}

// Serve accepts on ln until ctx is done or ln fails, serving each
// connection in its own goroutine. It closes ln when ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go s.ServeConn(ctx, c)
	}
}

var brPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 1024) }}

// ServeConn serves one client connection and closes it.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	ht := s.HandshakeTimeout
	if ht <= 0 {
		ht = 10 * time.Second
	}
	c.SetDeadline(time.Now().Add(ht))
	br := brPool.Get().(*bufio.Reader)
	br.Reset(c)
	req, err := ServerHandshake(br, c, s.Auth, s.RequireAuth)
	if err != nil {
		br.Reset(nil)
		brPool.Put(br)
		return
	}
	dial := s.Dialer
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, ht)
	t, err := dial(dctx, "tcp", req.Addr)
	cancel()
	if err != nil {
		Reply(c, req.Version, codeFor(err))
		br.Reset(nil)
		brPool.Put(br)
		return
	}
	defer t.Close()
	if err := Reply(c, req.Version, Succeeded); err != nil {
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

func codeFor(err error) byte {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return NetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH):
		return HostUnreachable
	case errors.As(err, &ne) && ne.Timeout():
		return TTLExpired
	}
	return HostUnreachable
}

// pipe copies both ways with half-close and returns when both are done.
func pipe(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		io.Copy(b, a)
		closeWrite(b)
		close(done)
	}()
	io.Copy(a, b)
	closeWrite(a)
	<-done
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
