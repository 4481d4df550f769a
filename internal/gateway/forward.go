package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"

	"github.com/proxypool/proxypool/internal/gateway/failover"
	"github.com/proxypool/proxypool/internal/httpproxy"
	"github.com/proxypool/proxypool/internal/upstream"
)

// An HTTP upstream is used only for what its probe proved (upstream.Caps):
// CONNECT requests and every SOCKS client need a tunnel; a plain http://
// request can be tunnelled to its origin or, through an upstream that
// forwards but refuses CONNECT (common among free HTTP proxies), sent to
// the upstream as a forward proxy. The pool picks only fitting upstreams
// (Selector.Need), so failover skips unfit ones without failing them.

// needOf is what req asks of its upstream.
func needOf(req *http.Request) upstream.Caps {
	if req.Method == http.MethodConnect {
		return upstream.CapConnect
	}
	return upstream.CapConnect | upstream.CapForward
}

// forwards reports whether a request through ch goes to the upstream as
// a forward proxy: it proved forwarding but not CONNECT. One that proved
// both is tunnelled, as every upstream was before caps were checked.
func forwards(ch upstream.Choice) bool {
	return !upstream.Usable(ch.Type, ch.Caps).Has(upstream.CapConnect)
}

// dialFor opens what a request through ch goes over: a tunnel to addr, or
// for a forward-only upstream a connection to the upstream itself.
func (g *Gateway) dialFor(ctx context.Context, f *failover.Failover, ch upstream.Choice) (net.Conn, error) {
	if !forwards(ch) {
		return g.dial(ctx, f, ch)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", ch.Addr())
	if err != nil {
		return nil, fmt.Errorf("dialing forward proxy %s: %w", ch.Addr(), err)
	}
	return c, nil
}

// upstreamProxy is the Exchange.Proxy of a request through ch: nil for a
// tunnel, the upstream's credentials for a forward proxy.
func upstreamProxy(ch upstream.Choice) *httpproxy.UpstreamProxy {
	if !forwards(ch) {
		return nil
	}
	p := &httpproxy.UpstreamProxy{}
	if m, err := ch.Decode(); err == nil {
		p.User, _ = m["username"].(string)
		p.Pass, _ = m["password"].(string)
	}
	return p
}
