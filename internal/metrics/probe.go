package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ProbeMetrics records the health checker. A nil *ProbeMetrics records
// nothing.
type ProbeMetrics struct {
	outcomes *limiter

	checks   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	backlog  prometheus.Gauge
	done     prometheus.Gauge
	total    prometheus.Gauge
	healthy  prometheus.Gauge
}

func newProbeMetrics(m *Metrics) *ProbeMetrics {
	f := family{m.reg, "probe"}
	p := &ProbeMetrics{
		outcomes: newLimiter(32, "unknown", nil),
		checks:   f.counterVec("checks_total", "Checks finished, by outcome: ok, or the failure's cause (timeout, refused, certificate, routes_locally, …).", "outcome"),
		duration: f.histogramVec("check_duration_seconds", "Duration of one check, by result (ok or fail).", latencyBuckets, "result"),
		backlog:  f.gauge("backlog", "Upstreams due for a check and not yet started."),
		done:     f.gauge("pass_done", "Checks finished in the current (or last) pass."),
		total:    f.gauge("pass_size", "Upstreams in the current (or last) pass."),
		healthy:  f.gauge("pass_healthy", "Upstreams found healthy so far in the current (or last) pass."),
	}
	p.checks.WithLabelValues("ok")
	p.duration.WithLabelValues("ok")
	p.duration.WithLabelValues("fail")
	return p
}

// CheckDone counts one finished check: outcome is "" or "ok" for a pass,
// else its failure class; d is how long it took.
func (p *ProbeMetrics) CheckDone(outcome string, d time.Duration) {
	if p == nil {
		return
	}
	result := "fail"
	if outcome == "" || outcome == "ok" {
		outcome, result = "ok", "ok"
	}
	p.checks.WithLabelValues(p.outcomes.value(outcome)).Inc()
	p.duration.WithLabelValues(result).Observe(seconds(d))
}

// Backlog sets the number of upstreams waiting for a check.
func (p *ProbeMetrics) Backlog(n int) {
	if p == nil {
		return
	}
	p.backlog.Set(float64(n))
}

// Pass reports the progress of a check pass: done of total checked,
// healthy of those found healthy.
func (p *ProbeMetrics) Pass(done, total, healthy int) {
	if p == nil {
		return
	}
	p.done.Set(float64(done))
	p.total.Set(float64(total))
	p.healthy.Set(float64(healthy))
}
