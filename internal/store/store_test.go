package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/store/pgtest"
	"github.com/proxypool/proxypool/internal/upstream"
)

var t0 = time.UnixMilli(1_700_000_000_000)

// backendEnv selects the backend the suite runs on: unset or "sqlite"
// for a file per test, "postgres" for a database per test on the binary's
// own PostgreSQL (scripts/test.sh runs the suite both ways).
const backendEnv = "PROXYPOOL_TEST_STORE"

// testDatabase is where a test keeps its store on the suite's backend.
func testDatabase(t testing.TB) string {
	t.Helper()
	switch b := os.Getenv(backendEnv); b {
	case "", "sqlite":
		return filepath.Join(t.TempDir(), "proxypool.db")
	case "postgres":
		return pgtest.Database(t)
	default:
		t.Fatalf("%s=%q: want sqlite or postgres", backendEnv, b)
		return ""
	}
}

// onPostgres reports whether the suite runs on PostgreSQL.
func onPostgres() bool { return os.Getenv(backendEnv) == "postgres" }

// sqliteOnly skips a test of the SQLite file itself (its header, modes,
// WAL, a process killed mid-write) when the suite runs on PostgreSQL.
func sqliteOnly(t testing.TB) {
	t.Helper()
	if onPostgres() {
		t.Skip("tests the SQLite file; the suite runs on PostgreSQL")
	}
}

