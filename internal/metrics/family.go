package metrics

import "github.com/prometheus/client_golang/prometheus"

// family makes one subsystem's series, each named Namespace_sub_name and
// registered on reg as it is made, so a recorder lists each series once
// (name, help, labels) rather than in a literal and again in a register
// call.
type family struct {
	reg prometheus.Registerer
	sub string
}

func (f family) opts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: Namespace, Subsystem: f.sub, Name: name, Help: help}
}

func register[C prometheus.Collector](f family, c C) C {
	f.reg.MustRegister(c)
	return c
}

func (f family) counter(name, help string) prometheus.Counter {
	return register(f, prometheus.NewCounter(prometheus.CounterOpts(f.opts(name, help))))
}

func (f family) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return register(f, prometheus.NewCounterVec(prometheus.CounterOpts(f.opts(name, help)), labels))
}

func (f family) gauge(name, help string) prometheus.Gauge {
	return register(f, prometheus.NewGauge(prometheus.GaugeOpts(f.opts(name, help))))
}

func (f family) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return register(f, prometheus.NewGaugeVec(prometheus.GaugeOpts(f.opts(name, help)), labels))
}

func (f family) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	o := f.opts(name, help)
	return register(f, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: o.Namespace, Subsystem: o.Subsystem, Name: o.Name, Help: o.Help, Buckets: buckets}, labels))
}
