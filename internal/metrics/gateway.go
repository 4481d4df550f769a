package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Dial and probe latencies: 5 ms … 10 s.
var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Client connections live from milliseconds to hours.
var connBuckets = []float64{.01, .05, .25, 1, 5, 15, 60, 300, 900, 3600}

// GatewayMetrics records the gateway. Its methods take plain values, so
// the gateway declares the interface it needs and never imports this
// package. A nil *GatewayMetrics records nothing.
type GatewayMetrics struct {
	listeners, protos, outcomes, causes *limiter

	opened    *prometheus.CounterVec
	active    *prometheus.GaugeVec
	conns     *prometheus.CounterVec
	connDur   *prometheus.HistogramVec
	tunnels   prometheus.Gauge
	dial      *prometheus.HistogramVec
	retries   prometheus.Counter
	bytes     *prometheus.CounterVec
	authRej   *prometheus.CounterVec
	authDel   *prometheus.CounterVec
	limited   *prometheus.CounterVec
	snapVer   prometheus.Gauge
	snapSize  prometheus.Gauge
	snapTook  prometheus.Gauge
	snapAt    prometheus.Gauge
	snapLoads prometheus.Counter
}

func newGatewayMetrics(m *Metrics) *GatewayMetrics {
	f := family{m.reg, "gateway"}
	n := m.opts.MaxLabelValues
	g := &GatewayMetrics{
		listeners: newLimiter(n, "default", nil),
		protos:    newLimiter(16, "unknown", nil),
		outcomes:  newLimiter(32, "unknown", nil),
		causes:    newLimiter(32, "other", nil),
		opened:    f.counterVec("connections_opened_total", "Client connections accepted, by listener and protocol.", "listener", "proto"),
		active:    f.gaugeVec("connections_active", "Client connections open now, by listener.", "listener"),
		conns:     f.counterVec("connections_total", "Client connections finished, by listener, protocol and outcome (ok, no_upstream, upstream_failed, timeout, client_error, auth_rejected, …).", "listener", "proto", "outcome"),
		connDur:   f.histogramVec("connection_duration_seconds", "Lifetime of finished client connections, by protocol.", connBuckets, "proto"),
		tunnels:   f.gauge("tunnels_active", "Established client-to-upstream tunnels now."),
		dial:      f.histogramVec("dial_duration_seconds", "Upstream dial (connect and handshake) latency, by cause: ok for a success, else the failure class.", latencyBuckets, "cause"),
		retries:   f.counter("retries_total", "Extra upstream dials after a failed one."),
		bytes:     f.counterVec("bytes_total", "Bytes relayed, by direction: up (client to upstream) or down.", "direction"),
		authRej:   f.counterVec("auth_rejected_total", "Client connections refused for bad or missing credentials, by listener.", "listener"),
		authDel:   f.counterVec("auth_delayed_total", "Credential refusals held back because their source kept failing (brute-force brake), by listener.", "listener"),
		limited:   f.counterVec("client_limited_total", "Client connections refused because their source IP held max-conns-per-client, by listener.", "listener"),
		snapVer:   f.gauge("snapshot_version", "Store version of the pool snapshot the gateway serves."),
		snapSize:  f.gauge("snapshot_upstreams", "Upstreams in the pool snapshot the gateway serves."),
		snapTook:  f.gauge("snapshot_load_seconds", "How long the last pool snapshot took to load."),
		snapAt:    f.gauge("snapshot_loaded_timestamp_seconds", "Unix time the last pool snapshot was loaded."),
		snapLoads: f.counter("snapshot_loads_total", "Pool snapshots loaded."),
	}
	// Series that should read 0 rather than be absent before traffic.
	g.bytes.WithLabelValues("up")
	g.bytes.WithLabelValues("down")
	g.dial.WithLabelValues("ok")
	return g
}

// ConnOpened counts an accepted client connection; pair it with ConnDone.
func (g *GatewayMetrics) ConnOpened(listener, proto string) {
	if g == nil {
		return
	}
	l := g.listeners.value(listener)
	g.opened.WithLabelValues(l, g.protos.value(proto)).Inc()
	g.active.WithLabelValues(l).Inc()
}

// ConnDone counts a finished client connection: its outcome ("ok" when
// the client got its tunnel or response) and its lifetime.
func (g *GatewayMetrics) ConnDone(listener, proto, outcome string, dur time.Duration) {
	if g == nil {
		return
	}
	l, p := g.listeners.value(listener), g.protos.value(proto)
	g.active.WithLabelValues(l).Dec()
	g.conns.WithLabelValues(l, p, g.outcomes.value(outcome)).Inc()
	g.connDur.WithLabelValues(p).Observe(seconds(dur))
}

// ActiveTunnels moves the open-tunnel gauge by delta (+1 established, -1
// closed).
func (g *GatewayMetrics) ActiveTunnels(delta int) {
	if g == nil {
		return
	}
	g.tunnels.Add(float64(delta))
}

// DialLatency observes one upstream dial: cause is "" or "ok" for a
// success, else the failure class (refused, timeout, reset, handshake, …).
func (g *GatewayMetrics) DialLatency(cause string, d time.Duration) {
	if g == nil {
		return
	}
	if cause == "" {
		cause = "ok"
	}
	g.dial.WithLabelValues(g.causes.value(cause)).Observe(seconds(d))
}

// Retry counts one failover dial.
func (g *GatewayMetrics) Retry() {
	if g == nil {
		return
	}
	g.retries.Inc()
}

// Bytes counts relayed bytes: up is client to upstream, down the reverse.
func (g *GatewayMetrics) Bytes(up, down int64) {
	if g == nil {
		return
	}
	if up > 0 {
		g.bytes.WithLabelValues("up").Add(float64(up))
	}
	if down > 0 {
		g.bytes.WithLabelValues("down").Add(float64(down))
	}
}

// AuthRejected counts a client refused for its credentials.
func (g *GatewayMetrics) AuthRejected(listener string) {
	if g == nil {
		return
	}
	g.authRej.WithLabelValues(g.listeners.value(listener)).Inc()
}

// AuthDelayed counts a credential refusal held back for its source's
// failures in a row.
func (g *GatewayMetrics) AuthDelayed(listener string) {
	if g == nil {
		return
	}
	g.authDel.WithLabelValues(g.listeners.value(listener)).Inc()
}

// ClientLimited counts a connection refused for its source's
// max-conns-per-client.
func (g *GatewayMetrics) ClientLimited(listener string) {
	if g == nil {
		return
	}
	g.limited.WithLabelValues(g.listeners.value(listener)).Inc()
}

// SnapshotLoaded records a pool snapshot reload: the store version it
// reflects, its size and how long loading took.
func (g *GatewayMetrics) SnapshotLoaded(version uint64, size int, took time.Duration) {
	if g == nil {
		return
	}
	g.snapVer.Set(float64(version))
	g.snapSize.Set(float64(size))
	g.snapTook.Set(seconds(took))
	g.snapAt.SetToCurrentTime()
	g.snapLoads.Inc()
}
