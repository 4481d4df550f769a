package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TorMetrics records the Tor instances. A nil *TorMetrics records nothing.
type TorMetrics struct {
	m            *Metrics
	active, boot *prometheus.GaugeVec
	exits        *prometheus.GaugeVec
	usable       *prometheus.GaugeVec
	short        *prometheus.GaugeVec
	discovered   prometheus.Gauge
	cpu          *prometheus.CounterVec // group, port
	memory       *prometheus.GaugeVec   // group, port
	traffic      *prometheus.CounterVec // group, direction

	mu   sync.Mutex
	last map[int]instanceTotals // per port: what tor reported last
}

// instanceTotals is one instance's running totals as last read: the
// counters grow by the difference, and a smaller reading (the instance
// restarted) counts whole.
type instanceTotals struct {
	group                string
	cpu                  float64
	read, written        uint64
	haveCPU, haveTraffic bool
}

func newTorMetrics(m *Metrics) *TorMetrics {
	f := family{m.reg, "tor"}
	t := &TorMetrics{
		m:          m,
		active:     f.gaugeVec("instances_active", "Tor instances running, by group.", "group"),
		boot:       f.gaugeVec("instances_bootstrapped", "Tor instances bootstrapped to 100%, by group.", "group"),
		exits:      f.gaugeVec("exits", "Distinct exit IPs the group's working Tor instances use.", "group"),
		usable:     f.gaugeVec("exits_usable", "Usable Tor exit relays the last discovery found for the group.", "group"),
		short:      f.gaugeVec("instances_short", "Tor instances of the group's share it went without (tor.max-instances taken).", "group"),
		discovered: f.gauge("discovery_timestamp_seconds", "When the last Tor relay discovery was planned (unix seconds)."),
		cpu:        f.counterVec("instance_cpu_seconds_total", "CPU time of each Tor instance (its unit's cgroup, or its process).", "group", "port"),
		memory:     f.gaugeVec("instance_memory_bytes", "Memory of each Tor instance (its unit's cgroup memory.current, or its process's RSS).", "group", "port"),
		traffic:    f.counterVec("traffic_bytes_total", "Bytes the group's Tor instances read and wrote (GETINFO traffic/read, traffic/written), summed.", "group", "direction"),
		last:       map[int]instanceTotals{},
	}
	return t
}

// Resources records one instance's CPU seconds and memory bytes as its
// cgroup or process reports them (totals since it started). Its series
// carry the port, bounded by tor.max-instances; Retain drops gone ones.
func (t *TorMetrics) Resources(port int, group string, cpuSeconds float64, memoryBytes int64) {
	if t == nil || port < 1 || port > 65535 {
		return
	}
	g, p := t.m.groups.value(group), strconv.Itoa(port)
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.entry(port, g)
	t.cpu.WithLabelValues(g, p).Add(grown(l.cpu, cpuSeconds, l.haveCPU))
	l.cpu, l.haveCPU = cpuSeconds, true
	t.last[port] = l
	t.memory.WithLabelValues(g, p).Set(float64(memoryBytes))
}

// Traffic records the bytes one instance read and wrote since it started
// (GETINFO traffic/read, traffic/written); the group's counters grow by
// what is new.
func (t *TorMetrics) Traffic(port int, group string, read, written uint64) {
	if t == nil || port < 1 || port > 65535 {
		return
	}
	g := t.m.groups.value(group)
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.entry(port, g)
	t.traffic.WithLabelValues(g, "read").Add(grown(float64(l.read), float64(read), l.haveTraffic))
	t.traffic.WithLabelValues(g, "written").Add(grown(float64(l.written), float64(written), l.haveTraffic))
	l.read, l.written, l.haveTraffic = read, written, true
	t.last[port] = l
}

// Retain forgets the per-instance series of every port not in ports (the
// instances that run now), so a stopped instance's series go away.
func (t *TorMetrics) Retain(ports []int) {
	if t == nil {
		return
	}
	keep := make(map[int]bool, len(ports))
	for _, p := range ports {
		keep[p] = true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for port, l := range t.last {
		if keep[port] {
			continue
		}
		t.forget(port, l.group)
	}
}

// entry is port's totals under group g; a port that served another group
// before starts over (its old series go). Callers hold t.mu.
func (t *TorMetrics) entry(port int, g string) instanceTotals {
	l, ok := t.last[port]
	if ok && l.group != g {
		t.forget(port, l.group)
		ok = false
	}
	if !ok {
		l = instanceTotals{group: g}
	}
	return l
}

// forget drops port's per-instance series and totals. Callers hold t.mu.
func (t *TorMetrics) forget(port int, group string) {
	p := strconv.Itoa(port)
	t.cpu.DeleteLabelValues(group, p)
	t.memory.DeleteLabelValues(group, p)
	delete(t.last, port)
}

// grown is what a running total added since it was prev: the difference,
// or all of it on the first reading or when it shrank (the instance
// restarted and counts from zero again).
func grown(prev, cur float64, seen bool) float64 {
	if cur < 0 {
		return 0
	}
	if seen && cur >= prev {
		return cur - prev
	}
	return cur
}

// Instances sets a group's running and bootstrapped instance counts.
func (t *TorMetrics) Instances(group string, active, bootstrapped int) {
	if t == nil {
		return
	}
	t.pair(t.active, t.boot, group, active, bootstrapped)
}

// pair sets two per-group gauges of one observation under one bounded
// group label.
func (t *TorMetrics) pair(a, b *prometheus.GaugeVec, group string, x, y int) {
	g := t.m.groups.value(group)
	a.WithLabelValues(g).Set(float64(x))
	b.WithLabelValues(g).Set(float64(y))
}

// Exits sets how many usable exit relays a group has.
func (t *TorMetrics) Exits(group string, n int) {
	if t == nil {
		return
	}
	t.exits.WithLabelValues(t.m.groups.value(group)).Set(float64(n))
}

// Plan sets what the last discovery found for a group: its usable exits
// and how many instances of its share it went without.
func (t *TorMetrics) Plan(group string, usable, short int) {
	if t == nil {
		return
	}
	t.pair(t.usable, t.short, group, usable, short)
}

// Discovered sets when the last discovery ran (zero: never, left unset).
func (t *TorMetrics) Discovered(at time.Time) {
	if t == nil || at.IsZero() {
		return
	}
	t.discovered.Set(float64(at.UnixMilli()) / 1e3)
}
