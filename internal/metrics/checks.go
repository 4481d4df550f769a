package metrics

import "github.com/prometheus/client_golang/prometheus"

// CheckMetrics records the checks made through healthy upstreams (target
// and speed checks): per target, never per upstream. A nil *CheckMetrics
// records nothing.
type CheckMetrics struct {
	targets *limiter

	checked  *prometheus.GaugeVec
	passing  *prometheus.GaugeVec
	outages  *prometheus.CounterVec
	measured prometheus.Gauge
	bytes    prometheus.Counter
}

func newCheckMetrics(m *Metrics) *CheckMetrics {
	f := family{m.reg, "checks"}
	c := &CheckMetrics{
		targets:  newLimiter(m.opts.MaxLabelValues, "none", m.opts.Targets),
		checked:  f.gaugeVec("target_upstreams", "Upstreams the target's last pass checked.", "target"),
		passing:  f.gaugeVec("target_passing", "Upstreams passing the target in its last pass (an outage pass keeps the one before).", "target"),
		outages:  f.counterVec("target_outages_total", "Passes in which the target failed through (nearly) every upstream: its own outage, no upstream marked.", "target"),
		measured: f.gauge("speed_measured", "Upstreams whose throughput the last speed pass measured."),
		bytes:    f.counter("speed_bytes_total", "Bytes the speed checks moved through upstreams, both ways."),
	}
	for _, t := range m.opts.Targets {
		c.outages.WithLabelValues(c.targets.value(t))
	}
	return c
}

// Checks is the target and speed checks' recorder.
func (m *Metrics) Checks() *CheckMetrics { return m.checks }

// TargetPass records one finished pass of target: upstreams checked and
// passing; outage when the pass was the target's outage.
func (c *CheckMetrics) TargetPass(target string, checked, passing int, outage bool) {
	if c == nil {
		return
	}
	t := c.targets.value(target)
	if outage {
		c.outages.WithLabelValues(t).Inc()
		return
	}
	c.checked.WithLabelValues(t).Set(float64(checked))
	c.passing.WithLabelValues(t).Set(float64(passing))
}

// SpeedPass records one finished speed pass: upstreams measured, bytes
// moved.
func (c *CheckMetrics) SpeedPass(measured int, bytes int64) {
	if c == nil {
		return
	}
	c.measured.Set(float64(measured))
	c.bytes.Add(float64(bytes))
}
