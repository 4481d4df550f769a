package source

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/parse"
	"github.com/proxypool/proxypool/internal/upstream"
)

// Sink is where refreshed sources go (the store implements it).
type Sink interface {
	// SourceMeta returns the bookkeeping of the last fetch. Any error
	// (never fetched, store trouble) is taken as "no meta": fetch afresh.
	SourceMeta(ctx context.Context, name string) (upstream.SourceMeta, error)
	// UpsertSource replaces the set of upstreams the source lists with ups
	// and stores meta; it reports what changed.
	UpsertSource(ctx context.Context, meta upstream.SourceMeta, ups []upstream.Upstream) (upstream.SourceSummary, error)
	// RecordSourceError stores a failed fetch; the upstreams the source
	// listed before stay.
	RecordSourceError(ctx context.Context, meta upstream.SourceMeta, fetchErr error) error
}

// Toucher is optionally implemented by a Sink to note a fetch that found
// the source unchanged (meta carries the new LastFetch and validators).
// Without it an unchanged source writes nothing, and MinInterval counts
// from the last fetch that changed something or failed.
type Toucher interface {
	TouchSource(ctx context.Context, meta upstream.SourceMeta) error
}

// Retirer is optionally implemented by a Sink to retire the upstreams no
// source in live has listed for longer than after (the store: state
// retired, out of the pool) and say how many went.
type Retirer interface {
	Retire(ctx context.Context, after time.Duration, live []string) (int, error)
}

// Source is one configured source.
type Source struct {
	Name   string
	URL    string // file://, http(s)://, https://t.me/s/<channel>
	Format string // parse.Options.Format; "" is auto
	// Timeout bounds the whole fetch of this source (all Telegram pages);
	// 0 is DefaultTimeout.
	Timeout time.Duration
	// MinInterval skips the source when it was fetched more recently,
	// unless Refresh is forced; 0 never skips.
	MinInterval time.Duration
	// Interval is the source's period (sources[].interval, default
	// refresh.interval): a scheduled refresh (Refresher.Due, Loop) skips
	// the source until this long after its last fetch, less a tenth for
	// the timer's jitter; 0 fetches it at every scheduled refresh.
	Interval time.Duration
	// MaxBytes caps the body, compressed and decompressed; 0 is
	// DefaultMaxBytes.
	MaxBytes int64
}

// Fetcher fetches sources. The zero value works; fields left zero take the
// defaults named on them. A Fetcher is safe for concurrent use once its
// fields are set, and must not be copied after first use.
type Fetcher struct {
	// Client does the HTTP. Nil: a client that honours HTTP(S)_PROXY and
	// follows at most MaxRedirects redirects, none of them from a public
	// source to a private or loopback address (or from private to
	// loopback). A caller's client keeps its own redirect policy.
	Client       *http.Client
	MaxRedirects int                // DefaultMaxRedirects
	Logger       logrus.FieldLogger // nil: silent
	Concurrency  int                // sources fetched at once; DefaultConcurrency
	UserAgent    string             // DefaultUserAgent
	// TelegramBase replaces https://t.me for channel sources (tests point
	// it at a local server); DefaultTelegramBase.
	TelegramBase string
	// TelegramPages is how many preview pages (about 20 messages each) are
	// read per channel; DefaultTelegramPage.
	TelegramPages int
	// WorkDir resolves file://./relative paths; "" is the process's
	// working directory.
	WorkDir string
	Now     func() time.Time // time.Now
	// Progress, if set, is called after each source with the number done
	// and the total; calls are serialized and done only grows.
	Progress func(done, total int)

	ownOnce sync.Once
	own     *http.Client
	// classify replaces addrReach in tests, where every server is on
	// loopback and some must stand for public hosts.
	classify func(netip.Addr) reach
}

func (f *Fetcher) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *Fetcher) log() logrus.FieldLogger {
	if f.Logger != nil {
		return f.Logger
	}
	l := logrus.New()
	l.Out = io.Discard
	return l
}

// Refresh fetches every source (at most Concurrency at once), parses what
// changed and writes each source to sink with one UpsertSource call. It
// returns one summary per source, in the order given. Per-source failures
// are recorded through sink.RecordSourceError and in the summary's Err;
// they never stop the other sources. A source fetched less than its
// MinInterval ago is not fetched unless force is set: its summary has
// NotModified set, like a source the server reports unchanged (in both
// cases the store is untouched). Cancelling ctx ends the refresh; sources
// not done report the cancellation as their error.
func (f *Fetcher) Refresh(ctx context.Context, sink Sink, sources []Source, force bool) []upstream.SourceSummary {
	return f.refresh(ctx, sink, sources, when{force: force}, f.Progress)
}

// when says which sources a refresh skips: force none, due those whose
// Interval has not passed, otherwise those within their MinInterval.
type when struct{ force, due bool }

