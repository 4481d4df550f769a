package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every proxypool metric.
const Namespace = "proxypool"

// PoolGroup is the group label of the whole pool's SLO floor (Floor with
// group "").
const PoolGroup = "_pool"

// Options bound the label values. Zero values take the defaults.
type Options struct {
	// Version goes into proxypool_build_info.
	Version string
	// Sources and Groups are the configured names (config sources[].name,
	// groups keys). With them set, any other name is counted as "other";
	// without, the first MaxLabelValues names seen pass.
	Sources []string
	Groups  []string
	// Targets are the probe.targets names (the checks' target label).
	Targets []string
	// MaxCountries is how many countries (the largest) get their own
	// label value in the pool's geo distribution; the rest sum into
	// "other". Default 50.
	MaxCountries int
	// MaxLabelValues bounds every other open-ended label (listener,
	// protocol, outcome, cause, type, …). Default 64.
	MaxLabelValues int
}

// Metrics is proxypool's Prometheus registry and its recorders. Create it
// with New; its methods are safe for concurrent use.
type Metrics struct {
	reg  *prometheus.Registry
	opts Options

	sources, groups *limiter

	gateway *GatewayMetrics
	probe   *ProbeMetrics
	source  *SourceMetrics
	tor     *TorMetrics
	slo     *SLOMetrics
	checks  *CheckMetrics
	pool    *poolCollector

	poolErrors prometheus.Counter
}

// New returns Metrics with the default Options.
func New() *Metrics { return NewWith(Options{}) }

// NewWith returns Metrics with its own registry holding the Go runtime and
// process collectors and every proxypool metric.
func NewWith(o Options) *Metrics {
	if o.MaxCountries <= 0 {
		o.MaxCountries = 50
	}
	if o.MaxLabelValues <= 0 {
		o.MaxLabelValues = 64
	}
	if o.Version == "" {
		o.Version = "unknown"
	}
	groups := o.Groups
	if len(groups) > 0 {
		groups = append(append([]string(nil), groups...), PoolGroup)
	}
	m := &Metrics{
		reg:     prometheus.NewRegistry(),
		opts:    o,
		sources: newLimiter(o.MaxLabelValues, "none", o.Sources),
		groups:  newLimiter(o.MaxLabelValues, PoolGroup, groups),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Always 1; the version label says which proxypool runs.",
		ConstLabels: prometheus.Labels{"version": clean(o.Version)},
	})
	build.Set(1)
	m.poolErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "pool_snapshot_errors_total",
		Help: "Pool snapshots PollPool failed to take.",
	})
	m.reg.MustRegister(build, m.poolErrors)

	m.pool = newPoolCollector(m)
	m.reg.MustRegister(m.pool)
	m.gateway = newGatewayMetrics(m)
	m.probe = newProbeMetrics(m)
	m.source = newSourceMetrics(m)
	m.tor = newTorMetrics(m)
	m.slo = newSLOMetrics(m)
	m.checks = newCheckMetrics(m)
	return m
}

// Registry is the registry behind Handler (for tests and for registering
// a collector of one's own).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Gateway returns the gateway's recorder.
func (m *Metrics) Gateway() *GatewayMetrics { return m.gateway }

// Probe returns the probe's recorder.
func (m *Metrics) Probe() *ProbeMetrics { return m.probe }

// Source returns the refresher's recorder.
func (m *Metrics) Source() *SourceMetrics { return m.source }

// Tor returns the Tor instances' recorder.
func (m *Metrics) Tor() *TorMetrics { return m.tor }

// SLO returns the pool floors' recorder.
func (m *Metrics) SLO() *SLOMetrics { return m.slo }

// Handler serves /metrics (the registry, text or protobuf as the scraper
// asks) and /healthz (200 "ok" when health returns nil, else 503 with the
// error; a nil health is always ok).
func (m *Metrics) Handler(health func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(m.reg,
		promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, ErrorHandling: promhttp.ContinueOnError})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if health != nil {
			if err := health(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "unhealthy: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<html><head><title>proxypool</title></head><body><h1>proxypool</h1><p><a href="/metrics">/metrics</a> <a href="/healthz">/healthz</a></p></body></html>`+"\n")
	})
	return mux
}

// Serve listens on addr and serves Handler(health) until ctx is done, then
// shuts down gracefully. It returns nil after a shutdown caused by ctx.
func (m *Metrics) Serve(ctx context.Context, addr string, health func() error) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for metrics on %s: %w", addr, err)
	}
	return m.ServeListener(ctx, ln, health)
}

// ServeListener is Serve on a listener the caller opened (socket
// activation, tests). It closes ln.
func (m *Metrics) ServeListener(ctx context.Context, ln net.Listener, health func() error) error {
	srv := &http.Server{
		Handler:           m.Handler(health),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serving metrics on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving metrics on %s: %w", ln.Addr(), err)
	}
	return nil
}

// PollPool calls snap every interval (and once at once) and hands the
// result to SetPool until ctx is done; it returns ctx's error. A failed
// snapshot keeps the previous one and counts in
// proxypool_pool_snapshot_errors_total.
func (m *Metrics) PollPool(ctx context.Context, every time.Duration, snap func(context.Context) (PoolSnapshot, error)) error {
	if every <= 0 {
		every = 15 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s, err := snap(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			m.poolErrors.Inc()
		} else {
			m.SetPool(s)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func seconds(d time.Duration) float64 { return d.Seconds() }

func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}