func openT(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	path := testDatabase(t)
	s, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// reread checks what st wrote from another process (readOnly, given a
// read-only open of path) and after a restart (reopened, given path opened
// again once st is closed).
func reread(t *testing.T, st *Store, path string, readOnly, reopened func(s *Store)) {
	t.Helper()
	ctx := context.Background()
	ro, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	readOnly(ro)
	ro.Close()
	st.Close()
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reopened(s)
}

// openWith is openT with us added from source "manual".
func openWith(t testing.TB, us ...upstream.Upstream) (*Store, string) {
	t.Helper()
	s, path := openT(t, Options{})
	if _, err := s.Add(context.Background(), "manual", us...); err != nil {
		t.Fatal(err)
	}
	return s, path
}

// up returns a distinct socks5 upstream for each i.
func up(i int) upstream.Upstream {
	return upstream.MustNew(map[string]any{
		"type": "socks5", "server": fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "port": 1080,
	})
}

func ups(is ...int) []upstream.Upstream {
	out := make([]upstream.Upstream, len(is))
	for k, i := range is {
		out[k] = up(i)
	}
	return out
}

func ok(id string, at time.Time, exit, country string) upstream.CheckResult {
	return upstream.CheckResult{ID: id, At: at, OK: true, TotalMS: 120, ExitIP: exit, Country: country, Anonymity: upstream.AnonElite}
}

func fail(id string, at time.Time) upstream.CheckResult {
	return upstream.CheckResult{ID: id, At: at, Cause: upstream.CauseRefused}
}

func submit(t testing.TB, s *Store, rs ...upstream.CheckResult) {
	t.Helper()
	for _, r := range rs {
		s.Submit(r)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func ids(recs []upstream.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func idsOf(is ...int) []string {
	out := make([]string, len(is))
	for k, i := range is {
		out[k] = up(i).ID
	}
	return out
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

func TestUpsertSourceAcrossRefreshes(t *testing.T) {
	ctx := context.Background()
	s, _ := openT(t, Options{})
	// 9 is listed by both sources; 7 becomes healthy before "a" drops it.
	if _, err := s.UpsertSource(ctx, upstream.SourceMeta{Name: "b", URL: "file:///b"}, ups(9)); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name     string
		list     []int
		before   func()
		want     upstream.SourceSummary
		wantIn   []int // upstreams that must exist after the step
		wantGone []int // upstreams that must not exist
		listedA  []int
	}{
		{name: "first fetch, duplicates counted once", list: []int{1, 2, 3, 1, 7, 9, 2},
			want:   upstream.SourceSummary{Source: "a", New: 4, Seen: 1},
			wantIn: []int{1, 2, 3, 7, 9}, listedA: []int{1, 2, 3, 7, 9}},
		{name: "second fetch drops 1, 7 and 9, adds 4", list: []int{2, 3, 4},
			before: func() { submit(t, s, ok(up(7).ID, t0, "1.1.1.1", "US")) },
			want:   upstream.SourceSummary{Source: "a", New: 1, Seen: 2, Gone: 3},
			// 1 was never healthy and nobody lists it: deleted. 7 was healthy: kept.
			// 9 is still listed by b: kept.
			wantIn: []int{2, 3, 4, 7, 9}, wantGone: []int{1}, listedA: []int{2, 3, 4}},
		{name: "unchanged list", list: []int{4, 3, 2},
			want:   upstream.SourceSummary{Source: "a", Seen: 3},
			wantIn: []int{2, 3, 4, 7, 9}, wantGone: []int{1}, listedA: []int{2, 3, 4}},
		{name: "empty list unlinks everything", list: nil,
			want:   upstream.SourceSummary{Source: "a", Gone: 3},
			wantIn: []int{7, 9}, wantGone: []int{1, 2, 3, 4}, listedA: nil},
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.before != nil {
				st.before()
			}
			meta := upstream.SourceMeta{Name: "a", URL: "https://x/a.txt", Format: "socks5", ETag: fmt.Sprintf(`"e%d"`, i),
				Lines: len(st.list), OK: len(st.list), Failed: 2}
			st.want.Failed = 2
			sum, err := s.UpsertSource(ctx, meta, ups(st.list...))
			if err != nil {
				t.Fatal(err)
			}
			if sum != st.want {
				t.Fatalf("summary %+v, want %+v", sum, st.want)
			}
			for _, i := range st.wantIn {
				if _, err := s.Get(ctx, up(i).ID); err != nil {
					t.Errorf("upstream %d: %v", i, err)
				}
			}
			for _, i := range st.wantGone {
				if _, err := s.Get(ctx, up(i).ID); !errors.Is(err, ErrNotFound) {
					t.Errorf("upstream %d: err %v, want ErrNotFound", i, err)
				}
			}
			recs, err := s.List(ctx, Filter{Source: "a"})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := sorted(ids(recs)), sorted(idsOf(st.listedA...)); !reflect.DeepEqual(got, want) && len(got)+len(want) > 0 {
				t.Fatalf("listed by a: %v, want %v", got, want)
			}
			m, err := s.SourceMeta(ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			if m.ETag != meta.ETag || m.Total != len(st.listedA) || m.Failed != 2 || m.LastFetch.IsZero() || m.LastOK.IsZero() {
				t.Fatalf("source meta %+v", m)
			}
		})
	}
	r9, _ := s.Get(ctx, up(9).ID)
	if !reflect.DeepEqual(r9.Sources, []string{"b"}) {
		t.Fatalf("sources of 9: %v", r9.Sources)
	}
	if _, err := s.SourceMeta(ctx, "never"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown source: %v", err)
	}
	srcs, err := s.Sources(ctx)
	if err != nil || len(srcs) != 2 || srcs[0].Name != "a" || srcs[1].Name != "b" {
		t.Fatalf("sources %+v %v", srcs, err)
	}
}

func TestSourceErrorAndNotModifiedKeepUpstreams(t *testing.T) {
	ctx := context.Background()
	s, _ := openT(t, Options{})
	meta := upstream.SourceMeta{Name: "a", URL: "https://x/a", ETag: `"v1"`, Lines: 3, OK: 3}
	if _, err := s.UpsertSource(ctx, meta, ups(1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordSourceError(ctx, upstream.SourceMeta{Name: "a", URL: "https://x/a"}, errors.New("fetching: 503")); err != nil {
		t.Fatal(err)
	}
	m, _ := s.SourceMeta(ctx, "a")
	if m.LastError != "fetching: 503" || m.ETag != `"v1"` || m.Total != 3 {
		t.Fatalf("after error: %+v", m)
	}
	if err := s.TouchSource(ctx, upstream.SourceMeta{Name: "a", URL: "https://x/a"}); err != nil {
		t.Fatal(err)
	}
	m, _ = s.SourceMeta(ctx, "a")
	if m.LastError != "" || m.ETag != `"v1"` || m.Total != 3 {
		t.Fatalf("after not-modified: %+v", m)
	}
	if recs, _ := s.List(ctx, Filter{Source: "a"}); len(recs) != 3 {
		t.Fatalf("%d upstreams listed, want 3", len(recs))
	}
	// A source that only ever failed exists but lists nothing.
	if err := s.RecordSourceError(ctx, upstream.SourceMeta{Name: "dead"}, errors.New("dns")); err != nil {
		t.Fatal(err)
	}
	if m, err := s.SourceMeta(ctx, "dead"); err != nil || m.LastError != "dns" {
		t.Fatalf("%+v %v", m, err)
	}
}

func TestGetReturnsWhatWasAdded(t *testing.T) {
	ctx := context.Background()
	s, _ := openT(t, Options{})
	vm := upstream.MustNew(map[string]any{
		"type": "vmess", "server": "v.example", "port": "443", "uuid": "b831381d-6324-4d53-ad4f-8cda48b30811",
		"alterId": 0, "cipher": "auto", "tls": true, "network": "ws", "name": "🇺🇸 US 1",
		"ws-opts": map[string]any{"path": "/ray", "headers": map[string]any{"Host": "cdn.example"}},
		"alpn":    []any{"h2", "http/1.1"}, "x-ratio": 1.5,
	})
	tor := upstream.MustNew(map[string]any{"type": "tor", "server": "127.0.0.1", "port": 9060, "group": "us"})
	n, err := s.Add(ctx, "manual", vm, tor, vm)
	if err != nil || n != 2 {
		t.Fatalf("added %d, %v", n, err)
	}
	for _, want := range []upstream.Upstream{vm, tor} {
		got, err := s.Get(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Upstream, want) {
			t.Fatalf("got  %#v\nwant %#v", got.Upstream, want)
		}
		if got.State != upstream.Unknown || got.NextCheck.IsZero() || got.FirstSeen.IsZero() ||
			!reflect.DeepEqual(got.Sources, []string{"manual"}) {
			t.Fatalf("status of new upstream: %+v sources %v", got.Status, got.Sources)
		}
	}
	if n, err := s.Add(ctx, "manual", vm); err != nil || n != 0 {
		t.Fatalf("re-add: %d %v", n, err)
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(nope): %v", err)
	}
}

func TestRemove(t *testing.T) {
	ctx := context.Background()
	s, _ := openT(t, Options{})
	if _, err := s.Add(ctx, "manual", ups(1, 2, 3)...); err != nil {
		t.Fatal(err)
	}
	submit(t, s, ok(up(1).ID, t0, "1.1.1.1", "US"))
	tests := []struct {
		ids      []string
		want     int
		wantLeft int
	}{
		{idsOf(2, 99), 1, 2},
		{idsOf(2), 0, 2},
		{idsOf(1, 3), 2, 0},
	}
	for _, tt := range tests {
		n, err := s.Remove(ctx, "test", tt.ids...)
		if err != nil || n != tt.want {
			t.Fatalf("Remove(%v) = %d, %v; want %d", tt.ids, n, err, tt.want)
		}
		if c, _ := s.Counts(ctx); c.Total != tt.wantLeft {
			t.Fatalf("after Remove(%v): %d left, want %d", tt.ids, c.Total, tt.wantLeft)
		}
	}
	if h, err := s.History(ctx, up(1).ID, 0); !errors.Is(err, ErrNotFound) || h != nil {
		t.Fatalf("history of removed: %v %v", h, err)
	}
}

// fixture: 10 upstreams; 0-3 healthy US, 4-5 healthy DE, 6 failing, 7-9 unknown.
// 0-4 listed by "a", 5-9 by "b"; 8 and 9 are http.
func fixture(t *testing.T, s *Store) {
	ctx := context.Background()
	if _, err := s.UpsertSource(ctx, upstream.SourceMeta{Name: "a"}, ups(0, 1, 2, 3, 4)); err != nil {
		t.Fatal(err)
	}
	b := ups(5, 6, 7)
	for i := 8; i <= 9; i++ {
		b = append(b, upstream.MustNew(map[string]any{"type": "http", "server": fmt.Sprintf("10.0.0.%d", i), "port": 8080}))
	}
	if _, err := s.UpsertSource(ctx, upstream.SourceMeta{Name: "b"}, b); err != nil {
		t.Fatal(err)
	}
	var rs []upstream.CheckResult
	for i := 0; i <= 3; i++ {
		r := ok(up(i).ID, t0, fmt.Sprintf("8.8.8.%d", i%2), "US")
		r.TotalMS = float64(100 * (i + 1))
		rs = append(rs, r)
	}
	rs = append(rs, ok(up(4).ID, t0, "9.9.9.9", "DE"), ok(up(5).ID, t0, "9.9.9.8", "DE"))
	rs = append(rs, ok(up(6).ID, t0, "7.7.7.7", "FR"), fail(up(6).ID, t0.Add(time.Second)))
	submit(t, s, rs...)
}

func TestListFiltersAndPaging(t *testing.T) {
	ctx := context.Background()
	s, _ := openT(t, Options{})
	fixture(t, s)
	tests := []struct {
		name string
		f    Filter
		want int
	}{
		{"all", Filter{}, 10},
		{"healthy", Filter{State: upstream.Healthy}, 6},
		{"failing", Filter{State: upstream.Failing}, 1},
		{"unknown", Filter{State: upstream.Unknown}, 3},
		{"country any case", Filter{Country: "us"}, 4},
		{"healthy DE from b", Filter{State: upstream.Healthy, Country: "DE", Source: "b"}, 1},
		{"source a", Filter{Source: "a"}, 5},
		{"type http", Filter{Type: "HTTP"}, 2},
		{"ids", Filter{IDs: idsOf(1, 2, 77)}, 2},
		{"empty ids", Filter{IDs: []string{}}, 0},
		{"group", Filter{Group: "us"}, 0},
		{"limit", Filter{Limit: 3}, 3},
		{"offset past end", Filter{Offset: 20}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, err := s.List(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != tt.want {
				t.Fatalf("%d records, want %d: %v", len(recs), tt.want, ids(recs))
			}
		})
	}
	for _, order := range []string{"", "-score", "latency", "country", "next_check"} {
		all, err := s.List(ctx, Filter{OrderBy: order})
		if err != nil {
			t.Fatal(err)
		}
		var paged []string
		for off := 0; off < 12; off += 3 {
			page, err := s.List(ctx, Filter{OrderBy: order, Limit: 3, Offset: off})
			if err != nil {
				t.Fatal(err)
			}
			paged = append(paged, ids(page)...)
		}
		if !reflect.DeepEqual(paged, ids(all)) {
			t.Fatalf("order %q: pages %v != all %v", order, paged, ids(all))
		}
	}
	best, _ := s.List(ctx, Filter{OrderBy: "-score", Limit: 1})
	if best[0].ID != up(0).ID {
		t.Fatalf("best score is %s (%v), want the 100 ms one", best[0].ID, best[0].Score)
	}
	if _, err := s.List(ctx, Filter{OrderBy: "score; DROP TABLE upstreams"}); err == nil {
		t.Fatal("bad order accepted")
	}
	h, err := s.Healthy(ctx)
	if err != nil || len(h) != 6 || h[0].ID != up(0).ID {
		t.Fatalf("Healthy: %d %v", len(h), err)
	}
	c, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := Counts{Total: 10, Healthy: 6,
		ByState:       map[string]int{"healthy": 6, "failing": 1, "unknown": 3},
		BySource:      map[string]int{"a": 5, "b": 5},
		ByCountry:     map[string]int{"US": 4, "DE": 2},
		ByType:        map[string]int{"socks5": 8, "http": 2},
		ByAnonymity:   map[string]int{"elite": 6},
		ByGroup:       map[string]int{},
		ByClass:       map[string]int{"": 6}, // no ASN database: every servable one unknown
		DistinctExits: 5, HealthyExits: 4}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("counts\n got %+v\nwant %+v", c, want)
	}
}

func TestDueOrdering(t *testing.T) {
	ctx := context.Background()
	s, _ := openT(t, Options{})
	if _, err := s.Add(ctx, "manual", ups(1, 2, 3, 4)...); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, r := range []struct {
		i  int
		at time.Time
	}{{1, now.Add(-time.Minute)}, {2, now.Add(-time.Hour)}, {3, now.Add(time.Hour)}, {4, now.Add(-2 * time.Minute)}} {
		if err := s.Reschedule(ctx, idsOf(r.i), r.at); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		limit int
		want  []string
	}{
		{0, idsOf(2, 4, 1)},
		{2, idsOf(2, 4)},
	}
	for _, tt := range tests {
		due, err := s.Due(ctx, now, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ids(due), tt.want) {
			t.Fatalf("Due(limit %d) = %v, want %v", tt.limit, ids(due), tt.want)
		}
	}
	// A check moves the upstream out of the due set.
	submit(t, s, ok(up(2).ID, now, "1.2.3.4", "US"))
	if due, _ := s.Due(ctx, now, 0); !reflect.DeepEqual(ids(due), idsOf(4, 1)) {
		t.Fatalf("after check: %v", ids(due))
	}
	// Reschedule with no ids: everything due.
	if err := s.Reschedule(ctx, nil, now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.Due(ctx, now, 0); len(due) != 4 {
		t.Fatalf("after reschedule all: %d due", len(due))
	}
}

func TestVersionBumpsOnlyOnServableChanges(t *testing.T) {
	ctx := context.Background()
	var seen atomic.Uint64
	s, _ := openT(t, Options{OnChange: func(v uint64) { seen.Store(v) }, Policy: upstream.Policy{MaxFailures: 2}})
	a, b := up(1).ID, up(2).ID
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	steps := []struct {
		name string
		do   func() error
		bump bool
	}{
		{"add unknown upstreams", func() error { _, err := s.Add(ctx, "manual", ups(1, 2, 3)...); return err }, false},
		{"first ok: enters the servable set", func() error { submit(t, s, ok(a, at(1), "1.1.1.1", "US")); return nil }, true},
		{"ok again, other latency", func() error {
			r := ok(a, at(2), "1.1.1.1", "US")
			r.TotalMS = 900
			submit(t, s, r)
			return nil
		}, false},
		{"passive ok", func() error {
			submit(t, s, upstream.CheckResult{ID: a, At: at(3), OK: true, Passive: true, TotalMS: 50})
			return nil
		}, false},
		{"exit ip changes", func() error { submit(t, s, ok(a, at(4), "1.1.1.2", "US")); return nil }, true},
		{"country changes", func() error { submit(t, s, ok(a, at(5), "1.1.1.2", "CA")); return nil }, true},
		{"anonymity becomes transparent: leaves the set", func() error {
			r := ok(a, at(6), "1.1.1.2", "CA")
			r.Anonymity = upstream.AnonTransparent
			submit(t, s, r)
			return nil
		}, true},
		{"elite again", func() error { submit(t, s, ok(a, at(7), "1.1.1.2", "CA")); return nil }, true},
		{"failure: healthy to failing", func() error { submit(t, s, fail(a, at(8))); return nil }, true},
		{"failing to dead", func() error { submit(t, s, fail(a, at(9))); return nil }, false},
		{"unknown upstream fails", func() error { submit(t, s, fail(b, at(9))); return nil }, false},
		{"unknown id ignored", func() error { submit(t, s, ok("nope", at(9), "1.1.1.1", "US")); return nil }, false},
		{"untrusted ok is not servable", func() error {
			r := ok(b, at(10), "2.2.2.2", "US")
			r.Untrusted = true
			submit(t, s, r)
			return nil
		}, false},
		{"reschedule", func() error { return s.Reschedule(ctx, nil, at(11)) }, false},
		{"remove a non-servable upstream", func() error { _, err := s.Remove(ctx, "test", b); return err }, false},
		{"healthy again", func() error { submit(t, s, ok(a, at(12), "1.1.1.2", "CA")); return nil }, true},
		{"many results in one batch, net change", func() error {
			submit(t, s, fail(a, at(13)), ok(a, at(14), "1.1.1.2", "CA"), ok(up(3).ID, at(14), "3.3.3.3", "US"))
			return nil
		}, true},
		{"remove a servable upstream", func() error { _, err := s.Remove(ctx, "test", a); return err }, true},
	}
	prev, err := s.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		v, err := s.Version(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if (v > prev) != st.bump {
			t.Fatalf("%s: version %d -> %d, want bump=%v", st.name, prev, v, st.bump)
		}
		prev = v
	}
	deadline := time.Now().Add(2 * time.Second)
	for seen.Load() != prev && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if seen.Load() != prev {
		t.Fatalf("OnChange saw %d, want %d", seen.Load(), prev)
	}
}

func TestHistoryIsBounded(t *testing.T) {
	ctx := context.Background()
	s, path := openT(t, Options{HistoryPerUpstream: 4})
	if _, err := s.Add(ctx, "manual", up(1)); err != nil {
		t.Fatal(err)
	}
	id := up(1).ID
	for i := 0; i < 10; i++ {
		r := ok(id, t0.Add(time.Duration(i)*time.Second), "1.1.1.1", "US")
		r.Headers = map[string]string{"Via": fmt.Sprint(i)}
		s.Submit(r)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	h, err := s.History(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 4 {
		t.Fatalf("%d history rows, want 4", len(h))
	}
	for k, r := range h {
		if want := t0.Add(time.Duration(9-k) * time.Second); !r.At.Equal(want) || r.Headers["Via"] != fmt.Sprint(9-k) || !r.OK {
			t.Fatalf("history[%d] = %+v, want at %v", k, r, want)
		}
	}
	if h, _ := s.History(ctx, id, 2); len(h) != 2 {
		t.Fatalf("limit 2: %d rows", len(h))
	}
	// Reopening with a smaller bound trims the rest.
	s.Close()
	s2, err := Open(ctx, path, Options{HistoryPerUpstream: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if h, _ := s2.History(ctx, id, 0); len(h) > 2 {
		t.Fatalf("after reopen with 2: %d rows", len(h))
	}
}

func TestSourceReputation(t *testing.T) {
	ctx := context.Background()
	s, _ := openT(t, Options{Policy: upstream.Policy{MaxFailures: 1}})
	if _, err := s.UpsertSource(ctx, upstream.SourceMeta{Name: "good"}, ups(1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpsertSource(ctx, upstream.SourceMeta{Name: "bad"}, ups(3, 4)); err != nil {
		t.Fatal(err)
	}
	// 1: healthy for 10 s then dead; 3 (listed by both): healthy 20 s then dead; 2, 4: never healthy.
	submit(t, s, ok(up(1).ID, t0, "1.1.1.1", "US"), ok(up(3).ID, t0, "3.3.3.3", "US"), fail(up(2).ID, t0))
	submit(t, s, fail(up(1).ID, t0.Add(10*time.Second)), fail(up(3).ID, t0.Add(20*time.Second)))
	// 1 is pruned: the source keeps the credit.
	if _, err := s.UpsertSource(ctx, upstream.SourceMeta{Name: "good"}, ups(2, 3)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneDead(ctx, 0); err != nil || n != 3 { // 1, 2, 3 are dead; 4 is unknown
		t.Fatalf("PruneDead: %d %v", n, err)
	}
	rep, err := s.SourceReputation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Reputation{
		{Source: "bad", Listed: 1, EverHealthy: 1, HealthySeconds: 20},
		{Source: "good", Listed: 0, EverHealthy: 2, HealthySeconds: 30},
	}
	if !reflect.DeepEqual(rep, want) {
		t.Fatalf("reputation\n got %+v\nwant %+v", rep, want)
	}
	m, _ := s.SourceMeta(ctx, "good")
	if m.EverHealthy != 2 {
		t.Fatalf("SourceMeta.EverHealthy = %d", m.EverHealthy)
	}
}

func TestPruneDead(t *testing.T) {
	ctx := context.Background()
	s, _ := openT(t, Options{Policy: upstream.Policy{MaxFailures: 1}})
	if _, err := s.Add(ctx, "manual", ups(1, 2, 3)...); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	submit(t, s,
		ok(up(1).ID, now.Add(-3*time.Hour), "1.1.1.1", "US"), fail(up(1).ID, now.Add(-2*time.Hour)), // dead, last ok 3h ago
		ok(up(2).ID, now.Add(-30*time.Minute), "1.1.1.1", "US"), fail(up(2).ID, now), // dead, last ok 30m ago
		ok(up(3).ID, now, "1.1.1.1", "US")) // healthy
	if n, err := s.PruneDead(ctx, time.Hour); err != nil || n != 1 {
		t.Fatalf("PruneDead(1h) = %d, %v; want 1", n, err)
	}
	if _, err := s.Get(ctx, up(1).ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("dead for 3h still there: %v", err)
	}
	if c, _ := s.Counts(ctx); c.Total != 2 {
		t.Fatalf("%d left", c.Total)
	}
}

// TestRetainDeadHonoursShortDeleteAfter: a delete-after under an hour is
// honoured by the loop, not only at start-up: an upstream whose deadline
// passes while it runs is gone one period later.
func TestRetainDeadHonoursShortDeleteAfter(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, _ := openT(t, Options{Policy: upstream.Policy{MaxFailures: 1}})
	if _, err := s.Add(ctx, "manual", up(1)); err != nil {
		t.Fatal(err)
	}
	const deadFor = 300 * time.Millisecond
	now := time.Now()
	submit(t, s, ok(up(1).ID, now, "1.1.1.1", "US"), fail(up(1).ID, now.Add(time.Millisecond)))
	pruned := make(chan int, 4)
	go s.RetainDead(ctx, deadFor, 20*time.Millisecond, func(n int, err error) {
		if err != nil {
			t.Error(err)
		}
		pruned <- n
	})
	select {
	case n := <-pruned:
		if n != 1 {
			t.Fatalf("pruned %d, want 1", n)
		}
		if late := time.Since(now); late < deadFor {
			t.Fatalf("pruned after %v, before its delete-after of %v", late, deadFor)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an upstream dead past its delete-after was not pruned")
	}
	if _, err := s.Get(ctx, up(1).ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("still there after pruning: %v", err)
	}
}

func TestRelaysRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _ := openT(t, Options{})
	rs := []upstream.Relay{
		{Fingerprint: "AAAA", Nickname: "a", Address: "1.2.3.4", ORPort: 9001, ExitAddrs: []string{"1.2.3.5"}, Country: "us",
			Flags: []string{"Exit", "Running", "Valid"}, Bandwidth: 1 << 20},
		{Fingerprint: "BBBB", Nickname: "b", Address: "5.6.7.8", ORPort: 443, Country: "de", Flags: []string{"Guard"}},
	}
	for round := 0; round < 2; round++ {
		if err := s.ReplaceRelays(ctx, rs); err != nil {
			t.Fatal(err)
		}
		got, err := s.Relays(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, rs) {
			t.Fatalf("round %d:\n got %+v\nwant %+v", round, got, rs)
		}
		rs = rs[1:]
	}
	if err := s.ReplaceRelays(ctx, []upstream.Relay{{Nickname: "x"}}); err == nil {
		t.Fatal("relay without fingerprint accepted")
	}
}

func TestCloseFlushesPendingResults(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "p.db")
	s, err := Open(ctx, path, Options{FlushInterval: time.Hour, BatchSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(ctx, "manual", up(1)); err != nil {
		t.Fatal(err)
	}
	s.Submit(ok(up(1).ID, t0, "1.1.1.1", "US"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.Submit(ok(up(1).ID, t0, "1.1.1.1", "US")) // after Close: dropped, not a panic or a hang
	if _, err := s.Add(ctx, "manual", up(2)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
	r, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := r.Get(ctx, up(1).ID)
	if err != nil || got.State != upstream.Healthy || got.Checks != 1 {
		t.Fatalf("after Close: %+v %v", got.Status, err)
	}
}

func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	if _, err := OpenReadOnly(ctx, missing); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("OpenReadOnly created the file")
	}

	t.Run("foreign or newer schema is refused, file untouched", func(t *testing.T) {
		cases := []struct {
			name, sql, want string
		}{
			{"empty sqlite file", "CREATE TABLE other (x)", "not a proxypool database"},
			{"newer schema", "", "newer than this program knows"},
		}
		for _, c := range cases {
			path := filepath.Join(dir, c.name+".db")
			if c.sql != "" {
				db, _ := sql.Open("sqlite3", path)
				if _, err := db.Exec(c.sql); err != nil {
					t.Fatal(err)
				}
				db.Close()
			} else {
				s, err := Open(ctx, path, Options{})
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				db, _ := sql.Open("sqlite3", path)
				if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
					t.Fatal(err)
				}
				db.Close()
			}
			before, _ := os.ReadFile(path)
			_, err := OpenReadOnly(ctx, path)
			if err == nil || !contains(err.Error(), c.want) {
				t.Fatalf("%s: err %v, want %q", c.name, err, c.want)
			}
			// Open (the writer) refuses too rather than migrating over it.
			if _, err := Open(ctx, path, Options{}); err == nil {
				t.Fatalf("%s: Open accepted it", c.name)
			}
			after, _ := os.ReadFile(path)
			if string(before) != string(after) {
				t.Fatalf("%s: file changed", c.name)
			}
		}
	})

	t.Run("reads while a writer is active, refuses writes", func(t *testing.T) {
		w, path := openT(t, Options{FlushInterval: 5 * time.Millisecond})
		if _, err := w.Add(ctx, "manual", ups(1, 2, 3)...); err != nil {
			t.Fatal(err)
		}
		r, err := OpenReadOnly(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		writes := []struct {
			name string
			do   func() error
		}{
			{"Add", func() error { _, err := r.Add(ctx, "manual", up(4)); return err }},
			{"Remove", func() error { _, err := r.Remove(ctx, "test", up(1).ID); return err }},
			{"UpsertSource", func() error { _, err := r.UpsertSource(ctx, upstream.SourceMeta{Name: "x"}, nil); return err }},
			{"RecordSourceError", func() error { return r.RecordSourceError(ctx, upstream.SourceMeta{Name: "x"}, errors.New("e")) }},
			{"Reschedule", func() error { return r.Reschedule(ctx, nil, time.Now()) }},
			{"PruneDead", func() error { _, err := r.PruneDead(ctx, 0); return err }},
			{"ReplaceRelays", func() error { return r.ReplaceRelays(ctx, nil) }},
			{"Flush", func() error { return r.Flush(ctx) }},
		}
		for _, wr := range writes {
			if err := wr.do(); !errors.Is(err, ErrReadOnly) {
				t.Errorf("%s on a read-only store: %v", wr.name, err)
			}
		}
		r.Submit(ok(up(1).ID, t0, "1.1.1.1", "US")) // ignored, no panic
		// The database refuses writes too, not only the store's methods:
		// on PostgreSQL every session is read-only, in SQLite the file is
		// opened mode=ro.
		if _, err := r.rdb.ExecContext(ctx, "UPDATE meta SET version = version + 1"); err == nil {
			t.Errorf("a write through the read-only store's connections succeeded")
		} else if onPostgres() && !strings.Contains(err.Error(), "read-only transaction") {
			t.Errorf("write on a read-only PostgreSQL store: %v, want the server's read-only refusal", err)
		}

		// The writer storms results while the reader reads.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				w.Submit(ok(up(1+i%3).ID, t0.Add(time.Duration(i)*time.Millisecond), "1.1.1.1", "US"))
			}
		}()
		deadline := time.Now().Add(300 * time.Millisecond)
		reads := 0
		for time.Now().Before(deadline) {
			if _, err := r.List(ctx, Filter{}); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Counts(ctx); err != nil {
				t.Fatal(err)
			}
			reads++
		}
		close(stop)
		wg.Wait()
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		h, err := r.Healthy(ctx)
		if err != nil || len(h) != 3 {
			t.Fatalf("reader sees %d healthy (%v) after the writer's flush, want 3", len(h), err)
		}
		if reads < 5 {
			t.Fatalf("only %d reads completed while the writer ran", reads)
		}
	})
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub)))
}

func TestOpenNeedsParentDir(t *testing.T) {
	_, err := Open(context.Background(), filepath.Join(t.TempDir(), "no", "such", "p.db"), Options{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err %v, want not-exist", err)
	}
}

func TestTwoWritersOneFile(t *testing.T) {
	// proxypoold refresh opens the store while the probe has it open.
	ctx := context.Background()
	a, path := openT(t, Options{})
	b, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for k, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := s.UpsertSource(ctx, upstream.SourceMeta{Name: fmt.Sprint("s", k)}, ups(k*1000+i, 5000)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if c, _ := a.Counts(ctx); c.BySource["s0"] != 2 || c.BySource["s1"] != 2 {
		t.Fatalf("by source %v", c.BySource)
	}
}

// TestCauseStored: a failure's cause and detail come back from every read
// a user sees (Get, List, History) as they were submitted.
func TestCauseStored(t *testing.T) {
	ctx := context.Background()
	s, _ := openWith(t, ups(1)...)
	id := up(1).ID
	r := fail(id, t0)
	r.Cause, r.Detail = upstream.CauseCertificate, "x509: certificate signed by unknown authority"
	submit(t, s, r)
	got, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.LastCause != upstream.CauseCertificate || got.LastError != r.Detail {
		t.Errorf("Get: cause %q detail %q, want certificate, %q", got.LastCause, got.LastError, r.Detail)
	}
	recs, err := s.List(ctx, Filter{})
	if err != nil || len(recs) != 1 || recs[0].LastCause != upstream.CauseCertificate {
		t.Errorf("List: %v %v, want one record with cause certificate", recs, err)
	}
	hist, err := s.History(ctx, id, 0)
	if err != nil || len(hist) != 1 || hist[0].Cause != upstream.CauseCertificate || hist[0].Detail != r.Detail {
		t.Errorf("History: %+v %v, want the certificate failure", hist, err)
	}
}

// TestCauseMigration: a row a build before typed causes wrote (its cause
// words inside last_error) still shows that text after the migration, and
// a cause name no build of ours knows reads as "other", not as an error.
func TestCauseMigration(t *testing.T) {
	ctx := context.Background()
	s, path := openWith(t, up(1), up(2))
	const old = "routes locally: exit 10.0.0.1 is in our own network"
	s = asOlderBuild(t, s, path, 4, `UPDATE upstreams SET last_error = '`+old+`', state = 'failing' WHERE id = '`+up(1).ID+`'`)
	got, err := s.Get(ctx, up(1).ID)
	if err != nil {
		t.Fatal(err)
	}
	if f := upstream.Failure(got.LastCause, got.LastError); f != old {
		t.Errorf("old row shows %q, want its text %q", f, old)
	}
	if _, err := s.wdb.Exec(`UPDATE upstreams SET last_cause = 'from_the_future', last_error = 'x' WHERE id = ?`, up(2).ID); err != nil {
		t.Fatal(err)
	}
	got, err = s.Get(ctx, up(2).ID)
	if err != nil {
		t.Fatalf("a cause name from a newer build: %v", err)
	}
	if got.LastCause != upstream.CauseOther || got.LastError != "x" {
		t.Errorf("unknown stored cause reads as %q %q, want other, x", got.LastCause, got.LastError)
	}
}

// TestListMembers: a config group lists what the gateway's pool counts in
// it: any of its countries, none excluded, any of its types, listed by any
// of its sources; its tor instances by name and pinned ids always.
func TestListMembers(t *testing.T) {
	ctx := context.Background()
	s, _ := openT(t, Options{})
	mk := func(i int, typ, grp string) upstream.Upstream {
		m := map[string]any{"type": typ, "server": fmt.Sprintf("10.9.0.%d", i), "port": 1080}
		if grp != "" {
			m["group"] = grp
		}
		return upstream.MustNew(m)
	}
	a, b, c, d := mk(1, "socks5", ""), mk(2, "http", ""), mk(3, "socks5", ""), mk(4, "tor", "us")
	if _, err := s.Add(ctx, "list-a", a, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(ctx, "list-b", c, d); err != nil {
		t.Fatal(err)
	}
	submit(t, s, ok(a.ID, t0, "1.1.1.1", "DE"), ok(b.ID, t0, "1.1.1.2", "de"), ok(c.ID, t0, "1.1.1.3", "US"), ok(d.ID, t0, "1.1.1.4", "US"))
	name := map[string]string{a.ID: "a", b.ID: "b", c.ID: "c", d.ID: "d"}
	tests := []struct {
		m    Members
		want string
	}{
		{Members{Name: "de", Countries: []string{"de"}}, "a,b"},
		{Members{Name: "notde", ExcludeCountries: []string{"DE"}, Types: []string{"SOCKS5"}}, "c"},
		{Members{Name: "b", Sources: []string{"list-b"}}, "c,d"},
		{Members{Name: "us"}, "d"},
		{Members{Name: "pinned", IDs: []string{b.ID}}, "b"},
		{Members{Name: "us", Countries: []string{"DE"}, Types: []string{"http"}}, "b,d"},
	}
	for _, tt := range tests {
		recs, err := s.List(ctx, Filter{Members: &tt.m})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range recs {
			got = append(got, name[r.ID])
		}
		sort.Strings(got)
		if g := strings.Join(got, ","); g != tt.want {
			t.Errorf("%+v: %s, want %s", tt.m, g, tt.want)
		}
	}
}

// TestSourceLastChanges: a source's row says what its last fetch changed,
// for refresh --wait and status from any process; an unchanged (304)
// fetch changed nothing and saw everything again.
func TestSourceLastChanges(t *testing.T) {
	ctx := context.Background()
	s, _ := openT(t, Options{})
	meta := upstream.SourceMeta{Name: "l", URL: "http://l.test/x.txt"}
	steps := []struct {
		name            string
		do              func() error
		new, seen, gone int
	}{
		{"first", func() error { _, err := s.UpsertSource(ctx, meta, ups(1, 2)); return err }, 2, 0, 0},
		{"changed", func() error { _, err := s.UpsertSource(ctx, meta, ups(2, 3)); return err }, 1, 1, 1},
		{"not modified", func() error { return s.TouchSource(ctx, meta) }, 0, 2, 0},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatal(err)
		}
		m, err := s.SourceMeta(ctx, "l")
		if err != nil {
			t.Fatal(err)
		}
		if m.New != st.new || m.Seen != st.seen || m.Gone != st.gone {
			t.Errorf("%s: new %d seen %d gone %d, want %d %d %d", st.name, m.New, m.Seen, m.Gone, st.new, st.seen, st.gone)
		}
	}
}

// TestTombstoneRestoreRetire follows upstreams through the operator's
// remove and restore and through retirement, as the pool and a refresh
// see them. Source "a" lists 1, 2, 3 and 5; 4 and 5 are added by hand.
func TestTombstoneRestoreRetire(t *testing.T) {
	ctx := context.Background()
	s, path := openT(t, Options{})
	srcA := upstream.SourceMeta{Name: "a", URL: "file:///a"}
	if _, err := s.UpsertSource(ctx, srcA, ups(1, 2, 3, 5)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(ctx, Manual, ups(4, 5)...); err != nil {
		t.Fatal(err)
	}
	submit(t, s, ok(up(1).ID, t0, "1.1.1.1", "US"), ok(up(2).ID, t0, "1.1.1.2", "US"),
		ok(up(4).ID, t0, "1.1.1.4", "US"), ok(up(5).ID, t0, "1.1.1.5", "US"))

	state := func(i int) upstream.State {
		t.Helper()
		r, err := s.Get(ctx, up(i).ID)
		if errors.Is(err, ErrNotFound) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return r.State
	}
	listed := func(f Filter) []string {
		t.Helper()
		recs, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return ids(recs)
	}
	healthy := func() []string {
		t.Helper()
		recs, err := s.Healthy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return sorted(ids(recs))
	}
	refresh := func(want upstream.SourceSummary, list ...int) {
		t.Helper()
		sum, err := s.UpsertSource(ctx, srcA, ups(list...))
		if err != nil {
			t.Fatal(err)
		}
		if sum != want {
			t.Fatalf("refresh of %v: %+v, want %+v", list, sum, want)
		}
		m, err := s.SourceMeta(ctx, "a")
		if err != nil || m.New != want.New || m.Seen != want.Seen || m.Gone != want.Gone || m.Removed != want.Removed {
			t.Fatalf("source a's last fetch as stored: %+v, %v; want %+v", m, err, want)
		}
	}

	// remove: 1 (listed by a) becomes a tombstone, 4 (by hand only) goes
	if n, err := s.Remove(ctx, "uid 0", up(1).ID, up(4).ID); n != 2 || err != nil {
		t.Fatalf("Remove(1, 4) = %d, %v; want 2", n, err)
	}
	if st := state(1); st != upstream.Removed {
		t.Fatalf("1 after remove: %q, want removed", st)
	}
	if st := state(4); st != "" {
		t.Fatalf("4 (added by hand) after remove: %q, want deleted", st)
	}
	if got, want := healthy(), sorted(idsOf(2, 5)); !reflect.DeepEqual(got, want) {
		t.Fatalf("served after remove: %v, want %v", got, want)
	}
	if got, want := listed(Filter{}), sorted(idsOf(2, 3, 5)); !reflect.DeepEqual(got, want) {
		t.Fatalf("list after remove: %v, want %v", got, want)
	}
	recs, err := s.List(ctx, Filter{State: upstream.Removed})
	if err != nil || len(recs) != 1 || recs[0].ID != up(1).ID || recs[0].RemovedBy != "uid 0" ||
		time.Since(recs[0].RemovedAt) > time.Minute || recs[0].OKs != 1 {
		t.Fatalf("list --state removed: %+v, %v; want 1 removed by uid 0 just now, its checks kept", recs, err)
	}
	if n, err := s.Remove(ctx, "uid 0", up(1).ID); n != 0 || err != nil {
		t.Fatalf("Remove of a tombstone = %d, %v; want 0", n, err)
	}

	// the source lists 1 again: it stays removed, counted as such
	refresh(upstream.SourceSummary{Source: "a", Seen: 3, Removed: 1}, 1, 2, 3, 5)
	if st := state(1); st != upstream.Removed {
		t.Fatalf("1 after a refresh that lists it: %q, want removed", st)
	}
	// a check that was running when it was removed changes nothing
	submit(t, s, ok(up(1).ID, t0.Add(time.Minute), "1.1.1.1", "US"))
	if st := state(1); st != upstream.Removed {
		t.Fatalf("1 after a late check result: %q, want removed", st)
	}
	due, err := s.Due(ctx, time.Now().Add(24*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range due {
		if r.ID == up(1).ID {
			t.Fatalf("a tombstone is due for a check")
		}
	}
	c, err := s.Counts(ctx)
	if err != nil || c.Total != 3 || c.ByState["removed"] != 1 || c.BySource["a"] != 3 {
		t.Fatalf("counts with a tombstone: %+v, %v; want total 3, removed 1, a 3", c, err)
	}

	// restore: back in the pool, due now, history and sources kept
	if n, err := s.Restore(ctx, Manual, up(1).ID, up(2).ID, "nope"); n != 1 || err != nil {
		t.Fatalf("Restore(1, 2, nope) = %d, %v; want 1", n, err)
	}
	r, err := s.Get(ctx, up(1).ID)
	if err != nil || r.State != upstream.Unknown || r.NextCheck.After(time.Now()) || r.RemovedBy != "" ||
		!reflect.DeepEqual(r.Sources, []string{"a"}) {
		t.Fatalf("1 after restore: %+v, %v; want unknown, due, listed by a only", r, err)
	}
	if h, err := s.History(ctx, up(1).ID, 0); err != nil || len(h) != 1 {
		t.Fatalf("history of 1 after restore: %d results, %v; want the 1 from before", len(h), err)
	}
	submit(t, s, ok(up(1).ID, t0.Add(2*time.Minute), "1.1.1.1", "US"))
	if got, want := healthy(), sorted(idsOf(1, 2, 5)); !reflect.DeepEqual(got, want) {
		t.Fatalf("served after restore and a check: %v, want %v", got, want)
	}

	// a drops 1 and 2 (both were healthy, so they stay); 5 is also by hand
	refresh(upstream.SourceSummary{Source: "a", Seen: 2, Gone: 2}, 3, 5)
	if n, err := s.Retire(ctx, time.Hour, nil); n != 0 || err != nil {
		t.Fatalf("Retire(1h) right after = %d, %v; want 0", n, err)
	}
	if n, err := s.Retire(ctx, 0, nil); n != 0 || err != nil {
		t.Fatalf("Retire(0: never) = %d, %v; want 0", n, err)
	}
	time.Sleep(30 * time.Millisecond)
	v0, _ := s.Version(ctx)
	if n, err := s.Retire(ctx, 10*time.Millisecond, nil); n != 2 || err != nil {
		t.Fatalf("Retire(10ms) = %d, %v; want 2 (1 and 2)", n, err)
	}
	if v, _ := s.Version(ctx); v == v0 {
		t.Fatalf("retiring served upstreams did not bump the version")
	}
	if got, want := healthy(), idsOf(5); !reflect.DeepEqual(got, want) {
		t.Fatalf("served after retire: %v, want %v", got, want)
	}
	if got, want := listed(Filter{}), sorted(idsOf(3, 5)); !reflect.DeepEqual(got, want) {
		t.Fatalf("list after retire: %v, want %v", got, want)
	}
	if got, want := listed(Filter{State: upstream.Retired}), sorted(idsOf(1, 2)); !reflect.DeepEqual(got, want) {
		t.Fatalf("list --state retired: %v, want %v", got, want)
	}
	if c, _ := s.Counts(ctx); c.Total != 2 || c.ByState["retired"] != 2 {
		t.Fatalf("counts after retire: %+v; want total 2, retired 2", c)
	}

	// listed again, 2 comes back as new; restored, 1 is kept as by hand
	refresh(upstream.SourceSummary{Source: "a", New: 1, Seen: 2}, 2, 3, 5)
	if st := state(2); st != upstream.Unknown {
		t.Fatalf("2 listed again: %q, want unknown", st)
	}
	if n, err := s.Restore(ctx, Manual, up(1).ID); n != 1 || err != nil {
		t.Fatalf("Restore(retired 1) = %d, %v", n, err)
	}
	time.Sleep(30 * time.Millisecond)
	if n, err := s.Retire(ctx, 10*time.Millisecond, nil); n != 0 || err != nil {
		t.Fatalf("Retire after restoring 1 = %d, %v; want 0 (1 is by hand now)", n, err)
	}
	if r, _ := s.Get(ctx, up(1).ID); !reflect.DeepEqual(r.Sources, []string{Manual}) {
		t.Fatalf("restored retired upstream's sources: %v, want [manual]", r.Sources)
	}

	// a taken out of the config: its links stop counting, manual's do not
	if n, err := s.Retire(ctx, 10*time.Millisecond, []string{"a"}); n != 0 || err != nil {
		t.Fatalf("Retire with a still configured = %d, %v; want 0", n, err)
	}
	if n, err := s.Retire(ctx, 10*time.Millisecond, []string{"tor"}); n != 2 || err != nil ||
		state(2) != upstream.Retired || state(3) != upstream.Retired || state(1) != upstream.Unknown || state(5) != upstream.Healthy {
		t.Fatalf("Retire with a out of the config = %d, %v; want 2 and 3 retired, 1 and 5 (by hand) kept", n, err)
	}
	if n, err := s.Restore(ctx, Manual, up(2).ID, up(3).ID); n != 2 || err != nil {
		t.Fatalf("Restore(2, 3) = %d, %v", n, err)
	}
	if r, _ := s.Get(ctx, up(2).ID); !reflect.DeepEqual(r.Sources, []string{"a"}) {
		t.Fatalf("restored upstream still linked to a: sources %v, want [a] (not adopted)", r.Sources)
	}

	// add by hand lifts a tombstone
	if n, err := s.Remove(ctx, "uid 0", up(3).ID); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	if n, err := s.Add(ctx, Manual, up(3)); n != 1 || err != nil || state(3) != upstream.Unknown {
		t.Fatalf("add of a tombstone: %d, %v, state %q; want 1, unknown", n, err, state(3))
	}

	// a tombstone survives a restart
	if _, err := s.Remove(ctx, "uid 0", up(2).ID); err != nil {
		t.Fatal(err)
	}
	reread(t, s, path, func(ro *Store) {
		if r, err := ro.Get(ctx, up(2).ID); err != nil || r.State != upstream.Removed || r.RemovedBy != "uid 0" {
			t.Fatalf("tombstone read-only: %+v, %v", r, err)
		}
	}, func(s2 *Store) {
		if _, err := s2.UpsertSource(ctx, srcA, ups(2, 3, 5)); err != nil {
			t.Fatal(err)
		}
		if r, err := s2.Get(ctx, up(2).ID); err != nil || r.State != upstream.Removed {
			t.Fatalf("tombstone after a restart and a refresh: %+v, %v", r.State, err)
		}
	})
}
