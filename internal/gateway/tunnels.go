package gateway

import "time"

// Tunnels, when set in Options, hears of each tunnel the goroutine path
// opens (the Clash API's connection list). Opened returns what to call
// when the tunnel ends, with the bytes it relayed. It must be cheap and
// safe for concurrent use. The event loops' tunnels (SOCKS5 clients over
// plain SOCKS5 upstreams) are reported too, without Close: their sockets
// belong to the loop, which no other goroutine may close.
type Tunnels interface {
	Opened(t Tunnel) (done func(up, down int64))
}

// Tunnel is one client's tunnel through one upstream.
type Tunnel struct {
	Start    time.Time
	Listener string
	Proto    string // socks5, socks4, http
	Client   string // host:port
	Target   string // host:port
	Group    string // the pinned port's group, "" for the whole pool
	Upstream string // the upstream's ID
	Close    func() // closes the client's and the upstream's connections; nil on the loops
}
