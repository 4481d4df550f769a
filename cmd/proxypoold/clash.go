package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/proxypool/proxypool/internal/clashapi"
	"github.com/proxypool/proxypool/internal/clashbackend"
	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/metrics"
	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/store"
)

// clashOptions is what the config says of the Clash controller: the
// gateway's main port for GET /configs, api.clash's limits, and the first
// judge as the delay tests' target unless api.clash.test-url names one.
func clashOptions(e *env, hub *clashapi.LogHub) clashapi.Options {
	cc := e.cfg.API.Clash
	o := clashapi.Options{Version: version, GroupLimit: cc.GroupLimit, PinTTL: cc.PinTTL, TestURL: cc.TestURL, Logs: hub}
	if o.TestURL == "" && len(e.cfg.Probe.Judges) > 0 {
		o.TestURL = e.cfg.Probe.Judges[0]
	}
	if host, port, err := net.SplitHostPort(e.cfg.Gateway.Listen); err == nil {
		o.MixedPort, _ = strconv.Atoi(port)
		ip := net.ParseIP(host)
		o.AllowLAN = host != "localhost" && (ip == nil || !ip.IsLoopback())
	}
	return o
}

// clashHandler is the Clash external-controller over this process's
// store, pool and dialer; gw reports the gateway's tunnels and numbers
// (nil: none). Its log hub streams this process's log to GET /logs. The
// backend is returned too, for a reload to hand it the new listeners.
func clashHandler(e *env, st *store.Store, p clashbackend.Pool, d *dial.Pool, gw clashbackend.Gateway) (http.Handler, *clashbackend.Backend, error) {
	b, err := clashbackend.New(clashbackend.Options{Store: st, Pool: p, Dialer: d, Gateway: gw, Ports: clashPorts(e)})
	if err != nil {
		return nil, nil, fmt.Errorf("wiring the Clash API: %w", err)
	}
	hub := clashapi.NewLogHub()
	e.log.AddHook(hub)
	return clashapi.New(b, clashOptions(e, hub)), b, nil
}

// clashPorts are the gateway's listeners (listenerPlan) as the Clash API
// lists them: each a group of its own, pinned through its pool group.
func clashPorts(e *env) []clashbackend.Port {
	want, ports := listenerPlan(e)
	var bp []clashbackend.Port
	for name, addr := range want {
		bp = append(bp, clashbackend.Port{Listen: addr, Group: ports[name]})
	}
	return bp
}

// remotePins is the probe's pool under systemd: its members are the
// gateway's (one store), but a pin would hold in this process only, where
// no client is served, so PUT /proxies/{group} answers why not.
type remotePins struct{ *pool.Pool }

func (remotePins) Pin(group, id string, ttl time.Duration) error {
	what := "the whole pool"
	if group != "" {
		what = "group " + group
	}
	return fmt.Errorf("pinning %s: the gateway runs in another process (proxy-gateway.service); pins apply under `proxypoold run` only", what)
}

// metricsGateway reads the separate gateway's numbers from its metrics
// endpoint (metrics.gateway-listen); nil when it has none.
func metricsGateway(e *env) clashbackend.Gateway {
	if !e.cfg.Metrics.Enabled || e.cfg.Metrics.GatewayListen == "" {
		return nil
	}
	return &clashbackend.MetricsGateway{URL: "http://" + e.cfg.Metrics.GatewayListen + "/metrics"}
}

// pgPollInterval is how often a pool on PostgreSQL polls the store's
// version: LISTEN brings changes at once, the poll is only the net under
// a listener that is reconnecting.
const pgPollInterval = 10 * time.Second

// openPool loads the pool from the store and keeps it current (notify, on
// PostgreSQL a LISTEN of its own, and polling the store's version) until
// ctx ends; gm, if set, records each load.
func openPool(ctx context.Context, e *env, st *store.Store, notify chan struct{}, gm *metrics.GatewayMetrics) (*pool.Pool, error) {
	if st.IsPostgres() {
		if notify == nil {
			notify = make(chan struct{}, 1)
		}
		go listenPool(ctx, e, st, notify)
	}
	po := poolOptions(e, st, notify)
	if st.IsPostgres() {
		po.PollInterval = pgPollInterval
	}
	// Only an ejected upstream reaches the store (its probe re-checks it
	// now): a single failed request does not demote an upstream.
	po.OnEject = st.Submit
	if gm != nil {
		po.OnLoad = gm.SnapshotLoaded
	}
	p, err := pool.New(po)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.cfg.Pos("gateway"), err)
	}
	if err := p.Load(ctx); err != nil {
		return nil, fmt.Errorf("loading the pool: %w", err)
	}
	go p.Run(ctx)
	return p, nil
}
