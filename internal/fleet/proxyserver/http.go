package proxyserver

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/proxypool/proxypool/internal/httpproxy"
)

// HTTP is a minimal HTTP forward proxy (CONNECT and absolute-URI) that
// dials targets itself and forwards with the gateway's httpproxy.Forward.
type HTTP struct {
	// Auth, when set, checks Basic proxy credentials; a request without
	// valid ones gets 407.
	Auth func(user, pass string) error
	// Dialer dials the target; nil means a net.Dialer.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// HandshakeTimeout bounds reading a request head (default 10s).
	HandshakeTimeout time.Duration
}

// Serve accepts on ln until ctx is done (then closes ln) or ln fails.
func (s *HTTP) Serve(ctx context.Context, ln net.Listener) error {
	return serve(ctx, ln, s.ServeConn)
}

// ServeConn serves one client connection (keep-alive) and closes it.
func (s *HTTP) ServeConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	ht := timeoutOr(s.HandshakeTimeout)
	dial := dialer(s.Dialer)
	cr := &httpproxy.CapReader{R: c}
	br := bufio.NewReader(cr)
	for {
		c.SetReadDeadline(time.Now().Add(ht))
		cr.Limit(64 << 10)
		req, target, err := httpproxy.ReadRequest(br)
		cr.Unlimit()
		if err != nil {
			switch {
			case errors.Is(err, httpproxy.ErrHeaderTooLarge):
				httpproxy.WriteError(c, http.StatusRequestHeaderFieldsTooLarge, httpproxy.ProxyStatus("http_request_error", "header too large", ""), err.Error(), nil)
			case errors.Is(err, httpproxy.ErrNotProxyRequest):
				httpproxy.WriteError(c, http.StatusBadRequest, httpproxy.ProxyStatus("http_request_error", "", ""), err.Error(), nil)
			}
			return
		}
		if s.Auth != nil {
			u, p, _ := httpproxy.Credentials(req)
			if err := s.Auth(u, p); err != nil {
				httpproxy.WriteError(c, http.StatusProxyAuthRequired, "", "proxy authentication required: "+err.Error(), nil)
				return
			}
		}
		dctx, cancel := context.WithTimeout(ctx, ht)
		t, err := dial(dctx, "tcp", target)
		cancel()
		if err != nil {
			httpproxy.WriteError(c, http.StatusBadGateway, httpproxy.ProxyStatus("connection_refused", err.Error(), ""), "dialing "+target+": "+err.Error(), nil)
			return
		}
		c.SetReadDeadline(time.Time{})
		if req.Method == http.MethodConnect {
			defer t.Close()
			if httpproxy.WriteConnectOK(c, nil) != nil {
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
		res, err := httpproxy.Forward(req, httpproxy.Exchange{Client: c, ClientBr: br, Up: t, UpBr: tBr})
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
