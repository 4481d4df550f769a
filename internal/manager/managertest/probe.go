// Package managertest holds what the tests of the manager and of its
// clients (proxypoolctl) share: the daemon's probe loop in miniature, over
// a real store, so that check jobs run end to end without a network.
package managertest

import (
	"context"
	"time"

	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/upstream"
)

// Progress is where a Probe reports, as the daemon's probe loop reports to
// the manager (*manager.Manager implements it).
type Progress interface {
	ProbeProgress(done, total int, finished bool)
}

// Probe checks, on each Trigger, every due upstream of its store: Result
// gives the i-th one's outcome, submitted as the real probe submits, and
// Progress hears of it every Every upstreams and once at the end.
type Probe struct {
	// Progress is set once the manager that triggers the probe exists,
	// before Run.
	Progress Progress
	st       *store.Store
	every    int
	result   func(i int, u upstream.Upstream) upstream.CheckResult
	trigger  chan struct{}
}

// NewProbe returns a probe over st; a probe nobody runs (st nil) only takes
// triggers.
func NewProbe(st *store.Store, every int, result func(i int, u upstream.Upstream) upstream.CheckResult) *Probe {
	return &Probe{st: st, every: max(every, 1), result: result, trigger: make(chan struct{}, 1)}
}

// Trigger asks for a pass; triggers during a pass fold into one more.
func (p *Probe) Trigger() {
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// Run checks on each trigger until ctx ends.
func (p *Probe) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.trigger:
		}
		due, err := p.st.Due(ctx, time.Now(), 0)
		if err != nil || len(due) == 0 {
			continue
		}
		for i, r := range due {
			p.st.Submit(p.result(i, r.Upstream))
			if i%p.every == 0 {
				p.Progress.ProbeProgress(i, len(due), false)
			}
		}
		p.st.Flush(ctx)
		p.Progress.ProbeProgress(len(due), len(due), true)
	}
}
