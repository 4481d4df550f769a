package gateway

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// CapsDialer is optionally implemented by Options.Dialer (dial.Pool does):
// it dials asking the upstream for what its probe proved, and returns what
// this dial proved. The gateway uses it to pipeline the SOCKS5 handshake
// of upstreams whose probe set upstream.CapPipeline.
type CapsDialer interface {
	DialCaps(ctx context.Context, u upstream.Entry, addr string, try upstream.Caps) (net.Conn, upstream.Caps, error)
}

// noPipeline remembers upstreams that stalled on a pipelined handshake
// although their probe said they pipeline, so the gateway stops paying a
// stall and a redial per tunnel for them. In memory only, bounded; an entry
// lasts until the probe could have rechecked the upstream (forget), after
// which the snapshot's Caps are believed again.
type noPipeline struct {
	mu sync.Mutex
	m  map[string]time.Time // id → when it stalled
}

const (
	noPipelineMax    = 4096
	noPipelineForget = 30 * time.Minute
)

func (n *noPipeline) add(id string, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = make(map[string]time.Time)
	}
	if len(n.m) >= noPipelineMax {
		for k, at := range n.m { // drop what expired; if nothing did, start over
			if now.Sub(at) >= noPipelineForget {
				delete(n.m, k)
			}
		}
		if len(n.m) >= noPipelineMax {
			clear(n.m)
		}
	}
	n.m[id] = now
}

func (n *noPipeline) has(id string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	at, ok := n.m[id]
	if ok && now.Sub(at) >= noPipelineForget {
		delete(n.m, id)
		return false
	}
	return ok
}

// dial dials ch for addr, pipelining the handshake when ch's probe proved
// the upstream takes it and it has not stalled on it since.
func (g *Gateway) dial(ctx context.Context, ch upstream.Choice, addr string) (net.Conn, error) {
	cd, ok := g.opts.Dialer.(CapsDialer)
	if !ok || !ch.Caps.Has(upstream.CapPipeline) || g.nopipe.has(ch.ID, time.Now()) {
		return g.opts.Dialer.DialContext(ctx, ch.Entry, addr)
	}
	c, got, err := cd.DialCaps(ctx, ch.Entry, addr, upstream.CapPipeline)
	if err == nil && !got.Has(upstream.CapPipeline) {
		g.nopipe.add(ch.ID, time.Now())
	}
	return c, err
}
