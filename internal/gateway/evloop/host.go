package evloop

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/gateway/failover"
	"github.com/proxypool/proxypool/internal/upstream"
)

// Host is the gateway as the loops see it.
type Host interface {
	// Admit takes a connection slot for a socket about to be accepted,
	// without waiting: false at MaxConns (the loop stops listening for a
	// moment) or while draining.
	Admit() bool
	// Unadmit gives back the slot of an accept that failed.
	Unadmit()
	// Opened counts an accepted socket from peer as a connection a drain
	// waits for, and says how to serve it.
	Opened(peer netip.Addr) Admission
	// Release gives back the slot of a connection that ended in the loop.
	Release(a Admission)
	// Authorize checks a client's username and password and fills sel
	// from the username's parameters and the listener's group.
	Authorize(sel *upstream.Selector, group, user, pass string) error
	// AuthRejected counts a client whose auth was refused.
	AuthRejected(listener string)
	// Malformed logs a client's handshake that cannot be valid (already
	// answered).
	Malformed(listener, client, what string)
	// Refused counts a request that got no tunnel and returns the SOCKS5
	// reply and the outcome to answer it with.
	Refused(f *failover.Failover) (code byte, outcome string)
	// Handoff serves c on the goroutine path, on the route it was accepted
	// with. With f, c is a SOCKS5 client
	// whose handshake the loop did and f holds its tries so far and the
	// upstream picked for the next; without, c is a connection to serve
	// from its first byte (HTTP, SOCKS4), those read so far put back.
	Handoff(ctx context.Context, c net.Conn, listener string, route *failover.Route, f *failover.Failover, start time.Time, a Admission)
}

// Admission is the Host's word on an accepted connection; the loop keeps
// it and gives it back with Release or Handoff.
type Admission struct {
	Peer netip.Addr
	// Counted: the connection holds one of its source's slots
	// (max-conns-per-client) until it ends.
	Counted bool
	// Goroutines: hand it to the goroutine path before reading a byte
	// (a source over its limit, or whose auth refusals are delayed:
	// answering those waits, and a loop must not).
	Goroutines bool
	// Port is the Listener.ID the connection was accepted from (set by
	// the loop), so a port a reload removed can end its own tunnels.
	Port uint64
}

// Observer is told about connections, tunnels and bytes (the gateway's
// Observer); nil costs nothing.
type Observer interface {
	ConnOpened(listener, proto string)
	ConnDone(listener, proto, outcome string, dur time.Duration)
	ActiveTunnels(delta int)
	Bytes(up, down int64)
}

// PlainSOCKS5 names the upstreams that are SOCKS5 servers without TLS or
// credentials at an IP address: the only ones a loop dials itself.
type PlainSOCKS5 interface {
	PlainSOCKS5(u upstream.Entry) (netip.AddrPort, bool)
}

// Options configure an Engine.
type Options struct {
	Host     Host
	Tries    *failover.Env // the loops' requests fail over through it
	Plain    PlainSOCKS5   // nil: every request is handed off
	Observer Observer
	// Tunnel, when set, hears of each tunnel a loop relays (the Clash
	// API's connection list) and returns what to call when it ends, with
	// its bytes. The loop owns the sockets: nobody else may close them.
	Tunnel func(listener, client, target, group, upstreamID string) (done func(up, down int64))
	Log    logrus.FieldLogger

	NeedAuth      bool // clients must authenticate (users are configured)
	ClientTimeout time.Duration
	IdleTimeout   time.Duration
	// RelayRounds × RelayReads bound what one turn relays for a tunnel.
	RelayRounds, RelayReads int
}
