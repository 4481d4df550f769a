package metrics

import "github.com/prometheus/client_golang/prometheus"

// TorMetrics records the Tor instances. A nil *TorMetrics records nothing.
type TorMetrics struct {
	m            *Metrics
	active, boot *prometheus.GaugeVec
	exits        *prometheus.GaugeVec
}

func newTorMetrics(m *Metrics) *TorMetrics {
	t := &TorMetrics{
		m: m,
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "tor", Name: "instances_active",
			Help: "Tor instances running, by group.",
		}, []string{"group"}),
		boot: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "tor", Name: "instances_bootstrapped",
			Help: "Tor instances bootstrapped to 100%, by group.",
		}, []string{"group"}),
		exits: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "tor", Name: "exits",
			Help: "Usable Tor exit relays known for the group.",
		}, []string{"group"}),
	}
	m.reg.MustRegister(t.active, t.boot, t.exits)
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
