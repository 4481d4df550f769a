package source

import (
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// What the fixtures hold, counted from the files and written down: a
// parser regression fails these tests instead of moving their
// expectations with it.
const (
	// monosans-scheme-uri.txt: 295 lines (197 http, 46 socks4, 52
	// socks5), all distinct, none failing.
	monosansUpstreams = 295
	// Its first 147 lines, the half TestRefreshIntoStore keeps.
	monosansHalf = 147
	// subscription-mfuu-v2ray.b64: 290 share links (222 trojan, 39 vmess,
	// 29 ss) naming 137 distinct upstreams; the rest list a server again
	// under another name.
	subscriptionUpstreams = 137
	// telegram/page1..3: 7 distinct share links; 7 lines of text that are
	// no upstream are skipped.
	telegramUpstreams, telegramSkipped = 7, 7
)

func TestRefreshConditionalAndChanges(t *testing.T) {
	srv := newListServer(t)
	full := readTestdata(t, "subscription-mfuu-v2ray.b64")
	srv.set("/sub", full)
	sink := newMemSink()
	f := &Fetcher{}
	srcs := []Source{{Name: "sub", URL: srv.URL + "/sub"}}
	ctx := context.Background()

	sum := f.Refresh(ctx, sink, srcs, false)[0]
	if sum.Err != "" || sum.New != subscriptionUpstreams || sum.Seen != 0 || sum.Gone != 0 || sum.Failed != 0 || sum.Skipped != 0 {
		t.Fatalf("first refresh: %+v; want new %d, nothing failed or skipped", sum, subscriptionUpstreams)
	}
	first := sink.ids("sub")
	meta := sink.meta["sub"]
	if meta.ETag == "" || meta.LastOK.IsZero() || meta.OK < subscriptionUpstreams || meta.URL != srcs[0].URL {
		t.Fatalf("meta not stored: %+v", meta)
	}

	// unchanged: one 304, nothing parsed or written, nothing lost
	sum = f.Refresh(ctx, sink, srcs, false)[0]
	if !sum.NotModified || sum.Err != "" || sum.New+sum.Seen+sum.Gone != 0 {
		t.Fatalf("second refresh: %+v", sum)
	}
	if req, body := srv.counts("/sub"); req != 2 || body != 1 {
		t.Fatalf("requests %d, bodies %d", req, body)
	}
	if n := sink.upsertCount("sub"); n != 1 {
		t.Fatalf("UpsertSource called %d times", n)
	}
	if got := sink.ids("sub"); len(got) != subscriptionUpstreams {
		t.Fatalf("after 304 the sink holds %d, want %d", len(got), subscriptionUpstreams)
	}

	// changed: the server now lists its first 145 links (84 of the
	// distinct upstreams) plus two plain proxies
	lines := strings.Split(string(mustB64(t, full)), "\n")
	changed := strings.Join(lines[:len(lines)/2], "\n") + "\nsocks5://127.1.2.3:1080\nsocks5://127.1.2.4:1080\n"
	srv.set("/sub", []byte(changed))
	const wantNew, wantSeen, wantGone = 2, 84, subscriptionUpstreams - 84
	sum = f.Refresh(ctx, sink, srcs, false)[0]
	if sum.New != wantNew || sum.Seen != wantSeen || sum.Gone != wantGone || sum.NotModified {
		t.Fatalf("changed body: %+v; want new %d seen %d gone %d", sum, wantNew, wantSeen, wantGone)
	}
	kept := 0
	for id := range sink.ids("sub") {
		if first[id] {
			kept++
		}
	}
	if kept != wantSeen {
		t.Errorf("the sink kept %d of the first refresh's upstreams, want %d", kept, wantSeen)
	}
}

func mustB64(t *testing.T, b []byte) []byte {
	t.Helper()
	out, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRefreshErrorKeepsUpstreams(t *testing.T) {
	srv := newListServer(t)
	body := readTestdata(t, "monosans-scheme-uri.txt")
	srv.set("/list.txt", body)
	sink := newMemSink()
	f := &Fetcher{}
	srcs := []Source{{Name: "free", URL: srv.URL + "/list.txt"}}
	ctx := context.Background()
	if sum := f.Refresh(ctx, sink, srcs, false)[0]; sum.Err != "" || sum.New != monosansUpstreams {
		t.Fatalf("first: %+v; want %d new", sum, monosansUpstreams)
	}
	tests := []struct {
		name    string
		breakIt func()
		wantErr string
	}{
		{"server error", func() { srv.fail("/list.txt", 500) }, "500 Internal Server Error"},
		{"error page served with 200", func() { srv.set("/list.txt", []byte("<html><body>Rate limited</body></html>\n")) }, "no upstream in"},
		{"empty body", func() { srv.set("/list.txt", nil) }, "keeping the"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.breakIt()
			errsBefore := sink.errCount("free")
			sum := f.Refresh(ctx, sink, srcs, false)[0]
			if !strings.Contains(sum.Err, tt.wantErr) || !strings.Contains(sum.Err, `fetching source "free"`) {
				t.Fatalf("summary error %q, want %q", sum.Err, tt.wantErr)
			}
			if sink.errCount("free") != errsBefore+1 {
				t.Fatal("error not recorded through the sink")
			}
			if m := sink.meta["free"]; m.LastError != sum.Err || m.LastFetch.IsZero() {
				t.Fatalf("recorded meta: %+v", m)
			}
			if got := sink.ids("free"); len(got) != monosansUpstreams {
				t.Fatalf("upstreams lost: %d left of %d", len(got), monosansUpstreams)
			}
			if n := sink.upsertCount("free"); n != 1 {
				t.Fatalf("UpsertSource called %d times", n)
			}
		})
	}
}

func TestRefreshMinInterval(t *testing.T) {
	srv := newListServer(t)
	srv.set("/list.txt", []byte("socks5://127.1.0.1:1080\n"))
	now := time.Date(2026, 8, 22, 12, 0, 0, 0, time.UTC)
	f := &Fetcher{Now: func() time.Time { return now }}
	sink := newMemSink()
	srcs := []Source{{Name: "m", URL: srv.URL + "/list.txt", MinInterval: 10 * time.Minute}}
	ctx := context.Background()
	f.Refresh(ctx, sink, srcs, false)
	now = now.Add(time.Minute)
	if sum := f.Refresh(ctx, sink, srcs, false)[0]; !sum.NotModified || sum.Err != "" {
		t.Fatalf("fresh source: %+v", sum)
	}
	if req, _ := srv.counts("/list.txt"); req != 1 {
		t.Fatalf("fresh source fetched: %d requests", req)
	}
	f.Refresh(ctx, sink, srcs, true) // forced
	if req, _ := srv.counts("/list.txt"); req != 2 {
		t.Fatalf("forced refresh did not fetch: %d requests", req)
	}
	now = now.Add(11 * time.Minute)
	f.Refresh(ctx, sink, srcs, false)
	if req, _ := srv.counts("/list.txt"); req != 3 {
		t.Fatalf("stale source not fetched: %d requests", req)
	}
}

func TestRefreshManySourcesOneFailing(t *testing.T) {
	srv := newListServer(t)
	body := readTestdata(t, "monosans-scheme-uri.txt")
	abs, _ := filepath.Abs("testdata/monosans-scheme-uri.txt")
	var srcs []Source
	for i := range 20 {
		switch {
		case i == 7:
			srcs = append(srcs, Source{Name: "broken", URL: srv.URL + "/nope"})
		case i == 8:
			srcs = append(srcs, Source{Name: "rel", URL: "file://./testdata/monosans-scheme-uri.txt"})
		case i == 9:
			srcs = append(srcs, Source{Name: "abs", URL: "file://" + abs})
		case i == 10:
			srcs = append(srcs, Source{Name: "tg", URL: "https://t.me/s/freeconfigs_demo"})
		default:
			p := fmt.Sprintf("/list%d.txt", i)
			srv.set(p, body)
			srcs = append(srcs, Source{Name: fmt.Sprintf("s%d", i), URL: srv.URL + p})
		}
	}
	var mu sync.Mutex
	var progress []int
	f := &Fetcher{Concurrency: 4, TelegramBase: srv.URL, Progress: func(done, total int) {
		mu.Lock()
		defer mu.Unlock()
		if total != 20 {
			t.Errorf("progress total %d", total)
		}
		progress = append(progress, done)
	}}
	sink := newMemSink()
	sums := f.Refresh(context.Background(), sink, srcs, false)
	if len(sums) != 20 {
		t.Fatalf("%d summaries", len(sums))
	}
	for i, s := range sums {
		if s.Source != srcs[i].Name {
			t.Fatalf("summary %d is for %q, want %q", i, s.Source, srcs[i].Name)
		}
		switch {
		case s.Source == "broken":
			if !strings.Contains(s.Err, "404 Not Found") || sink.errCount("broken") != 1 {
				t.Fatalf("broken source: %+v", s)
			}
		case s.Err != "":
			t.Fatalf("source %s failed: %s", s.Source, s.Err)
		case s.Source == "tg" && (s.New != telegramUpstreams || s.Skipped != telegramSkipped):
			t.Fatalf("source tg: %+v, want %d new, %d skipped", s, telegramUpstreams, telegramSkipped)
		case s.Source != "tg" && s.New != monosansUpstreams:
			t.Fatalf("source %s: %+v, want %d new", s.Source, s, monosansUpstreams)
		}
	}
	for i, d := range progress {
		if d != i+1 {
			t.Fatalf("progress %v", progress)
		}
	}
	if len(progress) != 20 {
		t.Fatalf("progress called %d times", len(progress))
	}
	if m := srv.maxInFly.Load(); m > 4 {
		t.Fatalf("%d requests in flight, Concurrency is 4", m)
	}
}

func TestRefreshCancelled(t *testing.T) {
	srv := newListServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	start := time.Now()
	sums := (&Fetcher{Concurrency: 1}).Refresh(ctx, newMemSink(), []Source{
		{Name: "a", URL: srv.URL + "/slow"}, {Name: "b", URL: srv.URL + "/slow"},
	}, false)
	if time.Since(start) > 3*time.Second {
		t.Fatal("cancel did not stop the refresh")
	}
	for _, s := range sums {
		if !strings.Contains(s.Err, "context canceled") {
			t.Fatalf("%+v", s)
		}
	}
}
