package main

// The tor instances of `proxypoold run` and the SLO guard's tor steps.
//
// torManager owns the supervised tor children: the process runner, the
// current plan, the tor.newnym-period rotations and the per-group instance
// budget. torLoop (run.go) regenerates through it every tor.refresh; the
// guard reaches it as its slo.TorScaler (NEWNYM a group's instances; bring
// up one more instance from the group's unused exits). One mutex orders
// both, so a scale-up never races a periodic regeneration for the runner,
// the torrc files or the store's "tor" source.
//
// The budget: in tor.mode grouped and single, a tor group with a floor
// (groups.<name>.min-healthy / min-exits) starts with as many instances as
// its floor asks (the larger of the two); every other group, and every
// group in country mode (one instance per group anyway), is capped only by
// tor.max-instances, as before. A scale-up raises the group's budget to one
// more than it runs, within tor.max-instances, but not while one of the
// group's instances is younger than tor.bootstrap-grace: a tor that is still
// bootstrapping may yet fill the floor. Budgets only grow while the
// daemon runs; a restart starts from the floors again. `proxypoold torgen`
// (systemd) keeps no budget: no scaler runs beside it.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/slo"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torctl"
	"github.com/proxypool/proxypool/internal/torgen"
	"github.com/proxypool/proxypool/internal/torgen/exits"
)

type torManager struct {
	ctx    context.Context // the children's and rotations' lifetime
	e      *env
	st     *store.Store
	runner torgen.Runner // the process runner
	wait   func()        // its Wait
	log    logrus.FieldLogger

	mu     sync.Mutex
	budget map[string]int // torgen.Config.GroupMax
	plan   torgen.Plan    // the last generated plan
	newnym map[int]context.CancelFunc
	since  map[int]time.Time // when each planned port first appeared
	now    func() time.Time
}

// newTorManager starts the process runner whose children live until ctx
// ends. Nothing runs before the first generate.
func newTorManager(ctx context.Context, e *env, st *store.Store) *torManager {
	log := e.log.WithField(logging.FieldComponent, "torgen")
	pr := torgen.NewProcessRunner(ctx, e.cfg.Tor.Binary, e.cfg.Tor.TorrcDir, log)
	return &torManager{
		ctx: ctx, e: e, st: st, log: log, runner: pr, wait: pr.Wait,
		budget: initialBudget(e),
		newnym: map[int]context.CancelFunc{},
		since:  map[int]time.Time{},
		now:    time.Now,
	}
}

// initialBudget is the per-group instance cap each tor group starts with
// (see the file comment); nil in country mode.
func initialBudget(e *env) map[string]int {
	mode, err := exits.ParseMode(e.cfg.Tor.Mode)
	if err != nil || (mode != exits.ModeGrouped && mode != exits.ModeSingle) {
		return nil
	}
	b := map[string]int{}
	for _, name := range e.cfg.Tor.Groups {
		gc := e.cfg.Groups[name]
		if need := max(gc.MinHealthy, gc.MinExits); need > 0 {
			b[name] = need
		}
	}
	return b
}

// scaler is m as the guard's TorScaler; nil when tor is off (a nil
// *torManager must not become a non-nil interface).
func (m *torManager) scaler() slo.TorScaler {
	if m == nil {
		return nil
	}
	return m
}

// generate discovers exits and makes the running instances match the plan
// within the current budget (torLoop calls it every tor.refresh).
func (m *torManager) generate(ctx context.Context) (torgen.Plan, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.generateLocked(ctx)
}

func (m *torManager) generateLocked(ctx context.Context) (torgen.Plan, error) {
	plan, err := generateTorBudget(ctx, m.e, m.st, m.runner, false, m.budget)
	if err != nil {
		return plan, err
	}
	m.plan = plan
	m.rotate(plan)
	now, seen := m.now(), map[int]bool{}
	for _, in := range plan.Instances {
		seen[in.Port] = true
		if _, ok := m.since[in.Port]; !ok {
			m.since[in.Port] = now
		}
	}
	for port := range m.since {
		if !seen[port] {
			delete(m.since, port)
		}
	}
	return plan, nil
}

// rotate keeps one tor.newnym-period rotation per planned instance.
func (m *torManager) rotate(plan torgen.Plan) {
	if m.e.cfg.Tor.NewnymPeriod <= 0 {
		return
	}
	want := map[int]bool{}
	for _, in := range plan.Instances {
		want[in.Port] = true
		if _, ok := m.newnym[in.Port]; !ok {
			nctx, c := context.WithCancel(m.ctx)
			m.newnym[in.Port] = c
			go torctl.NewNymEvery(nctx, torgen.ControlAddr(in), m.e.cfg.Tor.NewnymPeriod, m.log)
		}
	}
	for port, c := range m.newnym {
		if !want[port] {
			c()
			delete(m.newnym, port)
		}
	}
}

// stop ends the rotations and, once the runner's context has ended, waits
// for every tor child to exit.
func (m *torManager) stop() {
	m.mu.Lock()
	for port, c := range m.newnym {
		c()
		delete(m.newnym, port)
	}
	m.mu.Unlock()
	m.wait()
}

func (m *torManager) instances(group string) []torgen.Instance {
	var out []torgen.Instance
	for _, in := range m.plan.Instances {
		if in.Group == group {
			out = append(out, in)
		}
	}
	return out
}

// NewNym asks each of the group's instances for new circuits and returns
// how many it reached.
func (m *torManager) NewNym(ctx context.Context, group string) (int, error) {
	m.mu.Lock()
	ins := m.instances(group)
	m.mu.Unlock()
	n := 0
	var errs []error
	for _, in := range ins {
		c, err := torctl.Dial(ctx, torgen.ControlAddr(in))
		if err == nil {
			err = c.NewNym(ctx)
			c.Close()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("NEWNYM to %s: %w", in.Name, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// ScaleUp raises the group's budget to one more instance than it runs and
// regenerates, when the group has a budget (grouped/single mode, a floor),
// an exit no instance uses, room under tor.max-instances and no instance
// still in its tor.bootstrap-grace. It returns how
// many of the group's instances are new (on a port the group did not run);
// 0 and no error when there is nothing to add, slo.ErrNotYet while an
// instance is in its grace.
func (m *torManager) ScaleUp(ctx context.Context, group string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.budget[group]
	if !ok {
		return 0, nil // country mode or no floor: every slot already runs, up to tor.max-instances
	}
	if len(m.plan.Instances) >= m.e.cfg.Tor.MaxInstances ||
		!slices.ContainsFunc(m.plan.Dropped, func(s exits.Slot) bool { return s.Group == group }) {
		return 0, nil
	}
	before := map[int]bool{}
	for _, in := range m.instances(group) {
		before[in.Port] = true
		if age := m.now().Sub(m.since[in.Port]); age < m.e.cfg.Tor.BootstrapGrace {
			return 0, fmt.Errorf("%s started %v ago may still bootstrap: %w", in.Name, age.Round(time.Second), slo.ErrNotYet)
		}
	}
	m.budget[group] = len(before) + 1
	if _, err := m.generateLocked(ctx); err != nil {
		m.budget[group] = old
		return 0, fmt.Errorf("bringing up another tor instance: %w", err)
	}
	added := 0
	for _, in := range m.instances(group) {
		if !before[in.Port] {
			added++
			m.log.WithFields(logrus.Fields{logging.FieldGroup: group, "port": in.Port}).
				Infof("tor group %s: started %s for the SLO floor (budget %d)", group, in.Name, m.budget[group])
		}
	}
	return added, nil
}
