package manager

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/store"
)

// A job is long work started by a call. It reports Progress(id, done,
// total) as it goes; its last signal always has Done == Total. A job that
// ends short (timeout, failure, daemon stopping) sends Total = Done, smaller
// than the totals before it, so a waiting client can tell.
type job struct {
	id    string
	kind  string
	m     *Manager
	start time.Time

	mu          sync.Mutex
	done, total int
	ended       bool

	end chan struct{} // closed by finish

	// check-all: a pass was running at the start; wait for it to end and
	// follow the next one.
	waitPass bool
}

func (m *Manager) newJob(kind string) *job {
	m.seq++
	return &job{id: fmt.Sprintf("%s-%s-%d", kind, m.boot, m.seq), kind: kind, m: m, start: m.o.Now(), end: make(chan struct{})}
}

// report emits the job's progress when it changed.
func (j *job) report(done, total int) {
	j.mu.Lock()
	if j.ended || (done == j.done && total == j.total) {
		j.mu.Unlock()
		return
	}
	j.done, j.total = done, total
	j.mu.Unlock()
	// Done == Total tells a waiter the job is over, so only finish sends
	// it: a refresh still retires upstreams after its last source.
	if done >= total {
		return
	}
	j.m.o.Emit(control.Progress{Job: j.id, Done: uint32(max(done, 0)), Total: uint32(max(total, 0))})
}

// finish sends the last signal: done of total when complete, done of done
// when the job ended short.
func (j *job) finish(err error) {
	j.mu.Lock()
	if j.ended {
		j.mu.Unlock()
		return
	}
	j.ended = true
	close(j.end)
	done, total := j.done, j.total
	j.mu.Unlock()
	if err != nil {
		total = done
		j.m.o.Log.WithError(err).WithField("job", j.id).Warn("job ended early")
	} else {
		done = total
	}
	j.m.o.Emit(control.Progress{Job: j.id, Done: uint32(max(done, 0)), Total: uint32(max(total, 0))})
}

// singleton starts fn as the job of kind, or returns the id of the one
// already running: two refreshes at once would only fetch twice.
func (m *Manager) singleton(kind string, fn func(ctx context.Context, j *job) error) string {
	m.mu.Lock()
	if j := m.running[kind]; j != nil {
		m.mu.Unlock()
		return j.id
	}
	j := m.newJob(kind)
	m.running[kind] = j
	m.mu.Unlock()
	m.run(j, func(ctx context.Context) error { return fn(ctx, j) }, func() {
		m.mu.Lock()
		delete(m.running, kind)
		m.mu.Unlock()
	})
	return j.id
}

// run runs fn in the background under the job timeout.
func (m *Manager) run(j *job, fn func(ctx context.Context) error, cleanup func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, m.o.JobTimeout)
		defer cancel()
		err := fn(ctx)
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		cleanup()
		j.finish(err)
	}()
}

// Refresh starts fetching every source.
func (m *Manager) Refresh(ctx context.Context) (string, error) {
	if m.o.Refresher == nil {
		return "", errors.New("refresh is not available in this process")
	}
	return m.singleton("refresh", func(ctx context.Context, j *job) error {
		err := m.o.Refresher.Refresh(ctx, j.report)
		m.forgetTotals()
		return err
	}), nil
}

// TorGenerate starts a torgen run.
func (m *Manager) TorGenerate(ctx context.Context) (string, error) {
	if m.o.Tor == nil {
		return "", errNoTor
	}
	return m.singleton("torgen", func(ctx context.Context, j *job) error {
		return m.o.Tor.Generate(ctx, j.report)
	}), nil
}

