package gateway

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/proxypool/proxypool/internal/gateway/evloop"
	"github.com/proxypool/proxypool/internal/gateway/failover"
	"github.com/proxypool/proxypool/internal/upstream"
)

// loopHost is the Gateway as its event loops see it (evloop.Host).
type loopHost struct{ g *Gateway }

var _ evloop.Host = loopHost{}

func (h loopHost) Admit() bool { return h.g.adm.try() }

func (h loopHost) Unadmit() { h.g.adm.unadmit() }

func (h loopHost) Opened(peer netip.Addr) evloop.Admission {
	g := h.g
	g.stats.Accepted.Add(1)
	g.stats.LoopConns.Add(1)
	g.adm.add()
	a := evloop.Admission{Peer: peer, Counted: g.clients.open(peer)}
	a.Goroutines = !a.Counted || g.clients.suspect(peer, time.Now())
	return a
}

func (h loopHost) Release(a evloop.Admission) {
	if a.Counted {
		h.g.clients.close(a.Peer)
	}
	h.g.adm.done()
}

func (h loopHost) Authorize(sel *upstream.Selector, group, user, pass string) error {
	p, err := h.g.authenticate(user, pass)
	if err != nil {
		if ip, perr := netip.ParseAddr(sel.Client); perr == nil && len(h.g.opts.Users) > 0 {
			// the loop answers at once (it must not wait); once the
			// source's refusals are to be delayed its connections go to
			// the goroutine path (Opened)
			h.g.clients.failed(ip, time.Now())
		}
		return err
	}
	return fillSelector(sel, group, p)
}

func (h loopHost) AuthRejected(listener string) { h.g.authRejected(listener) }

func (h loopHost) Malformed(listener, client, what string) { h.g.malformed(listener, client, what) }

func (h loopHost) Refused(f *failover.Failover) (byte, string) {
	err := f.Err()
	h.g.stats.Failed.Add(1)
	h.g.requestFailed(err, f.Addr(), f.Client())
	return socksCode(err), dialOutcome(err)
}

func (h loopHost) Handoff(ctx context.Context, c net.Conn, listener string, route *failover.Route, f *failover.Failover, start time.Time, a evloop.Admission) {
	g := h.g
	cc := &conn{g: g, c: c, listener: listener, route: route, port: a.Port, client: a.Peer, counted: a.Counted}
	g.stats.Handoffs.Add(1)
	g.adopt(cc)
	if f == nil {
		g.work.run(func() { cc.serve(ctx) })
		return
	}
	f.Use(&g.tries) // the goroutine path may block on the reporter
	cc.proto = "socks5"
	g.work.run(func() { cc.connectSOCKS(ctx, f, start) })
}

// startLoops serves lns on event loops, with a forwarder that hands their
// outcomes to the reporter.
func (g *Gateway) startLoops(ctx context.Context, lns []evloop.Listener) error {
	if g.opts.Reporter != nil {
		g.reports = make(chan upstream.CheckResult, 4096)
		g.forwarded = make(chan struct{})
		go func() {
			defer close(g.forwarded)
			for r := range g.reports {
				g.opts.Reporter.Submit(r)
			}
		}()
	}
	plain, _ := g.opts.Dialer.(evloop.PlainSOCKS5)
	var obs evloop.Observer
	if g.obs != nil {
		obs = g.obs
	}
	e, err := evloop.New(ctx, evloop.Options{
		Host: loopHost{g}, Tries: &g.loopTries, Plain: plain, Observer: obs, Log: g.log,
		NeedAuth:      len(g.opts.Users) > 0,
		ClientTimeout: g.opts.ClientTimeout, IdleTimeout: g.opts.IdleTimeout,
		RelayRounds: g.opts.relayRounds, RelayReads: g.opts.relayReads,
		Tunnel: g.loopTunnel(),
	}, lns)
	if err != nil {
		g.stopLoops()
		return err
	}
	g.eng = e
	e.Start()
	return nil
}

// stopLoops waits for the loops to end, then for their last outcomes to
// reach the reporter.
func (g *Gateway) stopLoops() {
	if g.eng != nil {
		g.eng.Stop()
	}
	if g.reports != nil {
		close(g.reports)
		<-g.forwarded
		g.reports = nil
	}
}

// loopTunnel reports the loops' tunnels to Options.Tunnels, with no Close:
// their sockets belong to the loop, which no other goroutine may close.
func (g *Gateway) loopTunnel() func(listener, client, target, group, id string) func(up, down int64) {
	t := g.opts.Tunnels
	if t == nil {
		return nil
	}
	return func(listener, client, target, group, id string) func(up, down int64) {
		return t.Opened(Tunnel{Start: time.Now(), Listener: listener, Proto: "socks5", Client: client, Target: target, Group: group, Upstream: id})
	}
}
