package source

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// TestRefresher: one line per source in the log, Added once per refresh
// that brought new upstreams (not for an unchanged or failed source), and
// the operator's refresh fails only when every source did or none is
// configured.
func TestRefresher(t *testing.T) {
	srv := newListServer(t)
	srv.set("/a.txt", []byte("socks5://127.1.0.1:1080\nsocks5://127.1.0.2:1080\n"))
	var logged bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logged)
	log.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true, DisableColors: true})
	added := 0
	r := &Refresher{
		Sources: []Source{{Name: "a", URL: srv.URL + "/a.txt"}, {Name: "broken", URL: srv.URL + "/nope"}},
		Sink:    newMemSink(), Log: log, Added: func() { added++ },
	}
	ctx := context.Background()
	tests := []struct {
		name      string
		run       func() error
		wantAdded int
		wantLog   []string
		wantErr   string
	}{
		{"first refresh", func() error { r.Once(ctx, false); return nil }, 1,
			[]string{"source a: 2 new, 0 seen again, 0 gone, 0 failed lines", "source broken failed: ", "404 Not Found", "(its upstreams are kept)"}, ""},
		{"unchanged", func() error { r.Once(ctx, false); return nil }, 1, []string{"source a not modified"}, ""},
		{"operator, one source fails", func() error { return r.Refresh(ctx, nil) }, 1, []string{"source a not modified"}, ""},
		{"operator, every source fails", func() error {
			srv.fail("/a.txt", 500)
			return r.Refresh(ctx, func(done, total int) {})
		}, 1, []string{"source a failed: ", "500 Internal Server Error"}, "every source failed (2)"},
		{"operator, nothing configured", func() error {
			return (&Refresher{Sink: newMemSink()}).Refresh(ctx, nil)
		}, 1, nil, "no sources configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logged.Reset()
			err := tt.run()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("error %v, want %q", err, tt.wantErr)
			}
			if added != tt.wantAdded {
				t.Errorf("Added called %d times in all, want %d", added, tt.wantAdded)
			}
			for _, w := range tt.wantLog {
				if !strings.Contains(logged.String(), w) {
					t.Errorf("log does not say %q:\n%s", w, logged.String())
				}
			}
		})
	}
}

// TestRefresherEarly: the SLO guard's refresh says whether it fetched
// anything (a source within its min-interval is not fetched again) and
// names each failing source.
func TestRefresherEarly(t *testing.T) {
	srv := newListServer(t)
	srv.set("/a.txt", []byte("socks5://127.1.0.1:1080\n"))
	added := 0
	r := &Refresher{
		Fetcher: &Fetcher{},
		Sources: []Source{{Name: "a", URL: srv.URL + "/a.txt", MinInterval: time.Hour}},
		Sink:    newMemSink(), Added: func() { added++ },
	}
	ctx := context.Background()
	if fetched, err := r.Early(ctx, "us"); !fetched || err != nil || added != 1 {
		t.Fatalf("first: fetched %v, err %v, added %d; want fetched, no error, added once", fetched, err, added)
	}
	if fetched, err := r.Early(ctx, "us"); fetched || err != nil {
		t.Fatalf("within min-interval: fetched %v, err %v; want nothing fetched", fetched, err)
	}
	r.Sources = append(r.Sources, Source{Name: "broken", URL: srv.URL + "/nope"})
	if _, err := r.Early(ctx, ""); err == nil || !strings.Contains(err.Error(), "broken: ") {
		t.Fatalf("failing source: err %v, want one naming it", err)
	}
}

// TestIntervals proves sources[].interval and refresh.interval: a
// scheduled refresh (the timer's, run's Loop) fetches a source once per
// its interval (less a tenth for the timer's jitter), an early or an
// operator's refresh is held only by min-interval, and Loop ticks at the
// shorter of refresh.interval and any source's interval.
func TestIntervals(t *testing.T) {
	srv := newListServer(t)
	srv.set("/a.txt", []byte("socks5://127.1.0.1:1080\n"))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	r := &Refresher{
		Fetcher: &Fetcher{Now: func() time.Time { return now }},
		Sources: []Source{{Name: "a", URL: srv.URL + "/a.txt", Interval: time.Hour, MinInterval: 10 * time.Minute}},
		Sink:    openStore(t), // the real Sink: an unchanged fetch counts as one
	}
	ctx := context.Background()
	tests := []struct {
		name     string
		at       time.Duration
		run      func() int
		requests int // in all, after the step
	}{
		{"first scheduled refresh fetches", 0, func() int { return len(r.Due(ctx).Sources) }, 1},
		{"scheduled refresh within the interval skips", 30 * time.Minute, func() int { return len(r.Due(ctx).Sources) }, 1},
		{"scheduled refresh at the interval less a tenth fetches", 55 * time.Minute, func() int { return len(r.Due(ctx).Sources) }, 2},
		{"early refresh past min-interval is not held by interval", 70 * time.Minute, func() int { return len(r.Once(ctx, false).Sources) }, 3},
		{"scheduled refresh after it waits a whole interval again", 75 * time.Minute, func() int { return len(r.Due(ctx).Sources) }, 3},
		{"early refresh within min-interval skips", 78 * time.Minute, func() int { return len(r.Once(ctx, false).Sources) }, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = t0.Add(tt.at)
			if n := tt.run(); n != 1 {
				t.Fatalf("%d summaries, want 1", n)
			}
			if got, _ := srv.counts("/a.txt"); got != tt.requests {
				t.Errorf("%d requests to the source in all, want %d", got, tt.requests)
			}
		})
	}

	loops := []struct {
		name     string
		interval time.Duration // refresh.interval
		source   time.Duration // sources[].interval
	}{
		{"Loop ticks at refresh.interval", 100 * time.Millisecond, 0},
		{"Loop ticks at a shorter source interval", time.Hour, 100 * time.Millisecond},
	}
	for _, tt := range loops {
		t.Run(tt.name, func(t *testing.T) {
			srv := newListServer(t)
			srv.set("/b.txt", []byte("socks5://127.1.0.1:1080\n"))
			r := &Refresher{Sources: []Source{{Name: "b", URL: srv.URL + "/b.txt", Interval: tt.source}}, Sink: newMemSink()}
			ctx, cancel := context.WithTimeout(context.Background(), 450*time.Millisecond)
			defer cancel()
			r.Loop(ctx, tt.interval)
			if got, _ := srv.counts("/b.txt"); got < 3 || got > 6 {
				t.Errorf("%d fetches in 450ms, want one at once and one per 100ms", got)
			}
		})
	}
}
