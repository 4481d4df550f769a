package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/proxypool/proxypool/internal/api"
	"github.com/proxypool/proxypool/internal/checks"
	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/manager"
	"github.com/proxypool/proxypool/internal/metrics"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/reload"
	"github.com/proxypool/proxypool/internal/sd"
	"github.com/proxypool/proxypool/internal/slo"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torops"
)

func runProbe(ctx context.Context, g *globals, args []string) error {
	var once, user bool
	e, err := setup(g, "probe", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&once, "once", false, "make one full pass over every due upstream, then exit")
		fs.BoolVar(&user, "user", false, "serve D-Bus control on the session bus instead of the system bus")
	})
	if err != nil {
		return err
	}
	cp := manager.NewPlane(e.log.WithField(logging.FieldComponent, "control")) // PoolChanged on every store change
	st, err := e.openStore(ctx, cp.OnChange)
	if err != nil {
		return err
	}
	defer st.Close()
	d := dial.New(dial.Options{Logger: e.log.WithField(logging.FieldComponent, "dial")})
	defer d.Close()
	pl := &probeLoop{e: e, st: st, d: d, trigger: make(chan struct{}, 1), swap: make(chan *probe.Prober, 1), checksSwap: make(chan *checks.Scheduler, 1), OnProgress: func(p probe.Progress) { cp.ProbeProgress(p.Done, p.Total, p.Finished) }}
	if once {
		return pl.once(ctx)
	}
	// Serve proxypoolctl on the system bus (--user: session bus); a bus
	// that cannot be reached is logged and probing goes on.
	var tor manager.Tor
	var scaler slo.TorScaler
	var ops *torops.Tor
	if e.cfg.Tor.Enabled {
		if ops, err = torOps(e, st, true); err != nil {
			return err
		}
		tor = ops
		// tor@ units: proxy-torgen runs them on request
		scaler = ops.RequestScaler(filepath.Join(e.stateDir(), torops.RequestFile))
		go ops.Rotate(ctx)
	}
	m := e.newMetrics()
	pl.checkMetrics = m.Checks()
	refresher := e.refresher(st, pl.Trigger) // proxypoolctl refresh's; the timer's proxy-refresh reads the file itself
	mo := manager.Options{Store: st, Checker: pl, Refresher: refresher, Tor: tor, Groups: groupMembers(e)}
	if guard := startObservers(ctx, e, st, pl, m, scaler, ops); guard != nil {
		mo.Floors = floorsOf(guard)
	}
	jobs := api.NewJobs()
	mo.Emit = jobs.Emit
	apiLn := apiListener(e, true)
	mgr := cp.Start(ctx, mo, !user)
	var clashLive *liveClash // the Clash API's pool and listeners, when it is served
	if apiLn != nil {
		// The Clash API's groups come from a pool of the probe's own over
		// the same store (the gateway's members); its numbers from the
		// gateway's metrics endpoint.
		p, err := openPool(ctx, e, st, nil, nil)
		if err != nil {
			return err
		}
		clash, b, err := clashHandler(e, st, remotePins{p}, d, metricsGateway(e))
		if err != nil {
			return err
		}
		clashLive = &liveClash{p: p, b: b}
		go func() {
			if err := serveAPI(ctx, e, apiLn, mgr, jobs, clash); err != nil {
				e.log.WithError(err).Error("HTTP API stopped")
			}
		}()
	}
	reloadOn(ctx, g, e, st, "probe", probeKeys, func(ctx context.Context, next *env, changed []string) error {
		if err := applyProbe(pl, next, changed); err != nil {
			return err
		}
		if reload.Any(changed, "sources") {
			refresher.SetSources(next.sources()) // no refresh: that is proxy-refresh.timer's
		}
		return clashLive.apply(next, changed)
	})
	sd.Ready()
	defer sd.Stopping()
	go sd.Watchdog(ctx, pl.healthy)
	return pl.run(ctx)
}

// probeLoop runs the probe against the store and reports progress.
type probeLoop struct {
	e       *env
	st      *store.Store
	d       *dial.Pool
	trigger chan struct{}
	last    atomic.Pointer[probe.Progress]
	lastErr atomic.Pointer[error]
	beat    atomic.Int64 // unix nanos of the last loop activity
	// OnProgress, if set, sees every progress report (D-Bus Progress, metrics).
	OnProgress func(probe.Progress)
	// sink receives results (default: the store); statusSuffix adds the
	// SLO summary to sd_notify STATUS.
	sink         probe.Sink
	statusSuffix func() string
	// checkMetrics records the target and speed checks (nil: none).
	checkMetrics *metrics.CheckMetrics
	// swap hands run a prober built from a reloaded config, checksSwap
	// runChecks the checks (nil: none)
	swap       chan *probe.Prober
	checksSwap chan *checks.Scheduler
}

