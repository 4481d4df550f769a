package gateway

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// clients is what the gateway keeps per source IP: its open connections
// (bounded by MaxConnsPerClient) and its recent auth failures (which
// delay its next refusals). The table is bounded: an entry lives while
// the source has connections or failures within authWindow, and past
// maxClientEntries idle failure entries are dropped to make room.
type clients struct {
	perClient int           // connections one source may hold
	delayMax  time.Duration // cap of an auth refusal's delay; 0: none

	mu sync.Mutex
	m  map[netip.Addr]*client
	// for the periodic summary line
	fails, delayed, limited, malformed uint64
	sources                            map[netip.Addr]struct{} // that failed auth this period (bounded)
}

type client struct {
	conns    int
	fails    int       // auth failures within authWindow of the last one
	lastFail time.Time // zero: none
}

const (
	// authFree failures in a row are answered at once (typos); then each
	// refusal waits authBaseDelay, doubling, up to delayMax.
	authFree      = 3
	authBaseDelay = 100 * time.Millisecond
	// authWindow without a failure forgives a source.
	authWindow = 10 * time.Minute
	// maxClientEntries bounds the table (a source with connections is
	// never dropped; those are bounded by MaxConns).
	maxClientEntries = 1 << 16
	// summaryEvery is how often auth failures and refusals are logged,
	// as one line.
	summaryEvery = 10 * time.Second
	// maxSummarySources bounds the distinct sources a summary counts.
	maxSummarySources = 1024
)

func newClients(perClient int, delayMax time.Duration) *clients {
	return &clients{perClient: perClient, delayMax: delayMax, m: map[netip.Addr]*client{}, sources: map[netip.Addr]struct{}{}}
}

// open counts a connection from ip; false (nothing counted) when ip
// already holds perClient.
func (cs *clients) open(ip netip.Addr) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.m[ip]
	if c == nil {
		cs.makeRoom(time.Now())
		c = &client{}
		cs.m[ip] = c
	}
	if c.conns >= cs.perClient {
		cs.limited++
		return false
	}
	c.conns++
	return true
}

// close ends a connection open counted.
func (cs *clients) close(ip netip.Addr) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.m[ip]
	if c == nil {
		return
	}
	c.conns--
	if c.conns <= 0 && c.lastFail.IsZero() {
		delete(cs.m, ip)
	}
}

// failed records an auth failure from ip and returns how long to wait
// before answering it.
func (cs *clients) failed(ip netip.Addr, now time.Time) time.Duration {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.fails++
	if len(cs.sources) < maxSummarySources {
		cs.sources[ip] = struct{}{}
	}
	c := cs.m[ip]
	if c == nil {
		cs.makeRoom(now)
		c = &client{}
		cs.m[ip] = c
	}
	if now.Sub(c.lastFail) > authWindow {
		c.fails = 0
	}
	c.fails++
	c.lastFail = now
	d := cs.delayFor(c.fails)
	if d > 0 {
		cs.delayed++
	}
	return d
}

// delayFor is the wait before refusing the n-th failure in a row.
func (cs *clients) delayFor(n int) time.Duration {
	if cs.delayMax <= 0 || n <= authFree {
		return 0
	}
	d := authBaseDelay
	for i := authFree + 1; i < n && d < cs.delayMax; i++ {
		d *= 2
	}
	return min(d, cs.delayMax)
}

// suspect reports whether ip's next auth failure would be delayed: its
// connections are then served on goroutines, which can wait (an event
// loop must not).
func (cs *clients) suspect(ip netip.Addr, now time.Time) bool {
	if cs.delayMax <= 0 {
		return false
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.m[ip]
	return c != nil && c.fails >= authFree && now.Sub(c.lastFail) <= authWindow
}

// makeRoom drops forgiven entries, then any idle ones, once the table is
// full. cs.mu is held.
func (cs *clients) makeRoom(now time.Time) {
	if len(cs.m) < maxClientEntries {
		return
	}
	for ip, c := range cs.m {
		if c.conns <= 0 && now.Sub(c.lastFail) > authWindow {
			delete(cs.m, ip)
		}
	}
	for ip, c := range cs.m {
		if len(cs.m) < maxClientEntries*7/8 {
			break
		}
		if c.conns <= 0 {
			delete(cs.m, ip)
		}
	}
}

// summarize logs, every summaryEvery until ctx ends, one info line with
// the auth failures, delayed refusals and per-client refusals since the
// last line (nothing when there were none): a brute force shows in the
// log without a line per guess.
func (cs *clients) summarize(ctx context.Context, log logrus.FieldLogger) {
	t := time.NewTicker(summaryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			cs.logSummary(log)
			return
		case <-t.C:
			cs.logSummary(log)
		}
	}
}

func (cs *clients) logSummary(log logrus.FieldLogger) {
	cs.mu.Lock()
	fails, delayed, limited, malformed, sources := cs.fails, cs.delayed, cs.limited, cs.malformed, len(cs.sources)
	var example netip.Addr
	for ip := range cs.sources {
		example = ip
		break
	}
	cs.fails, cs.delayed, cs.limited, cs.malformed = 0, 0, 0, 0
	clear(cs.sources)
	cs.mu.Unlock()
	if fails > 0 {
		log.WithFields(logrus.Fields{"failures": fails, "sources": sources, "delayed": delayed, "source": example.String()}).
			Infof("auth refused %d times from %d sources in the last %v (%d answers delayed)", fails, sources, summaryEvery, delayed)
	}
	if malformed > 0 {
		log.WithField("malformed", malformed).Infof("answered %d malformed requests in the last %v (each at debug level)", malformed, summaryEvery)
	}
	if limited > 0 {
		log.WithField("refused", limited).Infof("refused %d connections over max-conns-per-client (%d) in the last %v", limited, cs.perClient, summaryEvery)
	}
}

// countMalformed counts a malformed request for the summary.
func (cs *clients) countMalformed() {
	cs.mu.Lock()
	cs.malformed++
	cs.mu.Unlock()
}
