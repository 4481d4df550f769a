package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/upstream"
)

// Refresher refreshes one configured set of sources into one sink and
// logs a line per source: the timer's refresh, the SLO guard's early one
// and the operator's all go through it. Set its fields before first use.
type Refresher struct {
	Fetcher *Fetcher // nil: a zero Fetcher
	Sources []Source
	Sink    Sink
	Log     logrus.FieldLogger // nil: silent
	// Added, if set, is called after a refresh that brought new
	// upstreams (the probe checks them at once).
	Added func()

	once sync.Once
	mu   sync.Mutex // the operator's refreshes run one at a time
	smu  sync.Mutex // Sources, once SetSources may change them
}

// SetSources replaces the sources the next refreshes fetch (a config
// reload); a refresh under way finishes with the ones it started with.
func (r *Refresher) SetSources(srcs []Source) {
	r.smu.Lock()
	r.Sources = srcs
	r.smu.Unlock()
}

func (r *Refresher) sources() []Source {
	r.smu.Lock()
	defer r.smu.Unlock()
	return r.Sources
}

func (r *Refresher) init() {
	r.once.Do(func() {
		if r.Fetcher == nil {
			r.Fetcher = &Fetcher{}
		}
		if r.Log == nil {
			l := logrus.New()
			l.SetOutput(io.Discard)
			r.Log = l
		}
	})
}

// Once fetches every source (force: even those fetched within their
// MinInterval) and returns one summary per source.
func (r *Refresher) Once(ctx context.Context, force bool) []upstream.SourceSummary {
	r.init()
	if len(r.sources()) == 0 {
		r.Log.Warn("no sources configured (sources: in the config): nothing to refresh")
		return nil
	}
	return r.run(ctx, force, nil)
}

// Early is the SLO guard's refresh (slo.Refresher): every source, each
// kept to its min-interval. fetched is false when every source was
// skipped for it or not modified; err joins each failed source's error.
func (r *Refresher) Early(ctx context.Context, group string) (fetched bool, err error) {
	var errs []error
	for _, s := range r.Once(ctx, false) {
		fetched = fetched || !s.NotModified
		if s.Err != "" {
			errs = append(errs, errors.New(s.Source+": "+s.Err))
		}
	}
	return fetched, errors.Join(errs...)
}

// Loop refreshes now and every interval until ctx ends; each source's own
// MinInterval still applies.
func (r *Refresher) Loop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r.Once(ctx, false)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh is the operator's refresh (proxypoolctl refresh): every source
// now, progress after each; an error when none is configured or every
// one failed.
func (r *Refresher) Refresh(ctx context.Context, progress func(done, total int)) error {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sources()) == 0 {
		return errors.New("no sources configured (sources: in the config): nothing to refresh")
	}
	return AllFailed(r.run(ctx, true, progress))
}

func (r *Refresher) run(ctx context.Context, force bool, progress func(done, total int)) []upstream.SourceSummary {
	sums := r.Fetcher.refresh(ctx, r.Sink, r.sources(), force, progress)
	added := false
	for _, s := range sums {
		l := r.Log.WithField(logging.FieldSource, s.Source)
		switch {
		case s.Err != "":
			l.WithField(logging.FieldError, s.Err).Warnf("source %s failed: %s (its upstreams are kept)", s.Source, s.Err)
		case s.NotModified:
			l.Infof("source %s not modified", s.Source)
		default:
			added = added || s.New > 0
			l.Infof("source %s: %d new, %d seen again, %d gone, %d failed lines", s.Source, s.New, s.Seen, s.Gone, s.Failed)
		}
	}
	if added && r.Added != nil {
		r.Added()
	}
	return sums
}

// AllFailed is an error when every one of sums failed (none: nil).
func AllFailed(sums []upstream.SourceSummary) error {
	failed := 0
	for _, s := range sums {
		if s.Err != "" {
			failed++
		}
	}
	if failed > 0 && failed == len(sums) {
		return fmt.Errorf("every source failed (%d)", failed)
	}
	return nil
}
