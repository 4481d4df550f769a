package clashbackend

import (
	"context"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/proxypool/proxypool/internal/clashapi"
	"github.com/proxypool/proxypool/internal/gateway"
)

// Tunnels is the in-process gateway's tunnel table: gateway.Options.Tunnels
// fills it, the Clash API reads it (Gateway). Bytes are counted when a
// tunnel ends, so totals move in steps.
type Tunnels struct {
	next atomic.Uint64
	mu   sync.Mutex
	open map[string]*gateway.Tunnel
	// up and down are the bytes of tunnels that ended
	up, down atomic.Int64
}

var (
	_ gateway.Tunnels = (*Tunnels)(nil)
	_ Gateway         = (*Tunnels)(nil)
)

// NewTunnels returns an empty table.
func NewTunnels() *Tunnels { return &Tunnels{open: map[string]*gateway.Tunnel{}} }

// Opened records t until the returned func is called.
func (ts *Tunnels) Opened(t gateway.Tunnel) func(up, down int64) {
	id := strconv.FormatUint(ts.next.Add(1), 10)
	ts.mu.Lock()
	ts.open[id] = &t
	ts.mu.Unlock()
	return func(up, down int64) {
		ts.up.Add(up)
		ts.down.Add(down)
		ts.mu.Lock()
		delete(ts.open, id)
		ts.mu.Unlock()
	}
}

// Stats lists the open tunnels, the totals and this process's heap.
func (ts *Tunnels) Stats(ctx context.Context) (clashapi.GatewayStats, error) {
	st := clashapi.GatewayStats{UpTotal: ts.up.Load(), DownTotal: ts.down.Load(), Memory: heapInUse()}
	ts.mu.Lock()
	st.Conns = make([]clashapi.Conn, 0, len(ts.open))
	for id, t := range ts.open {
		st.Conns = append(st.Conns, clashapi.Conn{ID: id, Start: t.Start, Network: "tcp", Proto: t.Proto,
			Listener: t.Listener, Client: t.Client, Target: t.Target, Upstream: t.Upstream, Group: t.Group})
	}
	ts.mu.Unlock()
	return st, ctx.Err()
}

// CloseConns closes the named tunnels, or all of them.
func (ts *Tunnels) CloseConns(ctx context.Context, ids ...string) error {
	var closers []func()
	ts.mu.Lock()
	if len(ids) == 0 {
		for _, t := range ts.open {
			if t.Close != nil { // an event loop's tunnel cannot be closed from here
				closers = append(closers, t.Close)
			}
		}
	}
	for _, id := range ids {
		if t, ok := ts.open[id]; ok && t.Close != nil {
			closers = append(closers, t.Close)
		}
	}
	ts.mu.Unlock()
	for _, c := range closers {
		c()
	}
	return ctx.Err()
}

// heapInUse reads the runtime's live heap without stopping the world
// (runtime.ReadMemStats would, once a second per dashboard).
func heapInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
