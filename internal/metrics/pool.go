package metrics

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/proxypool/proxypool/internal/upstream"
)

// PoolSnapshot is the pool as counted at one moment; cmd fills it from the
// store (store.Counts, store.Sources) and hands it to SetPool, or lets
// PollPool take one periodically. Every field is optional: a nil map or
// slice leaves those series as they were.
type PoolSnapshot struct {
	At time.Time // when counted; zero means now

	Healthy       int            // servable upstreams (store.Counts.Healthy)
	ByState       map[string]int // all upstreams per state (Counts.ByState)
	BySource      map[string]int // upstreams listed per source (Counts.BySource)
	ByType        map[string]int // all upstreams per protocol (Counts.ByType)
	ByCountry     map[string]int // servable upstreams per exit country (Counts.ByCountry)
	ByAnonymity   map[string]int // servable upstreams per anonymity (Counts.ByAnonymity)
	ByGroup       map[string]int // upstreams with an explicit group, Tor (Counts.ByGroup)
	ByClass       map[string]int // servable upstreams per exit class (Counts.ByClass; "" is unknown)
	DistinctExits int            // distinct exit IPs ever learnt (Counts.DistinctExits)
	HealthyExits  int            // distinct exits of servable upstreams (Counts.HealthyExits)

	// Groups is each configured group's health as the pool would serve it
	// (SLOMetrics.Floor sets the same series; the newer value wins).
	Groups map[string]GroupHealth
	// Sources is the store's fetch bookkeeping (store.Sources): refresh
	// freshness survives the one-shot refresh process this way. When set,
	// sources missing from it are dropped from the freshness series.
	Sources []upstream.SourceMeta
}

// GroupHealth is one group's healthy members and distinct healthy exits.
type GroupHealth struct {
	Healthy int
	Exits   int
}

// SetPool replaces the pool gauges with s. The series it feeds are
// consistent with each other: a scrape sees one whole snapshot.
func (m *Metrics) SetPool(s PoolSnapshot) { m.pool.set(s) }

type groupSeen struct {
	GroupHealth
	at time.Time
}

type sourceSeen struct {
	lastTry, lastOK time.Time
	failing         bool
}

// poolCollector emits the snapshot-derived series at scrape time from the
// latest state, so the series of one snapshot never mix with another's.
type poolCollector struct {
	m *Metrics

	mu      sync.Mutex
	snap    PoolSnapshot
	have    bool
	groups  map[string]groupSeen
	sources map[string]sourceSeen

	// descriptors
	upstreams, healthy, bySource, byType, byCountry, byAnon, byGroup, byClass,
	exits, healthyExits, snapAt,
	groupHealthy, groupExits,
	srcLastOK, srcLastTry, srcFailing *prometheus.Desc
}

func newPoolCollector(m *Metrics) *poolCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
	}
	return &poolCollector{
		m:            m,
		groups:       map[string]groupSeen{},
		sources:      map[string]sourceSeen{},
		upstreams:    d("pool_upstreams", "Upstreams in the store, by state (unknown, healthy, failing, dead; removed, retired: out of the pool).", "state"),
		healthy:      d("pool_healthy_upstreams", "Servable upstreams in the whole pool."),
		bySource:     d("pool_upstreams_by_source", "Upstreams listed, by source.", "source"),
		byType:       d("pool_upstreams_by_type", "Upstreams, by protocol type.", "type"),
		byCountry:    d("pool_healthy_by_country", "Servable upstreams, by exit country (the largest countries; the rest sum into other).", "country"),
		byAnon:       d("pool_healthy_by_anonymity", "Servable upstreams, by anonymity (elite, anonymous, none).", "anonymity"),
		byGroup:      d("pool_upstreams_by_group", "Upstreams with an explicit group (Tor instances), by group.", "group"),
		byClass:      d("pool_healthy_by_class", "Servable upstreams, by exit class (datacenter, residential, mobile, unknown).", "class"),
		exits:        d("pool_exits", "Distinct exit IPs ever learnt."),
		healthyExits: d("pool_healthy_exits", "Distinct exit IPs of servable upstreams."),
		snapAt:       d("pool_snapshot_timestamp_seconds", "Unix time the pool series were counted."),
		groupHealthy: d("group_healthy_upstreams", "Servable upstreams, by group.", "group"),
		groupExits:   d("group_healthy_exits", "Distinct exit IPs of servable upstreams, by group.", "group"),
		srcLastOK:    d("source_last_success_timestamp_seconds", "Unix time of the source's last successful fetch.", "source"),
		srcLastTry:   d("source_last_attempt_timestamp_seconds", "Unix time of the source's last fetch attempt.", "source"),
		srcFailing:   d("source_failing", "1 while the source's last fetch failed, else 0.", "source"),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.upstreams, c.healthy, c.bySource, c.byType, c.byCountry,
		c.byAnon, c.byGroup, c.byClass, c.exits, c.healthyExits, c.snapAt, c.groupHealthy, c.groupExits,
		c.srcLastOK, c.srcLastTry, c.srcFailing} {
		ch <- d
	}
}

