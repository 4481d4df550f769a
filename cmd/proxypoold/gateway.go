package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/proxypool/proxypool/internal/config"
	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/gateway/failover"
	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/metrics"
	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/sd"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/upstream"
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
	reloadOn(ctx, g, e, st, "gateway", gatewayKeys, live.apply)
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
		poke(notify)
	}
}

// poke asks for a reload without waiting: a request already pending
// absorbs this one.
func poke(notify chan<- struct{}) {
	select {
	case notify <- struct{}{}:
	default:
	}
}

// listenPool turns the store's PostgreSQL notifications into reload
// requests (the pool spaces its reloads, so a burst costs one or two).
func listenPool(ctx context.Context, e *env, st *store.Store, notify chan<- struct{}) {
	err := st.ListenPoolChanged(ctx, func() { poke(notify) })
	if err != nil {
		e.log.WithField(logging.FieldComponent, "pool").WithError(err).Warn("not listening for pool changes: polling the store")
	}
}

func poolGroups(e *env) []pool.Group {
	var out []pool.Group
	for name, gr := range e.cfg.Groups {
		g := pool.Group{Name: name, Countries: gr.Countries, ExcludeCountries: gr.ExcludeCountries,
			Types: gr.Types, Sources: gr.Sources, ASNs: asns(gr.ASN), ExcludeASNs: asns(gr.ExcludeASN),
			MinThroughput: float64(gr.MinThroughput), RequireTargets: gr.RequireTargets}
		for _, c := range gr.Class {
			g.Classes = append(g.Classes, upstream.Class(c))
		}
		out = append(out, g)
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
		m := store.Members{Name: g.Name, Countries: g.Countries, ExcludeCountries: g.ExcludeCountries, Types: g.Types, Sources: g.Sources,
			ASNs: g.ASNs, ExcludeASNs: g.ExcludeASNs, IDs: g.IDs}
		for _, c := range g.Classes {
			m.Classes = append(m.Classes, string(c))
		}
		out[g.Name] = m
	}
	return out
}

