package upstream

import (
	"errors"
	"time"
)

// Selector is what one client request asks of the pool: the gateway fills
// it from the listening port and the username parameters, the pool answers
// with a Choice. It lives here so that pool (which answers) and gateway
// (which asks) share it without importing each other.
type Selector struct {
	Group      string        // pinned port group or "-group-NAME"; "" for all
	Country    string        // ISO 3166-1 alpha-2, upper case; "" for any
	Session    string        // sticky key from "-session-ID"; "" for none
	User       string        // account name (the username before its first '-'): sessions are its own
	SessionTTL time.Duration // how long a session keeps its upstream; 0 for the pool default
	Client     string        // client IP, the sticky key when Session is empty
	Attempt    int           // 0 for the first try, 1.. for failover
	Tried      []string      // IDs already tried for this request (skipped)
	// Need is what the request asks of its upstream: any one of these
	// bits will do (see Usable). Zero is CapConnect, a tunnel: what every
	// SOCKS client and CONNECT request needs, and what a Selector that
	// never set it (the event loop's) means. A plain http:// request sets
	// CapConnect|CapForward: it can be tunnelled or forwarded.
	Need Caps
	// Targets are named target checks (probe.targets) the upstream must
	// currently pass, from "-target-NAME" (one or more); nil for none.
	Targets []string
}

// Choice is one upstream picked for a request, with what the gateway may
// report about it (opt-in response header).
type Choice struct {
	Entry     // its Caps are what the probe proved; the gateway uses the upstream only for that
	ExitIP    string
	Country   string
	LatencyMS float64
	Quality   // what a group's asn, exclude-asn and class filters read
	// Throughput is the last speed check's download rate in bytes/s
	// (probe.speed); 0 when never measured.
	Throughput float64
}

// ErrNoUpstream is returned (wrapped) by pickers when the pool, or the
// group/country asked for, has no servable upstream. The gateway answers it
// with 503 / SOCKS "network unreachable".
var ErrNoUpstream = errors.New("no healthy upstream")

// ErrUnknownGroup is returned (wrapped) by pickers for a group name that is
// not configured and that no upstream carries.
var ErrUnknownGroup = errors.New("unknown group")
