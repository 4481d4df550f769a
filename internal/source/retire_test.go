package source

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/upstream"
)

var _ Retirer = (*store.Store)(nil)

// TestRefresherRetires proves refresh.retire-after through the refresh the
// timer runs, into a real store: an upstream the operator removed stays
// removed while its source lists it (the summary and the log say so), an
// upstream whose line left the source is retired once no source has
// listed it for retire-after, and 0 retires nothing.
func TestRefresherRetires(t *testing.T) {
	srv := newListServer(t)
	srv.set("/a.txt", []byte("socks5://127.85.0.1:1080\nsocks5://127.85.0.2:1080\nsocks5://127.85.0.3:1080\n"))
	st := openStore(t)
	var logged bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logged)
	log.SetFormatter(&logrus.TextFormatter{DisableTimestamp: true, DisableColors: true})
	r := &Refresher{Sources: []Source{{Name: "a", URL: srv.URL + "/a.txt"}}, Sink: st, Log: log}
	ctx := context.Background()
	id := func(i int) string {
		return upstream.MustNew(map[string]any{"type": "socks5", "server": fmt.Sprintf("127.85.0.%d", i), "port": 1080}).ID
	}
	state := func(i int) upstream.State {
		t.Helper()
		rec, err := st.Get(ctx, id(i))
		if err != nil {
			t.Fatal(err)
		}
		return rec.State
	}

	rep := r.Once(ctx, true)
	if len(rep.Sources) != 1 || rep.Sources[0].New != 3 || rep.Retired != 0 {
		t.Fatalf("first refresh: %+v", rep)
	}
	for i := 1; i <= 3; i++ {
		st.Submit(upstream.CheckResult{ID: id(i), At: time.Now(), OK: true, TotalMS: 20, ExitIP: "198.51.100.1", Anonymity: upstream.AnonElite})
	}
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := st.Remove(ctx, "uid 0 (root)", id(1)); n != 1 || err != nil {
		t.Fatalf("remove: %d, %v", n, err)
	}

	type step struct {
		name        string
		body        string // the list's new text; "" leaves it as it is
		retireAfter time.Duration
		sleep       time.Duration
		want        Report
		wantStates  []upstream.State // of 1, 2, 3
		wantLog     string
	}
	steps := []step{
		{name: "3 leaves the list, 1 is removed", body: "socks5://127.85.0.1:1080\nsocks5://127.85.0.2:1080\n", retireAfter: time.Hour,
			want:       Report{Sources: []upstream.SourceSummary{{Source: "a", Seen: 1, Gone: 1, Removed: 1}}},
			wantStates: []upstream.State{upstream.Removed, upstream.Healthy, upstream.Healthy},
			wantLog:    "source a: 0 new, 1 seen again, 1 gone, 0 failed lines, 1 removed by the operator"},
		{name: "retire-after 0 never retires", retireAfter: 0, sleep: 30 * time.Millisecond,
			want:       Report{Sources: []upstream.SourceSummary{{Source: "a", NotModified: true}}},
			wantStates: []upstream.State{upstream.Removed, upstream.Healthy, upstream.Healthy}},
		{name: "unlisted longer than retire-after", retireAfter: 20 * time.Millisecond,
			want:       Report{Sources: []upstream.SourceSummary{{Source: "a", NotModified: true}}, Retired: 1},
			wantStates: []upstream.State{upstream.Removed, upstream.Healthy, upstream.Retired},
			wantLog:    "retired 1 upstreams no source has listed for 20ms"},
		{name: "listed again, 3 is back", body: "socks5://127.85.0.1:1080\nsocks5://127.85.0.2:1080\nsocks5://127.85.0.3:1080\n",
			retireAfter: 20 * time.Millisecond,
			want:        Report{Sources: []upstream.SourceSummary{{Source: "a", New: 1, Seen: 1, Removed: 1}}},
			wantStates:  []upstream.State{upstream.Removed, upstream.Healthy, upstream.Unknown}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			logged.Reset()
			if s.body != "" {
				srv.set("/a.txt", []byte(s.body))
			}
			time.Sleep(s.sleep)
			r.RetireAfter = s.retireAfter
			got := r.Once(ctx, true)
			if len(got.Sources) != 1 || got.Retired != s.want.Retired || got.RetireErr != "" {
				t.Fatalf("report %+v, want %+v", got, s.want)
			}
			g, w := got.Sources[0], s.want.Sources[0]
			if g.Source != w.Source || g.New != w.New || g.Seen != w.Seen || g.Gone != w.Gone || g.Removed != w.Removed ||
				g.NotModified != w.NotModified || g.Err != "" {
				t.Fatalf("summary %+v, want %+v", g, w)
			}
			for i, want := range s.wantStates {
				if got := state(i + 1); got != want {
					t.Errorf("upstream %d: %s, want %s", i+1, got, want)
				}
			}
			if !strings.Contains(logged.String(), s.wantLog) {
				t.Errorf("log does not say %q:\n%s", s.wantLog, logged.String())
			}
		})
	}
	healthy, err := st.Healthy(ctx)
	if err != nil || len(healthy) != 1 || healthy[0].ID != id(2) {
		t.Fatalf("served after the steps: %d upstreams, %v; want only 2", len(healthy), err)
	}

	// a taken out of the config: what it listed retires, the tombstone stays
	r.Sources, r.RetireAfter = nil, 20*time.Millisecond
	time.Sleep(30 * time.Millisecond)
	if rep := r.Once(ctx, false); rep.Retired != 2 || rep.RetireErr != "" {
		t.Fatalf("refresh with no source configured: %+v, want 2 retired", rep)
	}
	for i, want := range []upstream.State{upstream.Removed, upstream.Retired, upstream.Retired} {
		if got := state(i + 1); got != want {
			t.Errorf("source gone: upstream %d: %s, want %s", i+1, got, want)
		}
	}
}
