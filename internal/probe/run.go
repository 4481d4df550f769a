package probe

import (
	"context"
	"errors"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Candidates lists the upstreams whose next check is due.
type Candidates interface {
	Due(ctx context.Context, now time.Time, limit int) ([]upstream.Record, error)
}

// Flusher is implemented by sinks that batch (the store); Run flushes after
// each pass so a finished pass is visible to readers.
type Flusher interface {
	Flush(ctx context.Context) error
}

// RunOptions tune the forever loop.
type RunOptions struct {
	Batch        int           // most upstreams per pass; default 100000
	Idle         time.Duration // how often to look for due upstreams when idle; default 1s
	UplinkPause  time.Duration // wait after ErrUplinkDown; default 10s
	Trigger      <-chan struct{}
	OnPass       func(Progress, error)
	MaxPasses    int // stop after this many passes that checked something (0: forever; --once uses 1)
	StopWhenIdle bool
}

// Run checks due upstreams until ctx is done. A receive on Trigger starts a
// pass at once (proxypoolctl check, a refresh that added upstreams).
func (p *Prober) Run(ctx context.Context, c Candidates, sink Sink, o RunOptions) error {
	if o.Batch <= 0 {
		o.Batch = 100000
	}
	if o.Idle <= 0 {
		o.Idle = time.Second
	}
	if o.UplinkPause <= 0 {
		o.UplinkPause = 10 * time.Second
	}
	passes := 0
	for {
		recs, err := c.Due(ctx, p.now(), o.Batch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(recs) > 0 {
			ups := make([]upstream.Upstream, len(recs))
			for i, r := range recs {
				ups[i] = r.Upstream
			}
			prog, err := p.Pass(ctx, ups, sink)
			if f, ok := sink.(Flusher); ok {
				f.Flush(context.WithoutCancel(ctx))
			}
			if o.OnPass != nil {
				o.OnPass(prog, err)
			}
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ErrUplinkDown) {
				p.log.WithError(err).Warn("probe paused")
				if !sleep(ctx, o.UplinkPause, o.Trigger) {
					return nil
				}
				continue
			}
			passes++
			if o.MaxPasses > 0 && passes >= o.MaxPasses {
				return nil
			}
			continue
		}
		if o.StopWhenIdle {
			return nil
		}
		if !sleep(ctx, o.Idle, o.Trigger) {
			return nil
		}
	}
}

// sleep waits d, a trigger or the end of ctx; false means ctx is done.
func sleep(ctx context.Context, d time.Duration, trigger <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-trigger:
	}
	return true
}