func (c *poolCollector) set(s PoolSnapshot) {
	if s.At.IsZero() {
		s.At = time.Now()
	}
	// Bound the labels now, once per snapshot, not on every scrape.
	s.ByState = c.bound(s.ByState, nil, "unknown")
	s.BySource = c.bound(s.BySource, c.m.sources, "")
	s.ByType = c.bound(s.ByType, nil, "unknown")
	s.ByCountry = topN(s.ByCountry, c.m.opts.MaxCountries)
	s.ByAnonymity = c.bound(s.ByAnonymity, nil, "none")
	s.ByGroup = c.bound(s.ByGroup, c.m.groups, "")
	s.ByClass = classLabels(s.ByClass)
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.ByState != nil {
		for _, st := range []upstream.State{upstream.Unknown, upstream.Healthy, upstream.Failing, upstream.Dead, upstream.Removed, upstream.Retired} {
			if _, ok := s.ByState[string(st)]; !ok {
				s.ByState[string(st)] = 0
			}
		}
	}
	if s.Groups != nil {
		keep := map[string]groupSeen{}
		for name, h := range s.Groups {
			g := c.m.groups.value(name)
			old, ok := c.groups[g]
			if ok && old.at.After(s.At) {
				keep[g] = old
				continue
			}
			if prev, dup := keep[g]; dup { // several names folded into "other"
				h.Healthy += prev.Healthy
				h.Exits += prev.Exits
			}
			keep[g] = groupSeen{h, s.At}
		}
		c.groups = keep
	}
	if s.Sources != nil {
		keep := map[string]sourceSeen{}
		for _, sm := range s.Sources {
			name := c.m.sources.value(sm.Name)
			st := sourceSeen{lastTry: sm.LastFetch, lastOK: sm.LastOK,
				failing: sm.LastError != "" && sm.LastFetch.After(sm.LastOK)}
			keep[name] = merge(keep[name], merge(st, c.sources[name]))
		}
		c.sources = keep
	}
	c.snap, c.have = s, true
}

// bound folds m's keys through l (or the generic limiter when l is nil)
// into a fresh map.
func (c *poolCollector) bound(m map[string]int, l *limiter, empty string) map[string]int {
	if m == nil {
		return nil
	}
	out := make(map[string]int, len(m))
	for k, v := range m {
		var key string
		switch {
		case l != nil:
			key = l.value(k)
		case k == "":
			key = empty
		default:
			key = clean(k)
		}
		out[key] += v
	}
	if l == nil && len(out) > c.m.opts.MaxLabelValues {
		return topN(out, c.m.opts.MaxLabelValues)
	}
	return out
}

// classLabels bounds the class label to the classes and unknown (for ""
// and anything else), every one present so a class that empties reads 0.
func classLabels(m map[string]int) map[string]int {
	if m == nil {
		return nil
	}
	out := map[string]int{"unknown": 0}
	for _, c := range upstream.Classes {
		out[string(c)] = 0
	}
	for k, v := range m {
		if _, ok := out[k]; !ok || k == "unknown" {
			k = "unknown"
		}
		out[k] += v
	}
	return out
}