// Check makes ids (every upstream when empty) due now and wakes the probe.
// A check of given ids follows their last-check times in the store; a check
// of everything follows the next probe pass.
func (m *Manager) Check(ctx context.Context, ids []string) (string, error) {
	if m.o.Checker == nil {
		return "", errors.New("check is not available in this process (no probe runs here)")
	}
	if len(ids) == 0 {
		return m.checkAll(ctx)
	}
	ids = dedupe(ids)
	recs, err := m.o.Store.List(ctx, store.Filter{IDs: ids})
	if err != nil {
		return "", fmt.Errorf("looking up upstreams to check: %w", err)
	}
	if len(recs) < len(ids) {
		have := map[string]bool{}
		for _, r := range recs {
			have[r.ID] = true
		}
		for _, id := range ids {
			if !have[id] {
				return "", fmt.Errorf("no upstream %s in the pool: %w", id, control.ErrNotFound)
			}
		}
	}
	if err := m.o.Store.Reschedule(ctx, ids, m.o.Now()); err != nil {
		return "", storeErr("scheduling the check", err)
	}
	m.mu.Lock()
	j := m.newJob("check")
	m.checks[j.id] = j
	m.mu.Unlock()
	j.total = len(ids)
	m.o.Emit(control.Progress{Job: j.id, Done: 0, Total: uint32(len(ids))})
	m.o.Checker.Trigger()
	m.run(j, func(ctx context.Context) error { return m.followIDs(ctx, j, ids) }, func() {
		m.mu.Lock()
		delete(m.checks, j.id)
		m.mu.Unlock()
	})
	return j.id, nil
}

// followIDs polls the store until every id has a check newer than the job.
// An id whose in-flight check finished just after the reschedule (and so
// moved its next check away) is made due again.
func (m *Manager) followIDs(ctx context.Context, j *job, ids []string) error {
	since := j.start.Truncate(time.Millisecond)
	t := time.NewTicker(m.o.CheckPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		recs, err := m.o.Store.List(ctx, store.Filter{IDs: ids})
		if err != nil {
			return fmt.Errorf("following the check: %w", err)
		}
		done := 0
		var again []string
		for _, r := range recs {
			switch {
			case !r.LastCheck.Before(since):
				done++
			case r.NextCheck.After(m.o.Now()):
				again = append(again, r.ID)
			}
		}
		total := len(recs) // removed meanwhile: no longer waited for
		j.report(done, total)
		if done >= total {
			return nil
		}
		if len(again) > 0 {
			if err := m.o.Store.Reschedule(ctx, again, m.o.Now()); err != nil {
				return fmt.Errorf("following the check: %w", err)
			}
			m.o.Checker.Trigger()
		}
	}
}

// checkAll makes everything due and follows the next probe pass.
func (m *Manager) checkAll(ctx context.Context) (string, error) {
	m.mu.Lock()
	if j := m.running["check-all"]; j != nil {
		m.mu.Unlock()
		return j.id, nil
	}
	m.mu.Unlock()
	c, err := m.o.Store.Counts(ctx)
	if err != nil {
		return "", fmt.Errorf("counting the pool: %w", err)
	}
	if err := m.o.Store.Reschedule(ctx, nil, m.o.Now()); err != nil {
		return "", storeErr("scheduling the check", err)
	}
	m.mu.Lock()
	if j := m.running["check-all"]; j != nil { // lost a race with another caller
		m.mu.Unlock()
		return j.id, nil
	}
	j := m.newJob("check")
	j.total = c.Total
	j.waitPass = m.probe.running
	m.running["check-all"] = j
	m.mu.Unlock()
	m.o.Emit(control.Progress{Job: j.id, Done: 0, Total: uint32(c.Total)})
	if c.Total == 0 {
		m.mu.Lock()
		delete(m.running, "check-all")
		m.mu.Unlock()
		j.finish(nil)
		return j.id, nil
	}
	m.o.Checker.Trigger()
	m.run(j, func(ctx context.Context) error {
		select { // ProbeProgress finishes the job at the end of the pass
		case <-j.end:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, func() {
		m.mu.Lock()
		if m.running["check-all"] == j {
			delete(m.running, "check-all")
		}
		m.mu.Unlock()
	})
	return j.id, nil
}

// ProbeProgress is the probe loop's progress hook: done of total upstreams
// of the running pass, finished at its end. It feeds Status and the job of
// a whole-pool check.
func (m *Manager) ProbeProgress(done, total int, finished bool) {
	m.mu.Lock()
	m.probe.done, m.probe.total, m.probe.running = done, total, !finished
	if finished {
		m.probe.lastPass = m.o.Now()
	}
	j := m.running["check-all"]
	if j != nil {
		switch {
		case j.waitPass:
			if finished {
				j.waitPass = false
			}
			j = nil
		case finished:
			delete(m.running, "check-all")
		}
	}
	m.mu.Unlock()
	if j == nil {
		return
	}
	j.report(done, total)
	if finished {
		j.finish(nil)
	}
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
