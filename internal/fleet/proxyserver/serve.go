// Package proxyserver holds two minimal proxies that dial their targets
// themselves: a SOCKS4/4a/5 CONNECT server and an HTTP forward proxy
// (CONNECT and absolute-URI). They speak through the one codec of
// internal/socks and internal/httpproxy and serve tests and benchmarks
// only: the gateway has its own dialing policy and does not use them.
package proxyserver

import (
	"context"
	"errors"
	"io"
	"net"
	"time"
)

// defaultHandshakeTimeout bounds a client's greeting or request head when
// the server sets none.
const defaultHandshakeTimeout = 10 * time.Second

// serve is the accept loop both servers share: it accepts on ln until ctx
// is done (then closes ln) or ln fails, handing each connection to conn in
// its own goroutine. Accept timeouts are retried, not fatal.
func serve(ctx context.Context, ln net.Listener, conn func(context.Context, net.Conn)) error {
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
		go conn(ctx, c)
	}
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

// dialer is d, or a plain net.Dialer when d is nil.
func dialer(d func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if d != nil {
		return d
	}
	var nd net.Dialer
	return nd.DialContext
}

func timeoutOr(d time.Duration) time.Duration {
	if d <= 0 {
		return defaultHandshakeTimeout
	}
	return d
}