// topN keeps the n largest keys and sums the rest into Other.
func topN(m map[string]int, n int) map[string]int {
	if m == nil {
		return nil
	}
	type kv struct {
		k string
		v int
	}
	all := make([]kv, 0, len(m))
	for k, v := range m {
		if k == "" {
			k = "unknown"
		}
		all = append(all, kv{clean(k), v})
	}
	slices.SortFunc(all, func(a, b kv) int {
		if c := cmp.Compare(b.v, a.v); c != 0 {
			return c
		}
		return cmp.Compare(a.k, b.k)
	})
	out := make(map[string]int, min(len(all), n+1))
	for i, e := range all {
		if i < n {
			out[e.k] += e.v
		} else {
			out[Other] += e.v
		}
	}
	return out
}

// merge combines two views of a source, the newer attempt deciding
// whether it is failing.
func merge(a, b sourceSeen) sourceSeen {
	out := a
	if b.lastTry.After(a.lastTry) {
		out.lastTry, out.failing = b.lastTry, b.failing
	}
	if b.lastOK.After(out.lastOK) {
		out.lastOK = b.lastOK
	}
	return out
}

func (c *poolCollector) setGroup(g string, h GroupHealth, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.groups[g]; ok && old.at.After(at) {
		return
	}
	c.groups[g] = groupSeen{h, at}
}

func (c *poolCollector) setSource(name string, ok bool, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := sourceSeen{lastTry: at, failing: !ok}
	if ok {
		st.lastOK = at
	}
	c.sources[name] = merge(c.sources[name], st)
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	byLabel := func(d *prometheus.Desc, m map[string]int) {
		for k, v := range m {
			gauge(d, float64(v), k)
		}
	}
	if c.have {
		s := c.snap
		gauge(c.healthy, float64(s.Healthy))
		gauge(c.exits, float64(s.DistinctExits))
		gauge(c.healthyExits, float64(s.HealthyExits))
		gauge(c.snapAt, unixSeconds(s.At))
		byLabel(c.upstreams, s.ByState)
		byLabel(c.bySource, s.BySource)
		byLabel(c.byType, s.ByType)
		byLabel(c.byCountry, s.ByCountry)
		byLabel(c.byAnon, s.ByAnonymity)
		byLabel(c.byGroup, s.ByGroup)
		byLabel(c.byClass, s.ByClass)
	}
	for g, h := range c.groups {
		gauge(c.groupHealthy, float64(h.Healthy), g)
		gauge(c.groupExits, float64(h.Exits), g)
	}
	for name, st := range c.sources {
		if !st.lastOK.IsZero() {
			gauge(c.srcLastOK, unixSeconds(st.lastOK), name)
		}
		if !st.lastTry.IsZero() {
			gauge(c.srcLastTry, unixSeconds(st.lastTry), name)
		}
		f := 0.0
		if st.failing {
			f = 1
		}
		gauge(c.srcFailing, f, name)
	}
}

// SourceMetrics records source refreshes. A nil *SourceMetrics records
// nothing.
type SourceMetrics struct {
	m         *Metrics
	refreshes *prometheus.CounterVec
	changes   *prometheus.CounterVec
}

func newSourceMetrics(m *Metrics) *SourceMetrics {
	f := family{m.reg, "source"}
	s := &SourceMetrics{
		m:         m,
		refreshes: f.counterVec("refreshes_total", "Source fetches, by source and result (ok, error).", "source", "result"),
		changes:   f.counterVec("upstreams_total", "What refreshes changed, by source and change: new, gone, failed (lines that did not parse).", "source", "change"),
	}
	return s
}

// Refreshed records one fetch of a source at time at: whether it worked,
// and how many upstreams were new, gone, or failed to parse.
func (s *SourceMetrics) Refreshed(source string, ok bool, at time.Time, new, gone, failed int) {
	if s == nil {
		return
	}
	name := s.m.sources.value(source)
	if at.IsZero() {
		at = time.Now()
	}
	result := "ok"
	if !ok {
		result = "error"
	}
	s.refreshes.WithLabelValues(name, result).Inc()
	for change, n := range map[string]int{"new": new, "gone": gone, "failed": failed} {
		c := s.changes.WithLabelValues(name, change)
		if n > 0 {
			c.Add(float64(n))
		}
	}
	s.m.pool.setSource(name, ok, at)
}

// Summary is Refreshed for a store summary (ok when it carries no error).
func (s *SourceMetrics) Summary(sum upstream.SourceSummary, at time.Time) {
	s.Refreshed(sum.Source, sum.Err == "", at, sum.New, sum.Gone, sum.Failed)
}
