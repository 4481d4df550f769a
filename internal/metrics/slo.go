package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SLOMetrics records the pool floors (min-healthy, min-exits) and what was
// done about a group below its floor. A nil *SLOMetrics records nothing.
type SLOMetrics struct {
	m          *Metrics
	kinds      *limiter
	minHealthy *prometheus.GaugeVec
	minExits   *prometheus.GaugeVec
	below      *prometheus.GaugeVec
	actions    *prometheus.CounterVec
}

func newSLOMetrics(m *Metrics) *SLOMetrics {
	f := family{m.reg, "slo"}
	s := &SLOMetrics{
		m:          m,
		kinds:      newLimiter(16, "other", nil),
		minHealthy: f.gaugeVec("min_healthy", "Configured floor of healthy upstreams, by group (_pool: the whole pool; 0: none).", "group"),
		minExits:   f.gaugeVec("min_exits", "Configured floor of distinct healthy exit IPs, by group (0: none).", "group"),
		below:      f.gaugeVec("below_floor", "1 while the group has fewer healthy upstreams or distinct exits than its floor, else 0.", "group"),
		actions:    f.counterVec("actions_total", "Actions taken for groups below their floor, by group and kind (recheck, refresh, newnym, instance).", "group", "kind"),
	}
	return s
}

// Floor records one evaluation of a group's floor: what it has (healthy
// upstreams, distinct healthy exits) and what it must have (0: no floor).
// Group "" is the whole pool. It also sets the group's
// proxypool_group_healthy_* gauges. Call it for every configured group on
// each evaluation, floor or not.
func (s *SLOMetrics) Floor(group string, healthy, exits, minHealthy, minExits int) {
	if s == nil {
		return
	}
	g := s.m.groups.value(group)
	below := (minHealthy > 0 && healthy < minHealthy) || (minExits > 0 && exits < minExits)
	s.minHealthy.WithLabelValues(g).Set(float64(minHealthy))
	s.minExits.WithLabelValues(g).Set(float64(minExits))
	v := 0.0
	if below {
		v = 1
	}
	s.below.WithLabelValues(g).Set(v)
	if group != "" {
		s.m.pool.setGroup(g, GroupHealth{Healthy: healthy, Exits: exits}, time.Now())
	}
}

// Action counts one action taken for a group below its floor; kind is
// recheck, refresh, newnym or instance.
func (s *SLOMetrics) Action(group, kind string) {
	if s == nil {
		return
	}
	s.actions.WithLabelValues(s.m.groups.value(group), s.kinds.value(kind)).Inc()
}