// reconfigure builds a prober from a reloaded config and has run switch
// to it between two checks (the pass under way ends; what it left is
// still due). A config it cannot build from changes nothing.
func (pl *probeLoop) reconfigure(e *env) error {
	pr, err := e.prober(pl.d, pl.progress)
	if err != nil {
		return err
	}
	handOver(pl.swap, pr)
	return nil
}

// handOver puts v in ch (capacity 1) for its loop to take, replacing a
// value the loop has not taken yet: the last reload wins.
func handOver[T any](ch chan T, v T) {
	select {
	case <-ch:
	default:
	}
	ch <- v
}

func (pl *probeLoop) resultSink() probe.Sink {
	if pl.sink != nil {
		return pl.sink
	}
	return pl.st
}

// Trigger asks for a pass now (proxypoolctl check, a refresh that added upstreams).
func (pl *probeLoop) Trigger() {
	select {
	case pl.trigger <- struct{}{}:
	default:
	}
}

func (pl *probeLoop) progress(p probe.Progress) {
	pl.last.Store(&p)
	pl.beat.Store(time.Now().UnixNano())
	if pl.statusSuffix != nil {
		if sfx := pl.statusSuffix(); sfx != "" {
			sd.Statusf("%s; %s", p, sfx)
		} else {
			sd.Statusf("%s", p)
		}
	} else {
		sd.Statusf("%s", p)
	}
	if pl.OnProgress != nil {
		pl.OnProgress(p)
	}
}

// healthy is what the watchdog asks: the loop made progress recently and the
// store answers.
func (pl *probeLoop) healthy(ctx context.Context) error {
	if _, err := pl.st.Version(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if b := pl.beat.Load(); b != 0 && time.Since(time.Unix(0, b)) > 10*time.Minute {
		return fmt.Errorf("probe loop stalled since %s", time.Unix(0, b).Format(time.RFC3339))
	}
	return nil
}

func (pl *probeLoop) prober() (*probe.Prober, error) { return pl.e.prober(pl.d, pl.progress) }

func (pl *probeLoop) once(ctx context.Context) error {
	pr, err := pl.prober()
	if err != nil {
		return err
	}
	var passErr error
	err = pr.Run(ctx, pl.st, pl.resultSink(), probe.RunOptions{MaxPasses: 1, StopWhenIdle: true,
		OnPass: func(p probe.Progress, err error) {
			passErr = err
			pl.e.log.WithField(logging.FieldComponent, "probe").Infof("pass done: %s in %s", p, p.Elapsed.Round(time.Millisecond))
		}})
	if err != nil {
		return err
	}
	return passErr
}

func (pl *probeLoop) run(ctx context.Context) error {
	pr, err := pl.prober()
	if err != nil {
		return err
	}
	log := pl.e.log.WithField(logging.FieldComponent, "probe")
	pl.beat.Store(time.Now().UnixNano())
	go pl.prune(ctx)
	go pl.runChecks(ctx)
	for {
		runCtx, stop := context.WithCancel(ctx)
		var next *probe.Prober
		picked := make(chan struct{})
		go func() {
			defer close(picked)
			select {
			case next = <-pl.swap:
				stop()
			case <-runCtx.Done():
			}
		}()
		err := pr.Run(runCtx, pl.st, pl.resultSink(), probe.RunOptions{Trigger: pl.trigger,
			OnPass: func(p probe.Progress, err error) {
				pl.beat.Store(time.Now().UnixNano())
				if errors.Is(err, probe.ErrUplinkDown) {
					pl.st.PauseProbe(ctx, time.Now(), err.Error())
				} else if p.Finished {
					pl.st.RecordPass(ctx, store.Pass{At: time.Now(), Size: p.Total, Healthy: p.Healthy, Took: p.Elapsed})
				}
				if err != nil && runCtx.Err() == nil {
					pl.lastErr.Store(&err)
					log.WithError(err).Warn("pass interrupted")
					return
				}
				log.Infof("pass done: %s in %s", p, p.Elapsed.Round(time.Millisecond))
			}})
		stop()
		<-picked
		if ctx.Err() != nil || next == nil {
			return err
		}
		log.Info("probe settings reloaded")
		pr = next
	}
}

// prune deletes upstreams dead for longer than probe.delete-after.
func (pl *probeLoop) prune(ctx context.Context) {
	log := pl.e.log.WithField(logging.FieldComponent, "probe")
	pl.st.RetainDead(ctx, pl.e.cfg.Probe.DeleteAfter, 0, func(n int, err error) {
		if err != nil {
			log.WithError(err).Warn("pruning dead upstreams")
			return
		}
		log.Infof("deleted %d upstreams dead for more than %s", n, pl.e.cfg.Probe.DeleteAfter)
	})
}
