package source

import (
	"context"
	"testing"
	"time"
)

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
		{"first scheduled refresh fetches", 0, func() int { return len(r.Due(ctx)) }, 1},
		{"scheduled refresh within the interval skips", 30 * time.Minute, func() int { return len(r.Due(ctx)) }, 1},
		{"scheduled refresh at the interval less a tenth fetches", 55 * time.Minute, func() int { return len(r.Due(ctx)) }, 2},
		{"early refresh past min-interval is not held by interval", 70 * time.Minute, func() int { return len(r.Once(ctx, false)) }, 3},
		{"scheduled refresh after it waits a whole interval again", 75 * time.Minute, func() int { return len(r.Due(ctx)) }, 3},
		{"early refresh within min-interval skips", 78 * time.Minute, func() int { return len(r.Once(ctx, false)) }, 3},
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
