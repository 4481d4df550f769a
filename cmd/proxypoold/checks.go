package main

import (
	"context"
	"regexp"
	"sort"

	"github.com/proxypool/proxypool/internal/checks"
	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/metrics"
)

// checksOptions are the target and speed checks (probe.targets,
// probe.speed) as internal/checks takes them; m may be nil.
func (e *env) checksOptions(m *metrics.CheckMetrics) checks.Options {
	p := e.cfg.Probe
	o := checks.Options{Logger: e.log.WithField(logging.FieldComponent, "checks")}
	names := make([]string, 0, len(p.Targets))
	for name := range p.Targets {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t := p.Targets[name]
		ct := checks.Target{Name: name, URL: t.URL, Status: t.Status, Headers: t.Headers, MaxTime: t.MaxTime,
			Interval: t.Interval, TTL: t.TTL, Concurrency: t.Concurrency, Budget: t.Budget}
		// validated by config: these compile
		if t.Body != "" {
			ct.Body = regexp.MustCompile(t.Body)
		}
		if t.NotBody != "" {
			ct.NotBody = regexp.MustCompile(t.NotBody)
		}
		o.Targets = append(o.Targets, ct)
	}
	if s := p.Speed; s.URL != "" {
		o.Speed = &checks.Speed{URL: s.URL, Size: int64(s.Size), Upload: int64(s.Upload), BudgetBytes: int64(s.BudgetBytes),
			Concurrency: s.Concurrency, Interval: s.Interval, MaxTime: s.MaxTime, Kinds: s.Kinds, Sources: s.Sources}
	}
	o.OnPass = func(st checks.PassStats) {
		if st.Kind == "speed" {
			m.SpeedPass(st.Passed, st.Bytes)
		} else {
			m.TargetPass(st.Name, st.Checked, st.Passed, st.Outage)
		}
	}
	return o
}

// runChecks runs the target and speed checks through the probe's
// dialer, apart from its liveness passes, until ctx ends; nothing while
// none is configured. A reload's checks (applyProbe hands them over) replace the
// running ones: those under way end, and the new ones make their first
// passes at once, as at startup.
func (pl *probeLoop) runChecks(ctx context.Context) {
	log := pl.e.log.WithField(logging.FieldComponent, "checks")
	s, err := pl.checks(pl.e)
	if err != nil {
		log.WithError(err).Error("target and speed checks not started")
	}
	for {
		sctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if s != nil {
				s.Run(sctx)
			}
		}()
		select {
		case <-ctx.Done():
		case s = <-pl.checksSwap:
			log.Info("target and speed checks reloaded")
		}
		stop()
		<-done
		if ctx.Err() != nil {
			return
		}
	}
}

// checks is the scheduler of e's target and speed checks; nil when none
// is configured.
func (pl *probeLoop) checks(e *env) (*checks.Scheduler, error) {
	o := e.checksOptions(pl.checkMetrics)
	if len(o.Targets) == 0 && o.Speed == nil {
		return nil, nil
	}
	return checks.New(pl.st, pl.d, pl.st, o)
}
