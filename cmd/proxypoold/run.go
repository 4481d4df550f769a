package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/manager"
	"github.com/proxypool/proxypool/internal/sd"
	"github.com/proxypool/proxypool/internal/slo"
	"github.com/proxypool/proxypool/internal/source"
)

// runAll is `proxypoold run`: refresh, probe, gateway (and tor instances as
// supervised children when tor is enabled) in one foreground process, wired
// in-process instead of over D-Bus.
func runAll(ctx context.Context, g *globals, args []string) error {
	if err := subFlags(g, "run", args, nil); err != nil {
		return err
	}
	e, err := load(g)
	if err != nil {
		return err
	}
	log := e.log.WithField(logging.FieldComponent, "run")
	notify := make(chan struct{}, 1)
	cp := newControlPlane(e) // optional D-Bus control on the session bus (dbus.go)
	st, err := e.openStore(ctx, func(v uint64) {
		select {
		case notify <- struct{}{}:
		default:
		}
		cp.onChange(v)
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
	pl := &probeLoop{e: e, st: st, d: d, trigger: make(chan struct{}, 1), OnProgress: cp.onProgress}
	m := e.newMetrics() // one endpoint for everything in this process
	var tm *torManager  // the tor children, shared by torLoop and the SLO guard (slotor.go)
	var tor manager.Tor // proxypoolctl tor …, when a session bus exists
	var scaler slo.TorScaler
	if e.cfg.Tor.Enabled {
		tm = newTorManager(ctx, e, st)
		ctl := &daemonTor{e: e, st: st, dataDir: e.cfg.Tor.DataDir}
		tor, scaler = ctl, newTorScaler(ctl, tm.regenerate) // torsys.go
		go rotateTor(ctx, ctl)
	}
	if guard := startObservers(ctx, e, st, pl, m, scaler); guard != nil {
		cp.floors = floorsOf(guard)
	}
	if sessionBusConfigured() { // proxypoolctl --user reaches `run` when a session bus exists; never fatal
		cp.start(ctx, e, st, pl, false, tor)
	}

	start("gateway", func() error { return serveGateway(ctx, e, st, notify, m.Gateway(), sd.Ready) })
	start("refresh", func() error { refreshLoop(ctx, e, st, pl.Trigger); return nil })
	start("probe", func() error { return pl.run(ctx) })
	if e.cfg.Tor.Enabled {
		start("tor", func() error { return torLoop(ctx, e, tm) })
	}
	wg.Wait()
	return firstErr
}

// refreshLoop refreshes at start and then every refresh.interval; each
// source's own min-interval still applies.
func refreshLoop(ctx context.Context, e *env, st source.Sink, added func()) {
	t := time.NewTicker(e.cfg.Refresh.Interval)
	defer t.Stop()
	for {
		sums := refreshOnce(ctx, e, st, false)
		for _, s := range sums {
			if s.New > 0 {
				added()
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// torLoop generates the tor instances as supervised children (through
// tm, which the SLO guard scales up between runs) and re-discovers exits
// every tor.refresh.
func torLoop(ctx context.Context, e *env, tm *torManager) error {
	defer tm.stop()
	t := time.NewTicker(e.cfg.Tor.Refresh)
	defer t.Stop()
	for {
		if _, err := tm.generate(ctx); err != nil && ctx.Err() == nil {
			tm.log.WithError(err).Warn("tor generation failed; keeping the instances that run")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
