package main

import (
	"context"
	"flag"
	"fmt"
	"net"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/metrics"
	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/sd"
	"github.com/proxypool/proxypool/internal/store"
)

// mainListener is the FileDescriptorName of the mixed port in
// proxy-gateway.socket; pinned ports are named "port-<group>",
// "port-upstream-<id>" for a pinned single upstream, "port-<port number>"
// for one serving the whole pool (names users see in logs and the
// listener label of metrics).
const mainListener = "main"

func runGateway(ctx context.Context, g *globals, args []string) error {
	var user bool
	e, err := setup(g, "gateway", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&user, "user", false, "listen for PoolChanged on the session bus instead of the system bus")
	})
	if err != nil {
		return err
	}
	// The probe owns the store; the gateway reads snapshots from it and
	// records only what it must: upstreams it ejected, so the probe looks at
	// them now.
	st, err := e.openStore(ctx, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	notify := make(chan struct{}, 1)
	go watchPoolChanged(ctx, e, !user, notify)
	m := e.newMetrics()
	serveMetrics(ctx, e, m, e.cfg.Metrics.GatewayListen, func() error { _, err := st.Version(ctx); return err })
	live := &liveGateway{}
	reloadOn(ctx, g, e, st, "gateway", gatewayLive, gatewayUses, live.apply)
	return serveGateway(ctx, e, st, notify, m.Gateway(), sd.Ready, live)
}

// watchPoolChanged turns D-Bus PoolChanged signals into reload requests. The
// pool polls the store's version anyway, so a missing bus only costs latency.
func watchPoolChanged(ctx context.Context, e *env, system bool, notify chan<- struct{}) {
	c, err := control.Dial(ctx, system)
	if err != nil {
		e.log.WithField(logging.FieldComponent, "gateway").Infof("no D-Bus (%v): reloading the pool by polling the store", err)
		return
	}
	defer c.Close()
	ch, err := c.WatchPoolChanged(ctx)
	if err != nil {
		return
	}
	for range ch {
		select {
		case notify <- struct{}{}:
		default:
		}
	}
}

func poolGroups(e *env) []pool.Group {
	var out []pool.Group
	for name, gr := range e.cfg.Groups {
		out = append(out, pool.Group{Name: name, Countries: gr.Countries, ExcludeCountries: gr.ExcludeCountries,
			Types: gr.Types, Sources: gr.Sources})
	}
	seen := map[string]bool{}
	for _, p := range e.cfg.Gateway.Ports {
		if p.Upstream != "" && !seen[p.Upstream] {
			seen[p.Upstream] = true // two ports may pin one upstream: one group
			out = append(out, pool.Group{Name: pinnedName(p.Upstream), IDs: []string{p.Upstream}})
		}
	}
	return out
}

// groupMembers is poolGroups for list --group.
func groupMembers(e *env) map[string]store.Members {
	out := map[string]store.Members{}
	for _, g := range poolGroups(e) {
		out[g.Name] = store.Members{Name: g.Name, Countries: g.Countries, ExcludeCountries: g.ExcludeCountries, Types: g.Types, Sources: g.Sources, IDs: g.IDs}
	}
	return out
}

// pinnedName is the group of a port pinned to one upstream: what a client
// reads when that upstream is down ("no healthy upstream in group
// upstream-<id>").
func pinnedName(id string) string { return "upstream-" + id }

// listenerPlan names every listener: the mixed port and each pinned port.
func listenerPlan(e *env) (want map[string]string, ports map[string]string) {
	want = map[string]string{mainListener: e.cfg.Gateway.Listen}
	ports = map[string]string{}
	for _, p := range e.cfg.Gateway.Ports {
		group := p.Group
		if p.Upstream != "" {
			group = pinnedName(p.Upstream)
		}
		_, port, _ := net.SplitHostPort(p.Listen)
		name := "port-" + group
		switch _, dup := want[name]; {
		case group == "":
			name = "port-" + port
		case dup:
			name += "-" + port
		}
		want[name] = p.Listen
		ports[name] = group
	}
	return want, ports
}

// serveGateway runs pool + gateway until ctx ends. ready is called once every
// listener is served and the pool is loaded.
// live, when set, is handed the pool and gateway for config reloads.
func serveGateway(ctx context.Context, e *env, st *store.Store, notify <-chan struct{}, gm *metrics.GatewayMetrics, ready func() error, live *liveGateway) error {
	log := e.log.WithField(logging.FieldComponent, "gateway")
	if n, err := gateway.RaiseFileLimit(); err == nil {
		log.Debugf("file descriptor limit %d", n)
	}
	gc := e.cfg.Gateway
	p, err := pool.New(pool.Options{
		Loader: st, Notify: notify, Groups: poolGroups(e), Strategy: gc.Strategy,
		EjectAfter: gc.EjectAfter, SessionTTL: gc.SessionTTL, MaxSessions: gc.MaxSessions,
		EjectShare: gc.EjectClientShare, EjectWindow: gc.EjectClientWindow,
		// Only an ejected upstream reaches the store (its probe re-checks
		// it now): a single failed request does not demote an upstream.
		OnEject: st.Submit,
		Log:     e.log.WithField(logging.FieldComponent, "pool"),
	})
	if err != nil {
		return fmt.Errorf("%s: %w", e.cfg.Pos("gateway"), err)
	}
	if err := p.Load(ctx); err != nil {
		return fmt.Errorf("loading the pool: %w", err)
	}
	go p.Run(ctx)
	d := dial.New(dial.Options{Logger: e.log.WithField(logging.FieldComponent, "dial"), DialTimeout: gc.DialTimeout})
	defer d.Close()

	want, ports := listenerPlan(e)
	lns, err := sd.Listeners(want)
	if err != nil {
		return fmt.Errorf("%s: gateway listeners: %w", e.cfg.Pos("gateway.listen"), err)
	}
	grouped := map[string][]net.Listener{}
	for name, ln := range lns {
		grouped[name] = append(grouped[name], ln)
		log.Infof("listening on %s (%s)", ln.Addr(), name)
	}
	users := map[string]string{}
	for _, u := range gc.Auth.Users {
		users[u.Username] = u.Password
	}
	infoHeader := ""
	if gc.DebugHeader {
		infoHeader = "X-Proxypool-Upstream"
	}
	gw, err := gateway.New(gateway.Options{
		Picker: p, Dialer: d, Observer: gm,
		Classify: dial.Classify,
		Log:      log, Ports: ports, Users: users, AllowOpen: gc.AllowOpen,
		Usernames:         gateway.UsernameLimits{SessionID: gc.MaxSessionID, TTL: gc.MaxSessionTTL},
		MaxConnsPerClient: gc.MaxConnsPerClient, AuthDelayMax: gc.AuthDelayMax,
		MaxTries: gc.MaxTries, TotalTimeout: gc.TotalTimeout, DialTimeout: gc.DialTimeout,
		HandshakeTimeout: gc.HandshakeTimeout, IdleTimeout: gc.IdleTimeout, MaxConns: gc.MaxConns,
		InfoHeader: infoHeader,
		OnReady: func() {
			log.Infof("gateway ready: %d healthy upstreams", p.Len())
			if ready != nil {
				ready()
			}
		},
	})
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return fmt.Errorf("%s: %w", e.cfg.Pos("gateway"), err)
	}
	live.set(p, gw)
	defer sd.Stopping()
	return gw.Run(ctx, grouped)
}
