// Package clashbackend is clashapi.Backend over the daemon's parts: the
// store (upstreams, their checks, sources), the pool (groups, members,
// pins), dial (delay tests) and the gateway's own numbers (Tunnels in
// `proxypoold run`).
package clashbackend

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	"github.com/proxypool/proxypool/internal/clashapi"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/upstream"
)

// Store is what the backend reads of the store (a *store.Store).
type Store interface {
	EachBrief(ctx context.Context, history int, fn func(b *store.Brief) error) error
	Get(ctx context.Context, id string) (upstream.Record, error)
	History(ctx context.Context, id string, limit int) ([]upstream.CheckResult, error)
	Sources(ctx context.Context) ([]upstream.SourceMeta, error)
	List(ctx context.Context, f store.Filter) ([]upstream.Record, error)
}

// Pool is the gateway's pool (a *pool.Pool): groups and their members,
// pins. Under systemd the API's process has its own pool over the same
// store, so members are the same; a pin holds in that process only.
type Pool interface {
	Members(group string, limit int) (ids []string, total int, ok bool)
	GroupNames() []string
	Pin(group, id string, ttl time.Duration) error
	Pinned(group string) (string, time.Time)
}

// Dialer reaches an address through one upstream (a *dial.Pool).
type Dialer interface {
	DialContext(ctx context.Context, u upstream.Entry, addr string) (net.Conn, error)
}

// Gateway reports the gateway process's numbers and closes its tunnels:
// *Tunnels in `proxypoold run`, where the gateway is in-process.
type Gateway interface {
	Stats(ctx context.Context) (clashapi.GatewayStats, error)
	CloseConns(ctx context.Context, ids ...string) error
}

// Port is one gateway listener: the main one (Group "") or a pinned port.
type Port struct {
	Listen string
	Group  string
}

// Options wire a Backend.
type Options struct {
	Store   Store
	Pool    Pool
	Dialer  Dialer
	Gateway Gateway // nil: no connections, zero traffic
	Ports   []Port
	// History is how many of an upstream's latest checks GET
	// /proxies/{name} shows (default 10, mihomo's delay history length).
	// The full list (/proxies) shows each upstream's last check only,
	// from its own row: reading 100k upstreams' checks would double the
	// list's cost, and dashboards draw the latest delay of a list.
	History int
}

// Backend implements clashapi.Backend.
type Backend struct {
	o     Options
	ports atomic.Pointer[[]Port] // Options.Ports, then SetPorts'
}

var _ clashapi.Backend = (*Backend)(nil)

// New checks o and returns a Backend.
func New(o Options) (*Backend, error) {
	if o.Store == nil || o.Pool == nil || o.Dialer == nil {
		return nil, errors.New("clashbackend: store, pool and dialer are required")
	}
	if o.History <= 0 {
		o.History = 10
	}
	b := &Backend{o: o}
	b.SetPorts(o.Ports)
	return b, nil
}

// SetPorts replaces the gateway listeners the API lists and pins by
// (a config reload that added, removed or re-pinned a port).
func (b *Backend) SetPorts(ports []Port) {
	ports = slices.Clone(ports)
	b.ports.Store(&ports)
}

func proxyOf(p *clashapi.Proxy, b *store.Brief) {
	*p = clashapi.Proxy{Name: b.ID, Type: string(b.Type), Title: b.Name, Server: b.Server, Port: b.Port,
		UDP: udpCapable(b.Type), State: string(b.Status.State), Alive: b.Status.Servable(), ExitIP: b.Status.ExitIP,
		Country: b.Status.Country, LatencyMS: b.Status.LatencyMS, Sources: b.Sources, History: p.History[:0]}
	for _, c := range b.History {
		p.History = append(p.History, clashapi.Delay{Time: c.At, Delay: checkDelay(c.OK, c.TotalMS)})
	}
}

// checkDelay is a check's delay as mihomo counts it: whole milliseconds,
// at least 1 when it passed, 0 when it failed.
func checkDelay(ok bool, totalMS float64) int {
	if !ok {
		return 0
	}
	return max(int(totalMS+0.5), 1)
}

// udpCapable: the gateway relays TCP only, so no upstream carries UDP
// for its clients.
func udpCapable(upstream.Kind) bool { return false }

// EachProxy streams every upstream from the store.
func (b *Backend) EachProxy(ctx context.Context, fn func(p *clashapi.Proxy) error) error {
	var p clashapi.Proxy
	last := make([]store.BriefCheck, 0, 1)
	return b.o.Store.EachBrief(ctx, 0, func(br *store.Brief) error {
		if !br.Status.LastCheck.IsZero() {
			ok := br.Status.LastOK.Equal(br.Status.LastCheck)
			br.History = append(last[:0], store.BriefCheck{At: br.Status.LastCheck, OK: ok, TotalMS: br.Status.LatencyMS})
		}
		proxyOf(&p, br)
		return fn(&p)
	})
}