// refresh is Refresh reporting to progress (nil: nothing), so callers
// sharing a Fetcher each see their own.
func (f *Fetcher) refresh(ctx context.Context, sink Sink, sources []Source, w when, progress func(done, total int)) []upstream.SourceSummary {
	out := make([]upstream.SourceSummary, len(sources))
	n := f.Concurrency
	if n <= 0 {
		n = DefaultConcurrency
	}
	sem := make(chan struct{}, n)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done int
	)
	log := f.log()
	for i, src := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				out[i] = f.refreshOne(ctx, sink, src, w, log.WithField("SOURCE", src.Name))
				<-sem
			case <-ctx.Done():
				out[i] = upstream.SourceSummary{Source: src.Name, Err: fmt.Sprintf("refreshing source %q: %v", src.Name, ctx.Err())}
			}
			mu.Lock()
			done++
			if progress != nil {
				progress(done, len(sources))
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	f.closeIdle()
	return out
}

func (f *Fetcher) refreshOne(ctx context.Context, sink Sink, src Source, w when, log logrus.FieldLogger) upstream.SourceSummary {
	sum := upstream.SourceSummary{Source: src.Name}
	prev, err := sink.SourceMeta(ctx, src.Name)
	if err != nil {
		prev = upstream.SourceMeta{}
	}
	now := f.now()
	fresh := func(d time.Duration) bool {
		return d > 0 && !prev.LastFetch.IsZero() && now.Sub(prev.LastFetch) < d && prev.URL == src.URL
	}
	if !w.force && (fresh(src.MinInterval) || w.due && fresh(src.Interval-src.Interval/10)) {
		log.WithField("fetched_ago", now.Sub(prev.LastFetch).Round(time.Second)).Debug("source fresh, not fetched")
		sum.NotModified = true
		return sum
	}
	meta := prev
	meta.Name, meta.URL, meta.Format = src.Name, src.URL, src.Format
	meta.LastFetch = now

	fail := func(err error) upstream.SourceSummary {
		err = fmt.Errorf("fetching source %q: %w", src.Name, err)
		meta.LastError = err.Error()
		sum.Err = err.Error()
		if rerr := sink.RecordSourceError(ctx, meta, err); rerr != nil {
			sum.Err += fmt.Sprintf(" (and recording it failed: %v)", rerr)
		}
		log.WithError(err).Warn("source failed")
		return sum
	}

	start := time.Now()
	got, err := f.Fetch(ctx, src, prev)
	if err != nil {
		return fail(err)
	}
	if got.NotModified {
		sum.NotModified = true
		if t, ok := sink.(Toucher); ok {
			meta.ETag, meta.LastModified = got.ETag, got.LastModified
			if err := t.TouchSource(ctx, meta); err != nil {
				log.WithError(err).Warn("noting unchanged source")
			}
		}
		log.Debug("source not modified")
		return sum
	}
	results, err := parse.Parse(got.Body, parse.Options{Format: src.Format, Hint: src.URL, MaxBytes: maxBytes(src)})
	if err != nil {
		return fail(fmt.Errorf("parsing: %w", err))
	}
	ups := make([]upstream.Upstream, 0, len(results))
	var firstErr error
	firstLine := 0
	for _, r := range results {
		switch {
		case r.Skipped:
			sum.Skipped++
		case r.Err != nil:
			sum.Failed++
			if firstErr == nil {
				firstErr, firstLine = r.Err, r.Line
			}
		default:
			ups = append(ups, r.Upstream)
		}
	}
	if len(ups) == 0 && prev.Total > 0 {
		err := fmt.Errorf("no upstream in %d bytes (%d lines failed, %d skipped); keeping the %d listed before", len(got.Body), sum.Failed, sum.Skipped, prev.Total)
		if firstErr != nil {
			err = fmt.Errorf("%w; line %d: %v", err, firstLine, firstErr)
		}
		failed, skipped := sum.Failed, sum.Skipped
		sum = fail(err)
		sum.Failed, sum.Skipped = failed, skipped
		return sum
	}
	meta.ETag, meta.LastModified = got.ETag, got.LastModified
	meta.LastOK, meta.LastError = now, ""
	meta.Lines = len(results)
	meta.OK, meta.Failed = len(ups), sum.Failed
	res, err := sink.UpsertSource(ctx, meta, ups)
	if err != nil {
		sum.Err = fmt.Sprintf("storing source %q: %v", src.Name, err)
		log.WithError(err).Warn("storing source failed")
		return sum
	}
	res.Source, res.Failed, res.Skipped = src.Name, sum.Failed, sum.Skipped
	res.Err, res.NotModified = "", false
	entry := log.WithFields(logrus.Fields{
		"new": res.New, "seen": res.Seen, "gone": res.Gone, "failed": res.Failed,
		"skipped": res.Skipped, "bytes": len(got.Body), "took": time.Since(start).Round(time.Millisecond),
	})
	if firstErr != nil {
		entry = entry.WithField("first_error", fmt.Sprintf("line %d: %v", firstLine, firstErr))
	}
	entry.Info("source refreshed")
	return res
}
