package torops

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/proxypool/proxypool/internal/torgen"
)

// Supervisor runs `proxypoold run`'s tor instances as child processes.
// Its periodic regeneration and the SLO guard's scale-up go through one
// mutex, so a scale-up never races a regeneration for the runner, the
// torrc files or the store's "tor" source.
type Supervisor struct {
	t      *Tor
	runner torgen.Runner
	wait   func() // the runner's Wait
	mu     sync.Mutex
}

// Supervise starts the process runner (tor binary bin) whose children live
// until ctx ends. Nothing runs before the first generation.
func (t *Tor) Supervise(ctx context.Context, bin string) *Supervisor {
	pr := torgen.NewProcessRunner(ctx, bin, t.o.Gen.TorrcDir, t.log)
	pid := pr.PID
	t.pids.Store(&pid)
	return &Supervisor{t: t, runner: pr, wait: pr.Wait}
}

// generate discovers exits and makes the children match the plan within
// the current budget.
func (s *Supervisor) generate(ctx context.Context) (torgen.Plan, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t.Apply(ctx, s.runner)
}

// Run generates now and every refresh until ctx ends, then waits for every
// child to exit. A failed generation keeps the instances that run.
func (s *Supervisor) Run(ctx context.Context, refresh time.Duration) error {
	defer s.wait()
	tk := time.NewTicker(refresh)
	defer tk.Stop()
	for {
		if _, err := s.generate(ctx); err != nil && ctx.Err() == nil {
			s.t.log.WithError(err).Warn("tor generation failed; keeping the instances that run")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
		}
	}
}

// Scaler is the run scaler: a raised budget is applied by generating at
// once.
func (s *Supervisor) Scaler() *Scaler {
	return &Scaler{t: s.t, apply: s.regenerate}
}

// regenerate generates now and counts the group's new instances.
func (s *Supervisor) regenerate(ctx context.Context, group string, runs int) (int, error) {
	plan, err := s.generate(ctx)
	if err != nil {
		return 0, fmt.Errorf("bringing up another tor instance: %w", err)
	}
	n := 0
	for _, in := range plan.Instances {
		if in.Group == group {
			n++
		}
	}
	if n > runs {
		s.t.guardLog(group).Infof("tor group %s: started %d instance(s) for the SLO floor (budget %d)", group, n-runs, runs+1)
	}
	return max(n-runs, 0), nil
}
