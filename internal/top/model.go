package top

import (
	"math"
	"sort"
	"time"
)

// notErrors are the outcomes that are not the gateway's failure (see
// internal/metrics doc).
const notErrors = "!ok|!client_*|!auth_rejected"

// Frame is what one refresh shows; rates are nil until two scrapes exist.
type Frame struct {
	At       time.Time `json:"at"`
	URL      string    `json:"url"`
	Error    string    `json:"error,omitempty"`
	Interval float64   `json:"interval_seconds,omitempty"`

	Pool    PoolView     `json:"pool"`
	Groups  []GroupView  `json:"groups"`
	Gateway GatewayView  `json:"gateway"`
	Probe   ProbeView    `json:"probe"`
	Sources []SourceView `json:"sources"`
	Process ProcessView  `json:"process"`
}

type PoolView struct {
	Healthy      float64            `json:"healthy"`
	Total        float64            `json:"total"`
	ByState      map[string]float64 `json:"by_state"`
	Exits        float64            `json:"exits"`
	HealthyExits float64            `json:"healthy_exits"`
	SnapshotAge  *float64           `json:"snapshot_age_seconds"`
}

type GroupView struct {
	Name            string   `json:"name"`
	Healthy         *float64 `json:"healthy"`
	Exits           *float64 `json:"exits"`
	MinHealthy      *float64 `json:"min_healthy"`
	MinExits        *float64 `json:"min_exits"`
	BelowFloor      bool     `json:"below_floor"`
	TorActive       *float64 `json:"tor_active"`
	TorBootstrapped *float64 `json:"tor_bootstrapped"`
	TorExits        *float64 `json:"tor_exits"`
}

type GatewayView struct {
	Connections     float64            `json:"connections"` // finished, since start
	Errors          float64            `json:"errors"`
	Active          float64            `json:"active"`
	Tunnels         float64            `json:"tunnels"`
	Outcomes        map[string]float64 `json:"outcomes"`
	RatePerSec      *float64           `json:"rate_per_second"`
	ErrorsPerSec    *float64           `json:"errors_per_second"`
	RetriesPerSec   *float64           `json:"retries_per_second"`
	UpBytesPerSec   *float64           `json:"up_bytes_per_second"`
	DownBytesPerSec *float64           `json:"down_bytes_per_second"`
	DialP50         *float64           `json:"dial_p50_seconds"`
	DialP90         *float64           `json:"dial_p90_seconds"`
	DialP99         *float64           `json:"dial_p99_seconds"`
	SnapshotVersion *float64           `json:"snapshot_version"`
}

type ProbeView struct {
	PassDone     float64  `json:"pass_done"`
	PassSize     float64  `json:"pass_size"`
	PassHealthy  float64  `json:"pass_healthy"`
	Backlog      float64  `json:"backlog"`
	Checks       float64  `json:"checks"`
	ChecksOK     float64  `json:"checks_ok"`
	ChecksPerSec *float64 `json:"checks_per_second"`
}

type SourceView struct {
	Name       string   `json:"name"`
	Failing    bool     `json:"failing"`
	LastOKAge  *float64 `json:"last_ok_age_seconds"`
	LastTryAge *float64 `json:"last_attempt_age_seconds"`
}

type ProcessView struct {
	CPU        *float64 `json:"cpu_ratio"` // cores busy
	RSS        float64  `json:"rss_bytes"`
	Goroutines float64  `json:"goroutines"`
}

func ptr(v float64) *float64 { return &v }

func opt(v float64, ok bool) *float64 {
	if !ok {
		return nil
	}
	return &v
}

