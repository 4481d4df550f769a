// Package clashapi serves the subset of mihomo's (Clash's) external
// controller that dashboards such as metacubexd, zashboard and yacd call,
// over proxypool's pool: each upstream a proxy, each pool group and pinned
// port a LoadBalance group, one provider per source, the gateway's
// connections and traffic. Shapes follow mihomo's hub/route.
//
// It serves no listener and checks no secret: internal/api mounts it
// behind its auth and CORS. What it shows comes from a Backend, which
// cmd/proxypoold wires to the store, the pool, dial and the gateway.
package clashapi

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is wrapped by a Backend for a proxy, group or provider that
// does not exist; the handler answers 404 {"message":"Resource not found"}.
var ErrNotFound = errors.New("not found")

// Proxy is one upstream as a dashboard shows it.
type Proxy struct {
	Name      string // the upstream's ID: unique, and what proxypoolctl takes
	Type      string // its kind: socks5, http, vmess, tor, …
	Title     string // its own name from the source, if any
	Server    string
	Port      int
	UDP       bool
	State     string // healthy, failing, dead, unknown
	Alive     bool   // servable now
	ExitIP    string
	Country   string
	LatencyMS float64
	Sources   []string
	History   []Delay // oldest first, as mihomo keeps it
}

// Delay is one check or delay test: Delay 0 means it failed.
type Delay struct {
	Time  time.Time `json:"time"`
	Delay int       `json:"delay"`
}

// Group is a pool group, a pinned port or the main listener.
type Group struct {
	Name string
	// Listen is the port's address for a pinned port or the main
	// listener, "" for a pool group.
	Listen string
	// Members are the upstreams' names, best first (servable, then by
	// latency), at most the limit the Backend was asked for.
	Members []string
	Total   int    // members in all
	Pinned  string // the member it is pinned to, "" when not pinned
	// PinnedUntil is when the pin ends.
	PinnedUntil time.Time
}

// Source is one configured source, a provider to the dashboard.
type Source struct {
	Name      string
	URL       string
	UpdatedAt time.Time
	Members   []Proxy // its upstreams, best first, at most the limit asked for
	Total     int
}

// Conn is one live tunnel through the gateway.
type Conn struct {
	ID       string
	Start    time.Time
	Network  string // tcp
	Proto    string // socks5, http, …: the client's protocol
	Listener string // the gateway listener's name
	Client   string // source address host:port
	Target   string // host:port the client asked for
	Upstream string // the upstream's name (ID) carrying it
	Group    string
	Up, Down int64 // bytes so far (client to upstream, and back)
}

// GatewayStats is what the gateway's process reports: totals since it
// started and the tunnels open now.
type GatewayStats struct {
	UpTotal, DownTotal int64
	Memory             uint64 // bytes in use by the gateway's process
	Conns              []Conn
}

// Backend is what the handler needs of the daemon. Methods must be safe
// for concurrent use and honour ctx.
type Backend interface {
	// EachProxy calls fn for every upstream, in a stable order, without
	// holding them all (a pool may have 100,000); p is reused between
	// calls. An error from fn stops it and is returned.
	EachProxy(ctx context.Context, fn func(p *Proxy) error) error
	// Proxy returns one upstream by name (ErrNotFound).
	Proxy(ctx context.Context, name string) (Proxy, error)
	// Groups returns every group and port, each listing at most limit
	// members.
	Groups(ctx context.Context, limit int) ([]Group, error)
	// Sources returns every source, each listing at most limit members.
	Sources(ctx context.Context, limit int) ([]Source, error)
	// Delay dials the target of url through one upstream and fetches
	// it, within ctx's deadline, returning how long it took. The result
	// counts as a check of that upstream where the backend keeps them.
	Delay(ctx context.Context, name, url string) (time.Duration, error)
	// Pin makes a group (or port) send every request to one member
	// until ttl passes; name "" unpins it.
	Pin(ctx context.Context, group, name string, ttl time.Duration) error
	// Gateway reads the gateway process's numbers.
	Gateway(ctx context.Context) (GatewayStats, error)
	// CloseConns closes the tunnels with these IDs, every tunnel when
	// ids is empty; an unknown ID is not an error (mihomo answers 204).
	CloseConns(ctx context.Context, ids ...string) error
}