// asns is a group's AS numbers as the pool takes them.
func asns(in []config.ASN) []uint32 {
	var out []uint32
	for _, a := range in {
		out = append(out, uint32(a))
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

// poolOptions is the gateway section as the pool takes it.
func poolOptions(e *env, l pool.Loader, notify <-chan struct{}) pool.Options {
	gc := e.cfg.Gateway
	return pool.Options{
		Loader: l, Notify: notify, Groups: poolGroups(e), Strategy: gc.Strategy, Rotate: rotation(gc.RotateEvery),
		EjectAfter: gc.EjectAfter, SessionTTL: gc.SessionTTL, MaxSessions: gc.MaxSessions,
		EjectShare: gc.EjectClientShare, EjectWindow: gc.EjectClientWindow,
		Log: e.log.WithField(logging.FieldComponent, "pool"),
	}
}

func rotation(r config.Rotation) pool.Rotation {
	return pool.Rotation{Requests: r.Requests, Period: r.Period}
}

// portPickers gives every pinned port a picker of its own: its strategy
// (gateway.ports[].strategy, gateway.strategy when unset), with its own
// round-robin counters and sessions. The main port picks through the pool
// (absent from the map) unless a reload changed gateway.strategy or
// rotate-every from the pool's own. A listener in have whose picker has
// the strategy and rotation wanted keeps it (a reload keeps its counters
// and sessions); startup passes none.
func portPickers(e *env, p *pool.Pool, have map[string]failover.Picker) (map[string]failover.Picker, error) {
	gc := e.cfg.Gateway
	rot := rotation(gc.RotateEvery)
	pick := func(name, strategy string) (failover.Picker, error) {
		if pk, ok := have[name].(*pool.Picker); ok && samePicker(pk, strategy, rot) {
			return pk, nil
		}
		return p.NewPicker(strategy, rot)
	}
	out := map[string]failover.Picker{}
	if !samePicker(p.Default(), gc.Strategy, rot) {
		pk, err := pick(mainListener, gc.Strategy)
		if err != nil {
			return nil, fmt.Errorf("%s: gateway.strategy: %w", e.cfg.Pos("gateway.strategy"), err)
		}
		out[mainListener] = pk
	}
	want, _ := listenerPlan(e)
	for i, pt := range gc.Ports {
		for name, addr := range want {
			if name == mainListener || addr != pt.Listen {
				continue // listen addresses are unique (config validates)
			}
			pk, err := pick(name, pt.Strategy)
			if err != nil {
				key := fmt.Sprintf("gateway.ports[%d].strategy", i)
				return nil, fmt.Errorf("%s: %s: %w", e.cfg.Pos(key), key, err)
			}
			out[name] = pk
		}
	}
	return out, nil
}

// samePicker reports whether pk picks with strategy ("" is round-robin)
// and rot.
func samePicker(pk *pool.Picker, strategy string, rot pool.Rotation) bool {
	if strategy == "" {
		strategy = pool.RoundRobin
	}
	return pk.Strategy() == strategy && pk.Rotation() == rot
}

// serveGateway runs pool + gateway until ctx ends. ready is called once every
// listener is served and the pool is loaded.
// live, when set, is handed the pool and gateway for config reloads.
func serveGateway(ctx context.Context, e *env, st *store.Store, notify chan struct{}, gm *metrics.GatewayMetrics, ready func() error, live *liveGateway) error {
	p, err := openPool(ctx, e, st, notify, gm)
	if err != nil {
		return err
	}
	return servePool(ctx, e, p, gm, nil, ready, live)
}

// servePool serves the gateway over p (openPool) until ctx ends; tun, if
// set, hears of its tunnels (the Clash API's connections under `run`);
// live, if set, is handed the pool and gateway for config reloads.
func servePool(ctx context.Context, e *env, p *pool.Pool, gm *metrics.GatewayMetrics, tun gateway.Tunnels, ready func() error, live *liveGateway) error {
	log := e.log.WithField(logging.FieldComponent, "gateway")
	if n, err := gateway.RaiseFileLimit(); err == nil {
		log.Debugf("file descriptor limit %d", n)
	}
	d := dial.New(dial.Options{Logger: e.log.WithField(logging.FieldComponent, "dial"), DialTimeout: e.cfg.Gateway.DialTimeout})
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
	gwo := gatewayOptions(e, ports)
	gwo.Picker, gwo.Dialer, gwo.Observer, gwo.Classify, gwo.Log = p, d, gm, dial.Classify, log
	if tun != nil {
		gwo.Tunnels = tun
	}
	gwo.OnReady = func() {
		log.Infof("gateway ready: %d healthy upstreams", p.Len())
		if ready != nil {
			ready()
		}
	}
	pickers, err := portPickers(e, p, nil)
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return err
	}
	gwo.Pickers = pickers
	gw, err := gateway.New(gwo)
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return fmt.Errorf("%s: %w", e.cfg.Pos("gateway"), err)
	}
	live.set(p, gw, pickers)
	defer sd.Stopping()
	return gw.Run(ctx, grouped)
}

// poolOptions is what the config says of the pool; serveGateway adds the
// store, the notifier and the hooks. TestKeysReachTheirOptions reads it, so
// a key parsed and never passed on fails there.

// gatewayOptions is what the config says of the gateway (ports: the group
// of each pinned listener, from listenerPlan); serveGateway adds the
// picker, the dialer and the hooks.
func gatewayOptions(e *env, ports map[string]string) gateway.Options {
	gc := e.cfg.Gateway
	users := map[string]string{}
	for _, u := range gc.Auth.Users {
		users[u.Username] = u.Password
	}
	infoHeader := ""
	if gc.DebugHeader {
		infoHeader = "X-Proxypool-Upstream"
	}
	return gateway.Options{
		Ports: ports, Users: users, AllowOpen: gc.AllowOpen,
		Usernames:         gateway.UsernameLimits{SessionID: gc.MaxSessionID, TTL: gc.MaxSessionTTL},
		MaxConnsPerClient: gc.MaxConnsPerClient, AuthDelayMax: gc.AuthDelayMax,
		MaxTries: gc.MaxTries, MaxAttempts: gc.MaxAttempts, TotalTimeout: gc.TotalTimeout, DialTimeout: gc.DialTimeout,
		MinDialTimeout: config.MinAutoTry, TryTimeout: time.Duration(gc.UpstreamHandshakeTimeout),
		ClientTimeout: gc.ClientTimeout, IdleTimeout: gc.IdleTimeout, MaxConns: gc.MaxConns,
		InfoHeader: infoHeader,
	}
}
