package metrics

import (
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
	}
	return t
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
