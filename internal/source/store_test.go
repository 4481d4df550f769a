package source

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/store"
)

// The store is the real Sink: these tests run Refresh against a SQLite
// file the way proxypoold refresh does.

var _ Sink = (*store.Store)(nil)
var _ Toucher = (*store.Store)(nil)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "proxypool.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func listed(t *testing.T, st *store.Store, source string) map[string]bool {
	t.Helper()
	recs, err := st.List(context.Background(), store.Filter{Source: source})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range recs {
		out[r.ID] = true
	}
	return out
}

func TestRefreshIntoStore(t *testing.T) {
	srv := newListServer(t)
	body := readTestdata(t, "monosans-scheme-uri.txt")
	srv.set("/list.txt", body)
	st := openStore(t)
	f := &Fetcher{TelegramBase: srv.URL}
	ctx := context.Background()
	srcs := []Source{
		{Name: "free", URL: srv.URL + "/list.txt", MinInterval: time.Hour},
		{Name: "tg", URL: "https://t.me/s/freeconfigs_demo"},
	}

	sums := f.Refresh(ctx, st, srcs, false)
	if sums[0].Err != "" || sums[0].New != monosansUpstreams || sums[1].Err != "" || sums[1].New != telegramUpstreams {
		t.Fatalf("first refresh: %+v", sums)
	}
	if got := listed(t, st, "free"); len(got) != monosansUpstreams {
		t.Fatalf("store lists %d for free, want %d", len(got), monosansUpstreams)
	}
	if got := listed(t, st, "tg"); len(got) != telegramUpstreams {
		t.Fatalf("store lists %d for tg, want %d", len(got), telegramUpstreams)
	}
	m, err := st.SourceMeta(ctx, "free")
	if err != nil || m.ETag == "" || m.Total != monosansUpstreams {
		t.Fatalf("meta %+v %v", m, err)
	}

	// forced: the server answers 304, the store is touched, nothing lost
	sums = f.Refresh(ctx, st, srcs, true)
	if !sums[0].NotModified || !sums[1].NotModified {
		t.Fatalf("forced unchanged refresh: %+v", sums)
	}
	if req, full := srv.counts("/list.txt"); req != 2 || full != 1 {
		t.Fatalf("requests %d full %d", req, full)
	}
	if got := listed(t, st, "free"); len(got) != monosansUpstreams {
		t.Fatalf("304 lost upstreams: %d of %d", len(got), monosansUpstreams)
	}
	m2, _ := st.SourceMeta(ctx, "free")
	if !m2.LastFetch.After(m.LastFetch) && !m2.LastFetch.Equal(m.LastFetch) {
		t.Fatalf("touch did not move last fetch: %v → %v", m.LastFetch, m2.LastFetch)
	}

	// not forced: "free" was fetched under an hour ago and is skipped
	f.Refresh(ctx, st, srcs[:1], false)
	if req, _ := srv.counts("/list.txt"); req != 2 {
		t.Fatalf("min-interval ignored: %d requests", req)
	}

	// the list host fails: the error is recorded, the upstreams stay
	srv.fail("/list.txt", 503)
	sums = f.Refresh(ctx, st, srcs[:1], true)
	if !strings.Contains(sums[0].Err, "503 Service Unavailable") {
		t.Fatalf("summary %+v", sums[0])
	}
	m3, _ := st.SourceMeta(ctx, "free")
	if !strings.Contains(m3.LastError, "503") || m3.ETag != m.ETag {
		t.Fatalf("error meta %+v", m3)
	}
	if got := listed(t, st, "free"); len(got) != monosansUpstreams {
		t.Fatalf("failure lost upstreams: %d of %d", len(got), monosansUpstreams)
	}

	// it comes back with half the list: the rest is gone
	lines := strings.SplitAfter(string(body), "\n")
	half := []byte(strings.Join(lines[:len(lines)/2], ""))
	srv.set("/list.txt", half)
	sums = f.Refresh(ctx, st, srcs[:1], true)
	if sums[0].Err != "" || sums[0].Seen != monosansHalf || sums[0].Gone != monosansUpstreams-monosansHalf || sums[0].New != 0 {
		t.Fatalf("half list: %+v (want seen %d gone %d)", sums[0], monosansHalf, monosansUpstreams-monosansHalf)
	}
	if got := listed(t, st, "free"); len(got) != monosansHalf {
		t.Fatalf("store lists %d, want %d", len(got), monosansHalf)
	}
}
