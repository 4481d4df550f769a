package manager

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/upstream"
)

// totalTTL is how long the number of records matching a filter is reused:
// a client paging through a big pool asks once, not once per page.
const totalTTL = 2 * time.Second

type totalKey struct {
	state                  upstream.State
	country, group, source string
	anonymity              upstream.Anonymity
	minScore               float64
	asn                    uint32
	class                  upstream.Class
	target                 string
	minThroughput          float64
	members                string // a config group's name
}

type cachedTotal struct {
	n  int
	at time.Time
}

// List returns one page of the pool, by id, credentials redacted for an
// unprivileged caller (see secretsFor).
func (m *Manager) List(ctx context.Context, q control.ListQuery) (control.ListPage, error) {
	if q.Offset < 0 || q.Limit < 0 {
		return control.ListPage{}, fmt.Errorf("%w: negative offset or limit", control.ErrInvalid)
	}
	if q.Limit == 0 {
		q.Limit = control.DefaultListLimit
	}
	q.Limit = min(q.Limit, control.MaxListLimit)
	f := store.Filter{State: q.State, Country: strings.ToUpper(q.Country), Group: q.Group, Source: q.Source,
		Anonymity: q.Anonymity, MinScore: q.MinScore, ASN: q.ASN, Class: q.Class, Target: q.Target, MinThroughput: q.MinThroughput,
		Limit: q.Limit, Offset: q.Offset}
	if g, ok := m.o.Groups[q.Group]; ok {
		f.Group, f.Members = "", &g
	}
	recs, err := m.o.Store.List(ctx, f)
	if err != nil {
		return control.ListPage{}, fmt.Errorf("listing the pool: %w", err)
	}
	page := control.ListPage{Records: m.secretsFor(ctx, recs)}
	if page.Records == nil {
		page.Records = []upstream.Record{}
	}
	if len(recs) < q.Limit && (len(recs) > 0 || q.Offset == 0) {
		// The page ends the list: the total is exact without counting.
		page.Total = q.Offset + len(recs)
		m.rememberTotal(f, page.Total)
		return page, nil
	}
	n, err := m.total(ctx, f)
	if err != nil {
		return control.ListPage{}, err
	}
	page.Total = n
	if len(recs) > 0 { // the count may be a little stale: never below what was just read
		page.Total = max(n, q.Offset+len(recs))
	}
	return page, nil
}

func keyOf(f store.Filter) totalKey {
	k := totalKey{state: f.State, country: f.Country, group: f.Group, source: f.Source, anonymity: f.Anonymity, minScore: f.MinScore,
		asn: f.ASN, class: f.Class, target: f.Target, minThroughput: f.MinThroughput}
	if f.Members != nil {
		k.members = f.Members.Name
	}
	return k
}

func (m *Manager) rememberTotal(f store.Filter, n int) {
	m.mu.Lock()
	m.totals[keyOf(f)] = cachedTotal{n: n, at: m.o.Now()}
	m.mu.Unlock()
}

func (m *Manager) forgetTotals() {
	m.mu.Lock()
	clear(m.totals)
	m.mu.Unlock()
}

// total counts the records matching f: from the store's grouped counts when
// one dimension (or none) is filtered, else by listing once; either way
// reused for totalTTL.
func (m *Manager) total(ctx context.Context, f store.Filter) (int, error) {
	k := keyOf(f)
	m.mu.Lock()
	c, ok := m.totals[k]
	m.mu.Unlock()
	if ok && m.o.Now().Sub(c.at) < totalTTL {
		return c.n, nil
	}
	var n int
	set := 0
	for _, s := range []string{string(k.state), k.country, k.group, k.source} {
		if s != "" {
			set++
		}
	}
	if set <= 1 && k.country == "" && k.anonymity == "" && k.minScore == 0 && k.asn == 0 && k.class == "" && k.members == "" {
		cnt, err := m.o.Store.Counts(ctx)
		if err != nil {
			return 0, fmt.Errorf("counting the pool: %w", err)
		}
		switch {
		case k.state != "":
			n = cnt.ByState[string(k.state)]
		case k.group != "":
			n = cnt.ByGroup[k.group]
		case k.source != "":
			n = cnt.BySource[k.source]
		default:
			n = cnt.Total
		}
	} else {
		all := f
		all.Limit, all.Offset = 0, 0
		recs, err := m.o.Store.List(ctx, all)
		if err != nil {
			return 0, fmt.Errorf("counting the pool: %w", err)
		}
		n = len(recs)
	}
	m.rememberTotal(f, n)
	return n, nil
}

// Get returns the upstream with this id, credentials redacted for an
// unprivileged caller; an unknown id wraps control.ErrNotFound.
func (m *Manager) Get(ctx context.Context, id string) (upstream.Record, error) {
	if id == "" {
		return upstream.Record{}, fmt.Errorf("%w: empty id", control.ErrInvalid)
	}
	recs, err := m.o.Store.List(ctx, store.Filter{IDs: []string{id}, Limit: 1})
	if err != nil {
		return upstream.Record{}, fmt.Errorf("looking up upstream %s: %w", id, err)
	}
	if len(recs) == 0 {
		return upstream.Record{}, fmt.Errorf("no upstream %s in the pool: %w", id, control.ErrNotFound)
	}
	return m.secretsFor(ctx, recs)[0], nil
}
