package slo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/upstream"
)

// Member returns g's membership test: whether the pool would serve r (were
// it healthy) to a client of group g. It asks internal/pool itself, through
// a one-record pool, so the floors count exactly what the gateway serves;
// answers are cached per (id, group, country, type, sources), the fields the
// pool's group filter reads, so a steady pool costs a map lookup per record.
// The test is safe for concurrent use.
//
// TODO(pool): when pool exports its filter (Group.Matches), call it here.
func Member(g pool.Group) func(r *upstream.Record) bool {
	m := &member{g: g, cache: map[string]bool{}}
	return m.match
}

type member struct {
	g     pool.Group
	mu    sync.Mutex
	cache map[string]bool
}

// maxCache bounds the cache; past it the cache starts afresh.
const maxCache = 1 << 20

func (m *member) match(r *upstream.Record) bool {
	key := memberKey(r)
	m.mu.Lock()
	v, ok := m.cache[key]
	m.mu.Unlock()
	if ok {
		return v
	}
	v = m.ask(r)
	m.mu.Lock()
	if len(m.cache) >= maxCache {
		m.cache = map[string]bool{}
	}
	m.cache[key] = v
	m.mu.Unlock()
	return v
}

func memberKey(r *upstream.Record) string {
	srcs := r.Sources
	if !slices.IsSorted(srcs) {
		srcs = slices.Sorted(slices.Values(srcs))
	}
	return strings.Join([]string{r.ID, r.Group, strings.ToUpper(r.Country), string(r.Type), strings.Join(srcs, "\x01")}, "\x00")
}

// ask builds a pool holding only r (as a servable upstream) and sees
// whether a pick for g finds it.
func (m *member) ask(r *upstream.Record) bool {
	probe := upstream.Record{Upstream: r.Upstream, Sources: r.Sources}
	probe.State = upstream.Healthy
	probe.Anonymity = upstream.AnonElite
	probe.Country = r.Country
	probe.ExitIP = r.ExitIP
	p, err := pool.New(pool.Options{Loader: oneRecord{probe}, Groups: []pool.Group{m.g}})
	if err != nil {
		return false // only a nameless group gets here, and it has no members
	}
	if err := p.Load(context.Background()); err != nil {
		return false
	}
	_, err = p.Pick(&upstream.Selector{Group: m.g.Name})
	return err == nil
}

type oneRecord struct{ r upstream.Record }

func (o oneRecord) Healthy(context.Context) ([]upstream.Record, error) {
	return []upstream.Record{o.r}, nil
}
func (o oneRecord) Version(context.Context) (uint64, error) { return 1, nil }

// Healthy lists the servable upstreams (the store's Healthy).
type Healthy interface {
	Healthy(ctx context.Context) ([]upstream.Record, error)
}

// NewCounter counts, from src's servable upstreams, the healthy members and
// distinct exit IPs of each group (through Group.Member) and of the whole
// pool (key PoolName). An upstream whose exit is not known yet counts as an
// exit of its own, as the pool's rotation does.
func NewCounter(src Healthy, groups []Group) Counter {
	return &counter{src: src, groups: groups}
}

type counter struct {
	src    Healthy
	groups []Group
}

func (c *counter) Count(ctx context.Context) (map[string]Count, error) {
	recs, err := c.src.Healthy(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading healthy upstreams: %w", err)
	}
	out := make(map[string]Count, len(c.groups)+1)
	out[PoolName] = count(recs, func(*upstream.Record) bool { return true })
	for _, g := range c.groups {
		out[g.Name] = count(recs, g.member())
	}
	return out, nil
}

func count(recs []upstream.Record, in func(*upstream.Record) bool) Count {
	exits := map[string]bool{}
	ids := map[string]bool{}
	for i := range recs {
		r := &recs[i]
		if !r.Servable() || ids[r.ID] || !in(r) {
			continue
		}
		ids[r.ID] = true
		if r.ExitIP == "" {
			exits["id:"+r.ID] = true
		} else {
			exits[r.ExitIP] = true
		}
	}
	return Count{Healthy: len(ids), Exits: len(exits)}
}

// member is g's test; without one, only the upstreams that carry g's name
// (tor instances) belong.
func (g Group) member() func(*upstream.Record) bool {
	if g.Member != nil {
		return g.Member
	}
	return func(r *upstream.Record) bool { return r.Group != "" && r.Group == g.Name }
}

var errUnknownGroup = errors.New("unknown group")
