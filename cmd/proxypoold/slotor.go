package main

// The tor instances of `proxypoold run`.
//
// torManager owns the supervised tor children: the process runner and the
// current plan. torLoop (run.go) regenerates through it every tor.refresh;
// the SLO guard's scale-up (torsys.go) regenerates through it at once. One
// mutex orders both, so a scale-up never races a periodic regeneration for
// the runner, the torrc files or the store's "tor" source. The per-group
// instance budget and the NEWNYM steps are the same as under systemd
// (torsys.go): only how a raised budget takes effect differs.

import (
	"context"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torgen"
)

type torManager struct {
	e      *env
	st     *store.Store
	runner torgen.Runner // the process runner
	wait   func()        // its Wait
	log    logrus.FieldLogger

	mu sync.Mutex // orders generations
}

// newTorManager starts the process runner whose children live until ctx
// ends. Nothing runs before the first generate.
func newTorManager(ctx context.Context, e *env, st *store.Store) *torManager {
	log := e.log.WithField(logging.FieldComponent, "torgen")
	pr := torgen.NewProcessRunner(ctx, e.cfg.Tor.Binary, e.cfg.Tor.TorrcDir, log)
	return &torManager{e: e, st: st, log: log, runner: pr, wait: pr.Wait}
}

// generate discovers exits and makes the running instances match the plan
// within the current budget (torLoop every tor.refresh, the guard's
// scale-up at once).
func (m *torManager) generate(ctx context.Context) (torgen.Plan, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return generateTor(ctx, m.e, m.st, m.runner, false)
}

// stop waits, once the runner's context has ended, for every tor child to
// exit.
func (m *torManager) stop() { m.wait() }
