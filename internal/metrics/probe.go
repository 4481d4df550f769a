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
	p := &ProbeMetrics{
		outcomes: newLimiter(32, "unknown", nil),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "probe", Name: "checks_total",
			Help: "Checks finished, by outcome: ok, or the failure class (timeout, refused, judge, transparent, …).",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "probe", Name: "check_duration_seconds",
			Help:    "Duration of one check, by result (ok or fail).",
			Buckets: latencyBuckets,
		}, []string{"result"}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "probe", Name: "backlog",
			Help: "Upstreams due for a check and not yet started.",
		}),
		done: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "probe", Name: "pass_done",
			Help: "Checks finished in the current (or last) pass.",
		}),
		total: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "probe", Name: "pass_size",
			Help: "Upstreams in the current (or last) pass.",
		}),
		healthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "probe", Name: "pass_healthy",
			Help: "Upstreams found healthy so far in the current (or last) pass.",
		}),
	}
	m.reg.MustRegister(p.checks, p.duration, p.backlog, p.done, p.total, p.healthy)
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
