package gateway

import (
	"context"
	"net"
	"time"

	"github.com/proxypool/proxypool/internal/gateway/failover"
	"github.com/proxypool/proxypool/internal/upstream"
)

// CapsDialer is optionally implemented by Options.Dialer (dial.Pool does):
// it dials asking the upstream for what its probe proved, and returns what
// this dial proved. The gateway uses it to pipeline the SOCKS5 handshake
// of upstreams whose probe set upstream.CapPipeline.
type CapsDialer interface {
	DialCaps(ctx context.Context, u upstream.Entry, addr string, try upstream.Caps) (net.Conn, upstream.Caps, error)
}

// dial dials ch for f's target, pipelining the handshake when ch's probe
// proved the upstream takes it and it has not stalled on it since.
func (g *Gateway) dial(ctx context.Context, f *failover.Failover, ch upstream.Choice) (net.Conn, error) {
	cd, ok := g.opts.Dialer.(CapsDialer)
	if !ok || !f.Pipeline(time.Now()) {
		return g.opts.Dialer.DialContext(ctx, ch.Entry, f.Addr())
	}
	c, got, err := cd.DialCaps(ctx, ch.Entry, f.Addr(), upstream.CapPipeline)
	if err == nil && !got.Has(upstream.CapPipeline) {
		f.Stalled(time.Now())
	}
	return c, err
}
