package metrics

import "github.com/prometheus/client_golang/prometheus"

// TorMetrics records the Tor instances. A nil *TorMetrics records nothing.
type TorMetrics struct {
	m            *Metrics
	active, boot *prometheus.GaugeVec
	exits        *prometheus.GaugeVec
}

func newTorMetrics(m *Metrics) *TorMetrics {
	f := family{m.reg, "tor"}
	t := &TorMetrics{
		m:      m,
		active: f.gaugeVec("instances_active", "Tor instances running, by group.", "group"),
		boot:   f.gaugeVec("instances_bootstrapped", "Tor instances bootstrapped to 100%, by group.", "group"),
		exits:  f.gaugeVec("exits", "Usable Tor exit relays known for the group.", "group"),
	}
	return t
}

// Instances sets a group's running and bootstrapped instance counts.
func (t *TorMetrics) Instances(group string, active, bootstrapped int) {
	if t == nil {
		return
	}
	g := t.m.groups.value(group)
	t.active.WithLabelValues(g).Set(float64(active))
	t.boot.WithLabelValues(g).Set(float64(bootstrapped))
}

// Exits sets how many usable exit relays a group has.
func (t *TorMetrics) Exits(group string, n int) {
	if t == nil {
		return
	}
	t.exits.WithLabelValues(t.m.groups.value(group)).Set(float64(n))
}
