package main

import (
	"context"
	"errors"
	"sync"

	"github.com/proxypool/proxypool/internal/api"
	"github.com/proxypool/proxypool/internal/checks"
	"github.com/proxypool/proxypool/internal/clashbackend"
	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/manager"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/sd"
	"github.com/proxypool/proxypool/internal/slo"
	"github.com/proxypool/proxypool/internal/torops"
)

// runAll is `proxypoold run`: refresh, probe, gateway (and tor instances as
// supervised children when tor is enabled) in one foreground process, wired
// in-process instead of over D-Bus.
func runAll(ctx context.Context, g *globals, args []string) error {
	e, err := setup(g, "run", args, nil)
	if err != nil {
		return err
	}
	log := e.log.WithField(logging.FieldComponent, "run")
	notify := make(chan struct{}, 1)
	cp := manager.NewPlane(e.log.WithField(logging.FieldComponent, "control")) // optional D-Bus control on the session bus
	st, err := e.openStore(ctx, func(v uint64) {
		poke(notify)
		cp.OnChange(v)
	})
	if err != nil {
		return err
	}
	defer st.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var firstErr error
	var once sync.Once
	fail := func(what string, err error) {
		if err == nil || errors.Is(err, context.Canceled) {
			return
		}
		once.Do(func() { firstErr = err; log.WithError(err).Errorf("%s stopped", what); cancel() })
	}
	start := func(what string, f func() error) {
		wg.Add(1)
		go func() { defer wg.Done(); fail(what, f()) }()
	}

	d := dial.New(dial.Options{Logger: e.log.WithField(logging.FieldComponent, "dial")})
	defer d.Close()
	pl := &probeLoop{e: e, st: st, d: d, trigger: make(chan struct{}, 1), swap: make(chan *probe.Prober, 1), checksSwap: make(chan *checks.Scheduler, 1), OnProgress: func(p probe.Progress) { cp.ProbeProgress(p.Done, p.Total, p.Finished) }}
	m := e.newMetrics() // one endpoint for everything in this process
	pl.checkMetrics = m.Checks()
	var sup *torops.Supervisor // the tor children, shared by their loop and the SLO guard
	var tor manager.Tor        // proxypoolctl tor …, when a session bus exists
	var scaler slo.TorScaler
	var ops *torops.Tor
	if e.cfg.Tor.Enabled {
		if ops, err = torOps(e, st, false); err != nil {
			return err
		}
		sup = ops.Supervise(ctx, e.cfg.Tor.Binary)
		tor, scaler = ops, sup.Scaler()
		go ops.Rotate(ctx)
	}
	refresher := e.refresher(st, pl.Trigger) // the timer's and proxypoolctl refresh's
	mo := manager.Options{Store: st, Checker: pl, Refresher: refresher, Tor: tor, Groups: groupMembers(e)}
	if guard := startObservers(ctx, e, st, pl, m, scaler, ops); guard != nil {
		mo.Floors = floorsOf(guard)
	}
	jobs := api.NewJobs()
	mo.Emit = jobs.Emit
	apiLn := apiListener(e, false)
	var mgr *manager.Manager
	if manager.SessionBusConfigured() { // proxypoolctl --user reaches `run` when a session bus exists; never fatal
		mgr = cp.Start(ctx, mo, false)
	} else {
		mgr = cp.Manage(ctx, mo) // for the HTTP API: proxypoolctl's way in without a bus
	}
	// One pool for the gateway and the Clash API: a dashboard's pin is
	// the gateway's, its connections the gateway's tunnels.
	p, err := openPool(ctx, e, st, notify, m.Gateway())
	if err != nil {
		return err
	}
	tun := clashbackend.NewTunnels()
	live := &liveGateway{}
	if apiLn != nil {
		clash, b, err := clashHandler(e, st, p, d, tun)
		if err != nil {
			apiLn.Close()
			return err
		}
		live.clash = b
		start("api", func() error { return serveAPI(ctx, e, apiLn, mgr, jobs, clash) })
	}

	reloadOn(ctx, g, e, st, "run", runKeys, func(ctx context.Context, next *env, changed []string) error {
		if err := applyProbe(pl, next, changed); err != nil {
			return err
		}
		if err := live.apply(ctx, next, changed); err != nil {
			return err
		}
		applySources(ctx, next, changed, refresher)
		return nil
	})
	start("gateway", func() error { return servePool(ctx, e, p, m.Gateway(), tun, sd.Ready, live) })
	start("refresh", func() error { refresher.Loop(ctx, e.cfg.Refresh.Interval); return nil })
	start("probe", func() error { return pl.run(ctx) })
	if sup != nil {
		start("tor", func() error { return sup.Run(ctx, e.cfg.Tor.Refresh) })
	}
	wg.Wait()
	return firstErr
}