// Proxy reads one upstream and its latest checks.
func (b *Backend) Proxy(ctx context.Context, name string) (clashapi.Proxy, error) {
	r, err := b.o.Store.Get(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return clashapi.Proxy{}, fmt.Errorf("upstream %s: %w", name, clashapi.ErrNotFound)
	}
	if err != nil {
		return clashapi.Proxy{}, err
	}
	hist, err := b.o.Store.History(ctx, name, b.o.History)
	if err != nil {
		return clashapi.Proxy{}, err
	}
	br := store.Brief{ID: r.ID, Type: r.Type, Server: r.Server, Port: r.Port, Name: r.Name, Group: r.Group, Status: r.Status, Sources: r.Sources}
	for i := len(hist) - 1; i >= 0; i-- { // History is newest first
		br.History = append(br.History, store.BriefCheck{At: hist[i].At, OK: hist[i].OK, TotalMS: hist[i].TotalMS})
	}
	var p clashapi.Proxy
	proxyOf(&p, &br)
	return p, nil
}

// Groups are the gateway's listeners, then the configured groups.
func (b *Backend) Groups(ctx context.Context, limit int) ([]clashapi.Group, error) {
	var out []clashapi.Group
	add := func(name, listen, group string) {
		ids, total, ok := b.o.Pool.Members(group, limit)
		if !ok {
			ids = nil
		}
		pinned, until := b.o.Pool.Pinned(group)
		out = append(out, clashapi.Group{Name: name, Listen: listen, Members: ids, Total: total, Pinned: pinned, PinnedUntil: until})
	}
	for _, p := range *b.ports.Load() {
		add(p.Listen, p.Listen, p.Group)
	}
	for _, g := range b.o.Pool.GroupNames() {
		add(g, "", g)
	}
	return out, ctx.Err()
}

// groupOf maps a clashapi group name (a listener or a group) to the
// pool's group.
func (b *Backend) groupOf(name string) (string, bool) {
	for _, p := range *b.ports.Load() {
		if p.Listen == name {
			return p.Group, true
		}
	}
	for _, g := range b.o.Pool.GroupNames() {
		if g == name {
			return g, true
		}
	}
	return "", false
}

// Sources are the store's sources, each with its best upstreams.
func (b *Backend) Sources(ctx context.Context, limit int) ([]clashapi.Source, error) {
	metas, err := b.o.Store.Sources(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing sources: %w", err)
	}
	out := make([]clashapi.Source, 0, len(metas))
	for _, m := range metas {
		recs, err := b.o.Store.List(ctx, store.Filter{Source: m.Name, OrderBy: "-score", Limit: limit})
		if err != nil {
			return nil, fmt.Errorf("listing source %s: %w", m.Name, err)
		}
		s := clashapi.Source{Name: m.Name, URL: m.URL, UpdatedAt: m.LastOK, Total: m.Total, Members: make([]clashapi.Proxy, len(recs))}
		for i, r := range recs {
			br := store.Brief{ID: r.ID, Type: r.Type, Server: r.Server, Port: r.Port, Name: r.Name, Group: r.Group, Status: r.Status, Sources: r.Sources}
			proxyOf(&s.Members[i], &br)
		}
		s.Total = max(s.Total, len(recs))
		out = append(out, s)
	}
	return out, nil
}

// Delay dials rawURL's host through the upstream and sends one GET; the
// time to the response head is the delay, as mihomo's URLTest measures.
func (b *Backend) Delay(ctx context.Context, name, rawURL string) (time.Duration, error) {
	r, err := b.o.Store.Get(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("upstream %s: %w", name, clashapi.ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	e, err := r.Upstream.Entry()
	if err != nil {
		return 0, fmt.Errorf("upstream %s: %w", name, err)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, fmt.Errorf("delay test url: %w", err)
	}
	if u.Scheme != "http" {
		// TLS to the target would need its own client per upstream; the
		// dashboards' default test URL answers on plain http as well.
		u.Scheme = "http"
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	start := time.Now()
	c, err := b.o.Dialer.DialContext(ctx, e, addr)
	if err != nil {
		return 0, fmt.Errorf("dialing %s through %s: %w", addr, name, err)
	}
	defer c.Close()
	// The deadline comes from ctx's end, not its Deadline: the caller
	// tells a timeout (504) from a failure (503) by ctx.Err, which must
	// be set by the time the read fails.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, fmt.Errorf("delay test request: %w", err)
	}
	req.Header.Set("User-Agent", "proxypool-delay")
	req.Close = true
	if err := req.Write(c); err != nil {
		return 0, fmt.Errorf("sending the delay test through %s: %w", name, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return 0, fmt.Errorf("reading the delay test's answer through %s: %w", name, err)
	}
	d := time.Since(start)
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return d, nil
}

// Pin pins a listener's or a group's pool group.
func (b *Backend) Pin(ctx context.Context, group, name string, ttl time.Duration) error {
	g, ok := b.groupOf(group)
	if !ok {
		return fmt.Errorf("group %s: %w", group, clashapi.ErrNotFound)
	}
	if err := b.o.Pool.Pin(g, name, ttl); err != nil {
		if errors.Is(err, upstream.ErrNoUpstream) || errors.Is(err, upstream.ErrUnknownGroup) {
			return fmt.Errorf("%v: %w", err, clashapi.ErrNotFound)
		}
		return err
	}
	return nil
}

// Gateway reads the gateway's numbers, zero without one.
func (b *Backend) Gateway(ctx context.Context) (clashapi.GatewayStats, error) {
	if b.o.Gateway == nil {
		return clashapi.GatewayStats{}, nil
	}
	return b.o.Gateway.Stats(ctx)
}

// CloseConns closes gateway tunnels.
func (b *Backend) CloseConns(ctx context.Context, ids ...string) error {
	if b.o.Gateway == nil {
		return nil
	}
	return b.o.Gateway.CloseConns(ctx, ids...)
}
