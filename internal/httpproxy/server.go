package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// Server is a minimal HTTP forward proxy (CONNECT and absolute-URI) that
// dials targets itself. The gateway does not use it; test fleets do.
type Server struct {
	// Auth, when set, checks Basic proxy credentials; a request without
	// valid ones gets 407.
	Auth func(user, pass string) error
	// Dialer dials the target; nil means a net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// HandshakeTimeout bounds reading a request head (default 10s).
	HandshakeTimeout time.Duration
}

// Serve accepts on ln until ctx is done (then closes ln) or ln fails.
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

// ServeConn serves one client connection (keep-alive) and closes it.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	ht := s.HandshakeTimeout
	if ht <= 0 {
		ht = 10 * time.Second
	}
	dial := s.Dialer
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	cr := &CapReader{R: c}
	br := bufio.NewReader(cr)
	for {
		c.SetReadDeadline(time.Now().Add(ht))
		cr.Limit(64 << 10)
		req, target, err := ReadRequest(br)
		cr.Unlimit()
		if err != nil {
			switch {
			case errors.Is(err, ErrHeaderTooLarge):
				WriteError(c, http.StatusRequestHeaderFieldsTooLarge, ProxyStatus("http_request_error", "header too large", ""), err.Error(), nil)
			case errors.Is(err, ErrNotProxyRequest):
				WriteError(c, http.StatusBadRequest, ProxyStatus("http_request_error", "", ""), err.Error(), nil)
			}
			return
		}
		if s.Auth != nil {
			u, p, _ := Credentials(req)
			if err := s.Auth(u, p); err != nil {
				WriteError(c, http.StatusProxyAuthRequired, "", "proxy authentication required: "+err.Error(), nil)
				return
			}
		}
		dctx, cancel := context.WithTimeout(ctx, ht)
		t, err := dial(dctx, "tcp", target)
		cancel()
		if err != nil {
			WriteError(c, http.StatusBadGateway, ProxyStatus("connection_refused", err.Error(), ""), "dialing "+target+": "+err.Error(), nil)
			return
		}
		c.SetReadDeadline(time.Time{})
		if req.Method == http.MethodConnect {
			defer t.Close()
			if WriteConnectOK(c, nil) != nil {
				return
			}
			if n := br.Buffered(); n > 0 {
				b, _ := br.Peek(n)
				t.Write(b)
			}
			pipe(c, t)
			return
		}
		tBr := bufio.NewReader(t)
		res, err := Forward(req, Exchange{Client: c, ClientBr: br, Up: t, UpBr: tBr})
		if err == nil && res.Upgraded {
			defer t.Close()
			if n := br.Buffered(); n > 0 {
				b, _ := br.Peek(n)
				t.Write(b)
			}
			if n := tBr.Buffered(); n > 0 {
				b, _ := tBr.Peek(n)
				c.Write(b)
			}
			pipe(c, t)
			return
		}
		t.Close()
		if err != nil || !res.KeepAlive {
			return
		}
	}
}

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
