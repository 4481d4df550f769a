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
	// retry is the first wait after a failed generation (default
	// FirstRetry); tests shorten it.
	retry time.Duration
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

// FirstRetry is the wait after a failed generation; it doubles with each
// failure in a row, up to tor.refresh.
const FirstRetry = 5 * time.Second

// RetryDelay is the wait before the next generation after fails failed
// ones in a row (0: one that worked waits refresh). A discovery that
// failed at start, the network not up yet, is tried again within seconds
// rather than at the next refresh, hours later.
func RetryDelay(fails int, first, refresh time.Duration) time.Duration {
	if fails <= 0 || first >= refresh {
		return refresh
	}
	d := first
	for range fails - 1 {
		if d >= refresh/2 {
			return refresh
		}
		d *= 2
	}
	return d
}

// Run generates now and every refresh until ctx ends, then waits for every
// child to exit. A failed generation keeps the instances that run and is
// tried again after RetryDelay.
func (s *Supervisor) Run(ctx context.Context, refresh time.Duration) error {
	defer s.wait()
	first := s.retry
	if first <= 0 {
		first = FirstRetry
	}
	fails := 0
	for {
		if _, err := s.generate(ctx); err != nil && ctx.Err() == nil {
			fails++
			wait := RetryDelay(fails, first, refresh)
			s.t.log.WithError(err).Warnf("tor generation failed; keeping the instances that run, trying again in %v", wait)
		} else {
			fails = 0
		}
		t := time.NewTimer(RetryDelay(fails, first, refresh))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
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