// Build turns the current scrape (and the previous, for rates) into a
// frame. cur may be nil when this scrape failed: the frame says why.
func Build(url string, prev, cur *Sample, err error) Frame {
	f := Frame{At: time.Now(), URL: url, Groups: []GroupView{}, Sources: []SourceView{}}
	if err != nil {
		f.Error = err.Error()
	}
	if cur == nil {
		return f
	}
	f.At = cur.at
	var dt float64
	if prev != nil {
		dt = cur.at.Sub(prev.at).Seconds()
		f.Interval = dt
	}
	// rate of a counter (sum of matching series) between the two scrapes.
	rate := func(name string, want ...string) *float64 {
		if prev == nil || dt <= 0 {
			return nil
		}
		a, _ := prev.sum(name, want...)
		b, ok := cur.sum(name, want...)
		if !ok {
			return nil
		}
		d := b - a
		if d < 0 { // restarted
			d = b
		}
		return ptr(d / dt)
	}
	now := cur.at

	// Pool.
	f.Pool.ByState = cur.byLabel("proxypool_pool_upstreams", "state")
	for _, v := range f.Pool.ByState {
		f.Pool.Total += v
	}
	f.Pool.Healthy, _ = cur.sum("proxypool_pool_healthy_upstreams")
	f.Pool.Exits, _ = cur.sum("proxypool_pool_exits")
	f.Pool.HealthyExits, _ = cur.sum("proxypool_pool_healthy_exits")
	if ts, ok := cur.sum("proxypool_pool_snapshot_timestamp_seconds"); ok && ts > 0 {
		f.Pool.SnapshotAge = ptr(math.Max(0, float64(now.UnixNano())/1e9-ts))
	}

	// Groups: the union of every group-labelled family.
	groups := map[string]*GroupView{}
	gv := func(name string) *GroupView {
		if groups[name] == nil {
			groups[name] = &GroupView{Name: name}
		}
		return groups[name]
	}
	for _, fam := range []struct {
		name string
		set  func(*GroupView, float64)
	}{
		{"proxypool_group_healthy_upstreams", func(g *GroupView, v float64) { g.Healthy = ptr(v) }},
		{"proxypool_group_healthy_exits", func(g *GroupView, v float64) { g.Exits = ptr(v) }},
		{"proxypool_slo_min_healthy", func(g *GroupView, v float64) { g.MinHealthy = ptr(v) }},
		{"proxypool_slo_min_exits", func(g *GroupView, v float64) { g.MinExits = ptr(v) }},
		{"proxypool_slo_below_floor", func(g *GroupView, v float64) { g.BelowFloor = v > 0 }},
		{"proxypool_tor_instances_active", func(g *GroupView, v float64) { g.TorActive = ptr(v) }},
		{"proxypool_tor_instances_bootstrapped", func(g *GroupView, v float64) { g.TorBootstrapped = ptr(v) }},
		{"proxypool_tor_exits", func(g *GroupView, v float64) { g.TorExits = ptr(v) }},
	} {
		for name, v := range cur.byLabel(fam.name, "group") {
			fam.set(gv(name), v)
		}
	}
	for _, g := range groups {
		f.Groups = append(f.Groups, *g)
	}
	sort.Slice(f.Groups, func(i, j int) bool {
		a, b := f.Groups[i].Name, f.Groups[j].Name
		if (a == "_pool") != (b == "_pool") {
			return a == "_pool"
		}
		return a < b
	})

	// Gateway.
	gw := &f.Gateway
	gw.Outcomes = cur.byLabel("proxypool_gateway_connections_total", "outcome")
	gw.Connections, _ = cur.sum("proxypool_gateway_connections_total")
	gw.Errors, _ = cur.sum("proxypool_gateway_connections_total", "outcome", notErrors)
	gw.Active, _ = cur.sum("proxypool_gateway_connections_active")
	gw.Tunnels, _ = cur.sum("proxypool_gateway_tunnels_active")
	gw.RatePerSec = rate("proxypool_gateway_connections_total")
	gw.ErrorsPerSec = rate("proxypool_gateway_connections_total", "outcome", notErrors)
	gw.RetriesPerSec = rate("proxypool_gateway_retries_total")
	gw.UpBytesPerSec = rate("proxypool_gateway_bytes_total", "direction", "up")
	gw.DownBytesPerSec = rate("proxypool_gateway_bytes_total", "direction", "down")
	gw.SnapshotVersion = opt(cur.sum("proxypool_gateway_snapshot_version"))
	if h := histDelta(prev, cur, "proxypool_gateway_dial_duration_seconds", "cause", "ok"); h != nil {
		gw.DialP50, gw.DialP90, gw.DialP99 = h.quantile(0.5), h.quantile(0.9), h.quantile(0.99)
	}

	// Probe.
	p := &f.Probe
	p.PassDone, _ = cur.sum("proxypool_probe_pass_done")
	p.PassSize, _ = cur.sum("proxypool_probe_pass_size")
	p.PassHealthy, _ = cur.sum("proxypool_probe_pass_healthy")
	p.Backlog, _ = cur.sum("proxypool_probe_backlog")
	p.Checks, _ = cur.sum("proxypool_probe_checks_total")
	p.ChecksOK, _ = cur.sum("proxypool_probe_checks_total", "outcome", "ok")
	p.ChecksPerSec = rate("proxypool_probe_checks_total")

	// Sources.
	nowS := float64(now.UnixNano()) / 1e9
	lastOK := cur.byLabel("proxypool_source_last_success_timestamp_seconds", "source")
	lastTry := cur.byLabel("proxypool_source_last_attempt_timestamp_seconds", "source")
	for name, failing := range cur.byLabel("proxypool_source_failing", "source") {
		s := SourceView{Name: name, Failing: failing > 0}
		if ts, ok := lastOK[name]; ok {
			s.LastOKAge = ptr(math.Max(0, nowS-ts))
		}
		if ts, ok := lastTry[name]; ok {
			s.LastTryAge = ptr(math.Max(0, nowS-ts))
		}
		f.Sources = append(f.Sources, s)
	}
	sort.Slice(f.Sources, func(i, j int) bool { return f.Sources[i].Name < f.Sources[j].Name })

	// Process.
	f.Process.CPU = rate("process_cpu_seconds_total")
	f.Process.RSS, _ = cur.sum("process_resident_memory_bytes")
	f.Process.Goroutines, _ = cur.sum("go_goroutines")
	return f
}

