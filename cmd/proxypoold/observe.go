package main

// Metrics and pool SLOs of the probe side (`proxypoold probe` and `run`):
// the Prometheus endpoint with pool, probe, source and SLO series, and the
// guard that acts when a group falls below its floor.

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/metrics"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/slo"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torops"
	"github.com/proxypool/proxypool/internal/upstream"
)

func (e *env) newMetrics() *metrics.Metrics {
	var srcs, groups []string
	for _, s := range e.cfg.Sources {
		srcs = append(srcs, s.Name)
	}
	srcs = append(srcs, "manual", "tor")
	for g := range e.cfg.Groups {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	var targets []string
	for t := range e.cfg.Probe.Targets {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	return metrics.NewWith(metrics.Options{Version: version, Sources: srcs, Groups: groups, Targets: targets})
}

// serveMetrics serves /metrics and /healthz on addr until ctx ends; a port
// that cannot be bound is logged, never fatal.
func serveMetrics(ctx context.Context, e *env, m *metrics.Metrics, addr string, health func() error) {
	if !e.cfg.Metrics.Enabled || addr == "" {
		return
	}
	go func() {
		err := m.Serve(ctx, addr, health)
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) {
			e.log.WithField(logging.FieldComponent, "metrics").WithError(err).Warnf("metrics endpoint %s is off", addr)
		}
	}()
}

// pollPool feeds the pool gauges from the store every 15 s, and the tor
// instances' resources and traffic from tor (nil: tor is off).
func pollPool(ctx context.Context, m *metrics.Metrics, st *store.Store, guard *slo.Guard, tor *torops.Tor) {
	go m.PollPool(ctx, 15*time.Second, func(ctx context.Context) (metrics.PoolSnapshot, error) {
		c, err := st.Counts(ctx)
		if err != nil {
			return metrics.PoolSnapshot{}, err
		}
		srcs, _ := st.Sources(ctx)
		snap := metrics.PoolSnapshot{
			Healthy: c.Healthy, ByState: c.ByState, BySource: c.BySource, ByType: c.ByType,
			ByCountry: c.ByCountry, ByAnonymity: c.ByAnonymity, ByGroup: c.ByGroup, ByClass: c.ByClass,
			DistinctExits: c.DistinctExits, HealthyExits: c.HealthyExits, Sources: srcs,
		}
		if census, err := torops.Census(ctx, st); err == nil {
			for _, c := range census {
				m.Tor().Instances(c.Group, c.Instances, c.Working)
				m.Tor().Exits(c.Group, c.Exits)
				m.Tor().Plan(c.Group, c.Usable, c.Short)
			}
		}
		if at, err := st.TorDiscovered(ctx); err == nil {
			m.Tor().Discovered(at)
		}
		if tor != nil {
			torUsage(ctx, m.Tor(), tor)
		}
		if guard != nil {
			snap.Groups = map[string]metrics.GroupHealth{}
			for _, gs := range guard.Status() {
				if gs.Group != slo.PoolName {
					snap.Groups[gs.Group] = metrics.GroupHealth{Healthy: gs.Healthy, Exits: gs.Exits}
				}
			}
		}
		return snap, nil
	})
}

// torUsage records each tor instance's CPU, memory and traffic, and
// forgets the instances that are gone.
func torUsage(ctx context.Context, m *metrics.TorMetrics, tor *torops.Tor) {
	us, err := tor.Usage(ctx)
	if err != nil {
		return // the census above reads the same store: it has said so
	}
	ports := make([]int, 0, len(us))
	for _, u := range us {
		ports = append(ports, u.Port)
		if u.Resources {
			m.Resources(u.Port, u.Group, u.CPUSeconds, u.MemoryBytes)
		}
		if u.Traffic {
			m.Traffic(u.Port, u.Group, u.ReadBytes, u.WrittenBytes)
		}
	}
	m.Retain(ports)
}

// probeSink records each result in the store and counts it.
type probeSink struct {
	st *store.Store
	m  *metrics.ProbeMetrics
}

func (s probeSink) Submit(r upstream.CheckResult) {
	outcome := "ok"
	if !r.OK {
		outcome = r.Cause.String() // the bounded vocabulary is the label
	}
	s.m.CheckDone(outcome, time.Duration(r.TotalMS*float64(time.Millisecond)))
	s.st.Submit(r)
}

func (s probeSink) Flush(ctx context.Context) error { return s.st.Flush(ctx) }

// newGuard builds the SLO guard from groups.<name>.min-healthy/min-exits
// and slo.*. The groups in tor.groups (tor enabled) are Tor groups; tor
// (nil: none) takes their newnym and instance steps (torScaler, torsys.go).
func newGuard(e *env, st *store.Store, pl *probeLoop, m *metrics.Metrics, tor slo.TorScaler) (*slo.Guard, error) {
	return slo.New(guardOptions(e, st, pl, m, tor))
}

// guardOptions is what the config says of the SLO guard, wired to st.
func guardOptions(e *env, st *store.Store, pl *probeLoop, m *metrics.Metrics, tor slo.TorScaler) slo.Options {
	var groups []slo.Group
	for _, pg := range poolGroups(e) {
		gc := e.cfg.Groups[pg.Name]
		groups = append(groups, slo.Group{Name: pg.Name, Floor: slo.Floor{MinHealthy: gc.MinHealthy, MinExits: gc.MinExits},
			Member: slo.Member(pg), Tor: e.cfg.Tor.Enabled && slices.Contains(e.cfg.Tor.Groups, pg.Name)})
	}
	sm := m.SLO()
	return slo.Options{
		Groups:            groups,
		Pool:              slo.Floor{MinHealthy: e.cfg.SLO.MinHealthy, MinExits: e.cfg.SLO.MinExits},
		CheckInterval:     e.cfg.SLO.CheckInterval,
		MinActionInterval: e.cfg.SLO.MinActionInterval,
		Counter:           slo.NewCounter(st, groups),
		Rechecker: &slo.StoreRechecker{
			List: func(ctx context.Context, s upstream.State) ([]upstream.Record, error) {
				return st.List(ctx, store.Filter{State: s})
			},
			Reschedule: st.Reschedule, Groups: groups,
		},
		Refresher: slo.RefresherFunc(e.refresher(st, pl.Trigger).Early),
		Tor:       tor,
		OnFloor:   sm.Floor,
		OnAction: func(group, kind string) {
			sm.Action(group, kind)
			pl.Trigger()
		},
		Logger: e.log.WithField(logging.FieldComponent, "slo"),
	}
}

// floorsOf turns the guard's status, counted on read, into control's
// Status floors.
func floorsOf(g *slo.Guard) func() []control.GroupFloor {
	return func() []control.GroupFloor {
		var out []control.GroupFloor
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range g.StatusNow(ctx) {
			out = append(out, control.GroupFloor{Group: s.Group, Healthy: s.Healthy, Exits: s.Exits,
				MinHealthy: s.MinHealthy, MinExits: s.MinExits, Below: s.Below, LastAction: s.Action()})
		}
		return out
	}
}

// startObservers wires metrics and the SLO guard around a probe loop. It
// returns the guard (nil when it could not be built); tor is the guard's
// TorScaler (nil: no tor steps), ops the instances whose resources the
// metrics show (nil: tor is off).
func startObservers(ctx context.Context, e *env, st *store.Store, pl *probeLoop, m *metrics.Metrics, tor slo.TorScaler, ops *torops.Tor) *slo.Guard {
	log := e.log.WithField(logging.FieldComponent, "slo")
	pm := m.Probe()
	pl.sink = probeSink{st: st, m: pm}
	prev := pl.OnProgress
	pl.OnProgress = func(p probe.Progress) {
		pm.Pass(p.Done, p.Total, p.Healthy)
		pm.Backlog(p.Total - p.Done)
		if prev != nil {
			prev(p)
		}
	}
	guard, err := newGuard(e, st, pl, m, tor)
	if err != nil {
		log.WithError(err).Warn("pool floors are not watched")
	} else {
		go func() {
			if err := guard.Run(ctx); err != nil && ctx.Err() == nil {
				log.WithError(err).Warn("SLO guard stopped")
			}
		}()
		pl.statusSuffix = guard.Summary
	}
	pollPool(ctx, m, st, guard, ops)
	serveMetrics(ctx, e, m, e.cfg.Metrics.Listen, func() error { return pl.healthy(ctx) })
	return guard
}
