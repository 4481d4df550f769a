package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
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
	// RetireAfter (refresh.retire-after), when > 0 and Sink is a Retirer:
	// after every refresh, upstreams no source has listed for this long
	// leave the pool. Only Sources and Keep (sources filled by others than
	// this refresher, such as tor's) count as listing: a source taken out
	// of the config lists nothing.
	RetireAfter time.Duration
	Keep        []string

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

// Report is what one refresh did: a summary per source, and how many
// upstreams it retired (RetireErr: why retiring failed).
type Report struct {
	Sources   []upstream.SourceSummary
	Retired   int
	RetireErr string
}

// Once fetches every source (force: even those fetched within their
// MinInterval) and reports one summary per source and what it retired.
// With no source configured it fetches nothing, but still retires:
// upstreams of a source taken out of the config are no longer listed.
func (r *Refresher) Once(ctx context.Context, force bool) Report {
	r.init()
	if len(r.sources()) == 0 {
		r.Log.Warn("no sources configured (sources: in the config): nothing to refresh")
		return r.retire(ctx, Report{})
	}
	return r.run(ctx, when{force: force}, nil)
}

// Due is the scheduled refresh (the timer's `proxypoold refresh --due`,
// Loop): only the sources whose Interval has passed since their last
// fetch; the others are summarised as not modified.
func (r *Refresher) Due(ctx context.Context) Report {
	r.init()
	if len(r.sources()) == 0 {
		r.Log.Warn("no sources configured (sources: in the config): nothing to refresh")
		return r.retire(ctx, Report{})
	}
	return r.run(ctx, when{due: true}, nil)
}

// Early is the SLO guard's refresh (slo.Refresher): every source, each
// kept to its min-interval. fetched is false when every source was
// skipped for it or not modified; err joins each failed source's error.
func (r *Refresher) Early(ctx context.Context, group string) (fetched bool, err error) {
	var errs []error
	for _, s := range r.Once(ctx, false).Sources {
		fetched = fetched || !s.NotModified
		if s.Err != "" {
			errs = append(errs, errors.New(s.Source+": "+s.Err))
		}
	}
	return fetched, errors.Join(errs...)
}

// Loop refreshes now and then every interval, or more often when a
// source's own Interval is shorter, until ctx ends; each round fetches
// only the sources that are due (Due).
func (r *Refresher) Loop(ctx context.Context, interval time.Duration) {
	for _, s := range r.sources() {
		if s.Interval > 0 && s.Interval < interval {
			interval = s.Interval
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r.Due(ctx)
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
	return AllFailed(r.run(ctx, when{force: true}, progress).Sources)
}

func (r *Refresher) run(ctx context.Context, w when, progress func(done, total int)) Report {
	sums := r.Fetcher.refresh(ctx, r.Sink, r.sources(), w, progress)
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
			line := fmt.Sprintf("source %s: %d new, %d seen again, %d gone, %d failed lines", s.Source, s.New, s.Seen, s.Gone, s.Failed)
			if s.Removed > 0 {
				line += fmt.Sprintf(", %d removed by the operator (not brought back; proxypoolctl restore)", s.Removed)
			}
			l.Info(line)
		}
	}
	if added && r.Added != nil {
		r.Added()
	}
	return r.retire(ctx, Report{Sources: sums})
}

// retire runs the Sink's Retirer after a refresh, when RetireAfter is set,
// and logs what it did.
func (r *Refresher) retire(ctx context.Context, rep Report) Report {
	rt, ok := r.Sink.(Retirer)
	if !ok || r.RetireAfter <= 0 {
		return rep
	}
	live := slices.Clone(r.Keep)
	for _, s := range r.sources() {
		live = append(live, s.Name)
	}
	if live == nil {
		live = []string{} // none configured: only Manual's links count
	}
	n, err := rt.Retire(ctx, r.RetireAfter, live)
	switch {
	case err != nil:
		rep.RetireErr = err.Error()
		r.Log.WithField(logging.FieldError, rep.RetireErr).Warnf("refresh: %v", err)
	case n > 0:
		rep.Retired = n
		r.Log.Infof("retired %d upstreams no source has listed for %s (proxypoolctl list --state retired)", n, r.RetireAfter)
	}
	return rep
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