// hist is a cumulative histogram: upper bounds ascending, counts.
type hist struct {
	bounds []float64
	counts []float64
	total  float64
}

// histDelta is the matching series' histogram between the scrapes (or the
// whole of cur when there is no earlier scrape or nothing new).
func histDelta(prev, cur *Sample, name string, want ...string) *hist {
	collect := func(s *Sample) *hist {
		var h *hist
		for _, v := range s.series(name) {
			if v.hist == nil || !matches(v.labels, want) {
				continue
			}
			if h == nil {
				h = &hist{}
				for _, b := range v.hist.GetBucket() {
					h.bounds = append(h.bounds, b.GetUpperBound())
					h.counts = append(h.counts, 0)
				}
			}
			for i, b := range v.hist.GetBucket() {
				if i < len(h.counts) {
					h.counts[i] += float64(b.GetCumulativeCount())
				}
			}
			h.total += float64(v.hist.GetSampleCount())
		}
		return h
	}
	c := collect(cur)
	if c == nil || c.total == 0 {
		return nil
	}
	if prev == nil {
		return c
	}
	p := collect(prev)
	if p == nil || len(p.counts) != len(c.counts) || c.total-p.total <= 0 {
		return c
	}
	d := &hist{bounds: c.bounds, counts: make([]float64, len(c.counts)), total: c.total - p.total}
	for i := range c.counts {
		d.counts[i] = c.counts[i] - p.counts[i]
	}
	return d
}

// quantile interpolates linearly inside the bucket, like PromQL's
// histogram_quantile; past the last finite bound it answers that bound.
func (h *hist) quantile(q float64) *float64 {
	if h == nil || h.total <= 0 || len(h.bounds) == 0 {
		return nil
	}
	rank := q * h.total
	lower, below := 0.0, 0.0
	for i, ub := range h.bounds {
		if h.counts[i] >= rank {
			if math.IsInf(ub, 1) {
				return ptr(lower)
			}
			in := h.counts[i] - below
			if in <= 0 {
				return ptr(ub)
			}
			return ptr(lower + (ub-lower)*(rank-below)/in)
		}
		lower, below = ub, h.counts[i]
	}
	return ptr(h.bounds[len(h.bounds)-1])
}
