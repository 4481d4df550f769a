package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/manager/managertest"
	"github.com/proxypool/proxypool/internal/parse"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/store/storetest"
	"github.com/proxypool/proxypool/internal/upstream"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openStore is a real store that flushes results within milliseconds, so
// that jobs see their checks land.
func openStore(t *testing.T) *store.Store {
	t.Helper()
	return storetest.Open(t, store.Options{FlushInterval: 5 * time.Millisecond})
}

// recorder collects Progress signals.
type recorder struct {
	mu  sync.Mutex
	sig []control.Progress
	ch  chan control.Progress
}

func newRecorder() *recorder { return &recorder{ch: make(chan control.Progress, 1024)} }

func (r *recorder) emit(p control.Progress) {
	r.mu.Lock()
	r.sig = append(r.sig, p)
	r.mu.Unlock()
	select {
	case r.ch <- p:
	default:
	}
}

// wait returns the job's signals up to its last (Done == Total).
func (r *recorder) wait(t *testing.T, job string, d time.Duration) []control.Progress {
	t.Helper()
	deadline := time.After(d)
	for {
		r.mu.Lock()
		var got []control.Progress
		for _, p := range r.sig {
			if p.Job == job {
				got = append(got, p)
			}
		}
		r.mu.Unlock()
		if n := len(got); n > 0 && got[n-1].Done == got[n-1].Total && (n > 1 || got[0].Total == 0) {
			return got
		}
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("job %s did not finish in %s: %+v", job, d, got)
		}
	}
}

// newProbe is the daemon's probe loop in miniature: every due upstream
// comes out ok, from a made-up exit, with progress every third.
func newProbe(st *store.Store) *managertest.Probe {
	return managertest.NewProbe(st, 3, func(i int, u upstream.Upstream) upstream.CheckResult { return okResult(u.ID, i) })
}

func okResult(id string, i int) upstream.CheckResult {
	return upstream.CheckResult{ID: id, At: time.Now(), OK: true, TotalMS: float64(20 + i%50),
		ExitIP: fmt.Sprintf("198.51.100.%d", i%200), Country: []string{"US", "DE", "NL"}[i%3], Anonymity: upstream.AnonElite}
}

func plainUpstreams(t testing.TB, n int) []upstream.Upstream {
	out := make([]upstream.Upstream, n)
	for i := range out {
		u, err := upstream.New(map[string]any{"type": "socks5", "server": fmt.Sprintf("127.1.%d.%d", i/250, i%250+1), "port": 1080 + i%7})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = u
	}
	return out
}

// importLinks imports testdata/links.txt, the corpus of every format.
func importLinks(ctx context.Context, t *testing.T, m *Manager) control.ImportReport {
	t.Helper()
	text, err := os.ReadFile("testdata/links.txt")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := m.Import(ctx, string(text))
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestImportAddRemove(t *testing.T) {
	ctx := ctxT(t)
	st := openStore(t)
	m := New(Options{Store: st})
	defer m.Close()
	rep := importLinks(ctx, t, m)
	// 18 corpus links + 4 plain + 1 repeated socks5 = 23 ok, 22 of them new;
	// the comment and the blank line are skipped; one broken vmess link.
	if rep.OK != 23 || rep.New != 22 || rep.Failed != 1 || rep.Skipped != 2 {
		t.Fatalf("report totals: ok %d new %d failed %d skipped %d", rep.OK, rep.New, rep.Failed, rep.Skipped)
	}
	var bad control.ImportLine
	for _, l := range rep.Lines {
		if !l.OK && !l.Skipped {
			bad = l
		}
	}
	if bad.Line != 25 || !strings.Contains(bad.Error, "vmess") {
		t.Errorf("failed line: %+v, want line 25 naming vmess", bad)
	}
	if rep2 := importLinks(ctx, t, m); rep2.New != 0 || rep2.OK != 23 {
		t.Fatalf("second import: %+v", rep2)
	}

	id, created, err := m.Add(ctx, "socks5://127.0.0.9:1080")
	if err != nil || created || id == "" {
		t.Fatalf("Add of an imported one: %q %v %v", id, created, err)
	}
	id2, created, err := m.Add(ctx, "http://127.0.0.10:8080")
	if err != nil || !created {
		t.Fatalf("Add: %v %v", created, err)
	}
	if _, _, err := m.Add(ctx, "gopher://x"); !errors.Is(err, control.ErrInvalid) {
		t.Errorf("Add of junk: %v, want ErrInvalid", err)
	}
	page, err := m.List(ctx, control.ListQuery{Source: ManualSource})
	if err != nil || page.Total != 23 || len(page.Records) != 23 {
		t.Fatalf("List manual: total %d, %d records, %v", page.Total, len(page.Records), err)
	}
	if n, err := m.Remove(ctx, id2); n != 1 || err != nil {
		t.Fatalf("Remove by id: %d %v", n, err)
	}
	if n, err := m.Remove(ctx, "socks5://127.0.0.9:1080"); n != 1 || err != nil {
		t.Fatalf("Remove by URI: %d %v", n, err)
	}
	if _, err := m.Remove(ctx, id); !errors.Is(err, control.ErrNotFound) || !strings.Contains(err.Error(), id) {
		t.Fatalf("Remove again: %v, want ErrNotFound naming %s", err, id)
	}
}

// TestRemoveRestore: the manager's remove keeps a tombstone for an
// upstream a source lists, naming the caller; restore takes IDs or URIs,
// refuses nothing to restore and bad input with the errors proxypoolctl
// turns into exit codes, and wakes the probe.
func TestRemoveRestore(t *testing.T) {
	ctx := ctxT(t)
	st := openStore(t)
	probe := newProbe(st)
	m := New(Options{Store: st, Checker: probe})
	defer m.Close()
	probe.Progress = m
	go probe.Run(ctx)
	ups := plainUpstreams(t, 2)
	if _, err := st.UpsertSource(ctx, upstream.SourceMeta{Name: "lists"}, ups); err != nil {
		t.Fatal(err)
	}
	callCtx := control.WithCaller(ctx, control.Caller{UID: 0, Privileged: true})
	if n, err := m.Remove(callCtx, ups[0].URI()); n != 1 || err != nil {
		t.Fatalf("Remove: %d, %v", n, err)
	}
	page, err := m.List(ctx, control.ListQuery{State: upstream.Removed})
	if err != nil || len(page.Records) != 1 || page.Total != 1 || !strings.HasPrefix(page.Records[0].RemovedBy, "uid 0") {
		t.Fatalf("List removed: %+v, %v; want the one removed by uid 0", page, err)
	}
	if page, _ := m.List(ctx, control.ListQuery{}); page.Total != 1 {
		t.Fatalf("List of the pool after remove: total %d, want 1", page.Total)
	}
	tests := []struct {
		name    string
		ids     []string
		want    int
		wantErr error
	}{
		{"nothing given", nil, 0, control.ErrInvalid},
		{"junk URI", []string{"gopher://x"}, 0, control.ErrInvalid},
		{"in the pool, not removed", []string{ups[1].ID}, 0, control.ErrNotFound},
		{"by id, with one unknown", []string{ups[0].ID, "0123456789abcdef"}, 1, nil},
		{"again", []string{ups[0].URI()}, 0, control.ErrNotFound},
	}
	for _, tt := range tests {
		n, err := m.Restore(ctx, tt.ids)
		if n != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: Restore(%v) = %d, %v; want %d, %v", tt.name, tt.ids, n, err, tt.want, tt.wantErr)
		}
	}
	// only Restore triggered the probe here: it checked both at once
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := m.Counts(ctx)
		if err == nil && c.Total == 2 && c.Healthy == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counts after restore: %+v, %v; want 2 healthy (the probe woken)", c, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestListPagingAndFilters(t *testing.T) {
	ctx := ctxT(t)
	st := openStore(t)
	m := New(Options{Store: st})
	defer m.Close()
	ups := plainUpstreams(t, 3000)
	if _, err := st.Add(ctx, "lists", ups...); err != nil {
		t.Fatal(err)
	}
	for i, u := range ups[:900] {
		st.Submit(okResult(u.ID, i))
	}
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		q     control.ListQuery
		total int
	}{
		{"all", control.ListQuery{}, 3000},
		{"healthy", control.ListQuery{State: upstream.Healthy}, 900},
		{"unknown", control.ListQuery{State: upstream.Unknown}, 2100},
		{"country any case", control.ListQuery{Country: "us"}, 300},
		{"country and state", control.ListQuery{Country: "DE", State: upstream.Healthy}, 300},
		{"source", control.ListQuery{Source: "lists"}, 3000},
		{"other source", control.ListQuery{Source: "nope"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]bool{}
			q := tc.q
			q.Limit = 700
			for {
				page, err := m.List(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				if page.Total != tc.total {
					t.Fatalf("offset %d: total %d, want %d", q.Offset, page.Total, tc.total)
				}
				for _, r := range page.Records {
					if seen[r.ID] {
						t.Fatalf("%s twice", r.ID)
					}
					seen[r.ID] = true
				}
				q.Offset += len(page.Records)
				if len(page.Records) == 0 || q.Offset >= page.Total {
					break
				}
			}
			if len(seen) != tc.total {
				t.Fatalf("paged through %d records, want %d", len(seen), tc.total)
			}
		})
	}
	// Past the end: an empty page that still tells the total.
	page, err := m.List(ctx, control.ListQuery{Offset: 5000})
	if err != nil || len(page.Records) != 0 || page.Total != 3000 {
		t.Fatalf("past the end: %d records, total %d, %v", len(page.Records), page.Total, err)
	}
}

func TestExportFormats(t *testing.T) {
	// the export an operator uses elsewhere: credentials included
	ctx := control.WithCaller(ctxT(t), control.Caller{Privileged: true})
	st := openStore(t)
	m := New(Options{Store: st})
	defer m.Close()
	importLinks(ctx, t, m)
	tor := upstream.MustNew(map[string]any{"type": "tor", "server": "127.0.0.1", "port": 9060, "name": "tor-us-9060", "group": "us"})
	if _, err := st.Add(ctx, "tor", tor); err != nil {
		t.Fatal(err)
	}
	all, err := st.List(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range all {
		st.Submit(okResult(r.ID, i))
	}
	st.Flush(ctx)

	js, err := m.Export(ctx, control.FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	var live []LiveProxy
	if err := json.Unmarshal(js, &live); err != nil {
		t.Fatalf("json export does not decode: %v", err)
	}
	if len(live) != len(all) {
		t.Fatalf("json export: %d records, want %d", len(live), len(all))
	}
	for _, l := range live {
		if l.ID == "" || l.Server == "" || l.Port == 0 || l.ExitIP == "" || l.Country == "" || l.Anonymity != upstream.AnonElite {
			t.Fatalf("json record lacks fields: %+v", l)
		}
		if (l.URI != "") == (l.Clash != nil) {
			t.Fatalf("%s: uri %q and clash %v; want exactly one", l.ID, l.URI, l.Clash)
		}
		if l.Host != l.Server || l.Protocol == "" || l.CheckedAt.IsZero() || l.Timeout != math.Round(l.LatencyMS)/1000 {
			t.Fatalf("json record lacks the list consumers' fields: %+v", l)
		}
	}
	// the export re-imports to the same set (tor instances come back as
	// the socks5 proxies they are)
	back, err := parse.Parse(js, parse.Options{})
	if err != nil {
		t.Fatal(err)
	}
	again := map[string]bool{}
	for _, r := range back {
		if r.Err != nil {
			t.Fatalf("json export line %d does not import: %v", r.Line, r.Err)
		}
		again[r.Upstream.ID] = true
	}
	for _, r := range all {
		if !again[r.ID] && r.Type != upstream.Tor {
			t.Errorf("%s %s did not come back from its json export", r.Type, r.ID)
		}
	}
	if len(again) != len(all) {
		t.Errorf("json export re-imports to %d upstreams, want %d", len(again), len(all))
	}

	txt, err := m.Export(ctx, control.FormatTXT)
	if err != nil {
		t.Fatal(err)
	}
	// one link a line for every kind: each reads back as the upstream it
	// came from (a tor instance as the socks5 proxy it is)
	lines := strings.Split(strings.TrimSpace(string(txt)), "\n")
	if len(lines) != len(all) {
		t.Fatalf("txt export: %d lines for %d upstreams:\n%s", len(lines), len(all), txt)
	}
	ids := map[string]bool{}
	for _, r := range all {
		ids[r.ID] = true
	}
	for _, l := range lines {
		u, err := parse.ParseURI(l)
		if err != nil {
			t.Fatalf("txt line %q does not parse back: %v", l, err)
		}
		if !ids[u.ID] && !strings.HasPrefix(l, "socks5://127.0.0.1:9060") {
			t.Errorf("txt line %q reads back as %s, no upstream of the pool", l, u.ID)
		}
	}

	clash, err := m.Export(ctx, control.FormatClash)
	if err != nil {
		t.Fatal(err)
	}
	res, err := parse.Parse(clash, parse.Options{Format: "clash"})
	if err != nil {
		t.Fatalf("clash export does not parse: %v", err)
	}
	want := map[string]bool{}
	for _, r := range all {
		if r.Type != upstream.SOCKS4 && r.Type != upstream.Tor {
			want[r.ID] = true
		}
	}
	ok := 0
	for _, r := range res {
		if r.Skipped {
			continue
		}
		if r.Err != nil {
			t.Fatalf("clash export line %d: %v\n%s", r.Line, r.Err, clash)
		}
		ok++
		if r.Upstream.Type == upstream.SOCKS5 && r.Upstream.Port == 9060 {
			continue // the tor instance, as socks5
		}
		if !want[r.Upstream.ID] {
			t.Errorf("clash entry %s (%s) is not an exported upstream: the mapping changed its identity", r.Upstream.ID, r.Upstream)
		}
		delete(want, r.Upstream.ID)
	}
	if len(want) != 0 || ok != len(all)-1 {
		t.Fatalf("clash export: %d entries, %d healthy upstreams missing", ok, len(want))
	}
}

func TestCheckJobs(t *testing.T) {
	ctx := ctxT(t)
	st := openStore(t)
	rec := newRecorder()
	p := newProbe(st)
	m := New(Options{Store: st, Checker: p, Emit: rec.emit, CheckPoll: 20 * time.Millisecond})
	defer m.Close()
	p.Progress = m
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	go p.Run(pctx)

	ups := plainUpstreams(t, 50)
	st.Add(ctx, "lists", ups...)
	p.Trigger()
	// the first pass checks everything; wait for it through Status
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, err := m.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.States[upstream.Healthy] == 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("first pass did not finish: %+v", s.States)
		}
		time.Sleep(10 * time.Millisecond)
	}

	ids := []string{ups[3].ID, ups[7].ID, ups[3].ID}
	job, err := m.Check(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	got := rec.wait(t, job, 5*time.Second)
	if last := got[len(got)-1]; last.Total != 2 || got[0].Done != 0 {
		t.Fatalf("check of 2 ids: signals %+v", got)
	}
	if _, err := m.Check(ctx, []string{"nope"}); !errors.Is(err, control.ErrNotFound) {
		t.Fatalf("check of an unknown id: %v", err)
	}

	job, err = m.Check(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	got = rec.wait(t, job, 5*time.Second)
	if last := got[len(got)-1]; last.Total != 50 || last.Done != 50 {
		t.Fatalf("check of all: signals %+v", got)
	}
	s, _ := m.Status(ctx)
	if s.Probe.LastPass.IsZero() || s.Probe.Done != 50 || s.Probe.Job != "" {
		t.Fatalf("probe status after the pass: %+v", s.Probe)
	}
}

func TestCheckJobEndsShortOnTimeout(t *testing.T) {
	ctx := ctxT(t)
	st := openStore(t)
	rec := newRecorder()
	never := newProbe(nil) // nobody runs it
	m := New(Options{Store: st, Checker: never, Emit: rec.emit, JobTimeout: 150 * time.Millisecond, CheckPoll: 20 * time.Millisecond})
	defer m.Close()
	ups := plainUpstreams(t, 3)
	st.Add(ctx, "lists", ups...)
	job, err := m.Check(ctx, []string{ups[0].ID, ups[1].ID})
	if err != nil {
		t.Fatal(err)
	}
	got := rec.wait(t, job, 3*time.Second)
	if last := got[len(got)-1]; last.Done != 0 || last.Total != 0 || got[0].Total != 2 {
		t.Fatalf("timed-out check: %+v, want 0/2 then 0/0", got)
	}
}

type slowRefresher struct {
	calls int
	mu    sync.Mutex
	gate  chan struct{}
}

func (r *slowRefresher) Refresh(ctx context.Context, progress func(done, total int)) error {
	r.mu.Lock()
	r.calls++
	r.mu.Unlock()
	for i := 1; i <= 4; i++ {
		select {
		case <-r.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		progress(i, 4)
	}
	return nil
}

func TestRefreshJob(t *testing.T) {
	ctx := ctxT(t)
	rec := newRecorder()
	r := &slowRefresher{gate: make(chan struct{})}
	m := New(Options{Store: openStore(t), Refresher: r, Emit: rec.emit})
	defer m.Close()
	a, err := m.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := m.Refresh(ctx)
	if a != b {
		t.Fatalf("a second refresh while one runs started %s, want to join %s", b, a)
	}
	close(r.gate)
	got := rec.wait(t, a, 3*time.Second)
	if len(got) < 4 || got[len(got)-1].Done != 4 {
		t.Fatalf("refresh signals: %+v", got)
	}
	if r.calls != 1 {
		t.Fatalf("refresher ran %d times", r.calls)
	}
	if _, err := New(Options{Store: openStore(t)}).Refresh(ctx); err == nil {
		t.Fatal("Refresh without a refresher did not fail")
	}
}

// tailRefresher reports its last source done, then works on (as the
// daemon's refresh retires upstreams) until gate closes.
type tailRefresher struct{ gate chan struct{} }

func (r tailRefresher) Refresh(ctx context.Context, progress func(done, total int)) error {
	progress(0, 2)
	progress(1, 2)
	progress(2, 2)
	<-r.gate
	return nil
}

func TestJobCompleteOnlyWhenOver(t *testing.T) {
	ctx := ctxT(t)
	rec := newRecorder()
	r := tailRefresher{gate: make(chan struct{})}
	m := New(Options{Store: openStore(t), Refresher: r, Emit: rec.emit})
	defer m.Close()
	job, err := m.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // time for a wrong early signal to arrive
	rec.mu.Lock()
	for _, p := range rec.sig {
		if p.Job == job && p.Done >= p.Total {
			t.Errorf("signal %d of %d while the refresh still works: proxypoolctl refresh --wait would return early", p.Done, p.Total)
		}
	}
	rec.mu.Unlock()
	close(r.gate)
	got := rec.wait(t, job, 3*time.Second)
	if last := got[len(got)-1]; last.Done != 2 || last.Total != 2 {
		t.Fatalf("last signal %+v, want 2 of 2", last)
	}
}

func TestStatusAndReadOnlyStore(t *testing.T) {
	ctx := ctxT(t)
	st := openStore(t)
	ups := plainUpstreams(t, 10)
	st.Add(ctx, "lists", ups...)
	for i, u := range ups[:4] {
		st.Submit(okResult(u.ID, i))
	}
	st.Flush(ctx)
	ro, err := store.OpenReadOnly(ctx, st.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	floors := []control.GroupFloor{{Group: "us", Healthy: 2, Exits: 2, MinHealthy: 5, Below: true}}
	m := New(Options{Store: ro, Floors: func() []control.GroupFloor { return floors }})
	defer m.Close()
	s, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.States[upstream.Healthy] != 4 || s.States[upstream.Unknown] != 6 || s.States[upstream.Dead] != 0 {
		t.Errorf("states %+v", s.States)
	}
	if s.Sources["lists"] != 10 || s.Countries["US"] != 2 || s.Exits.Distinct != 4 {
		t.Errorf("sources %v countries %v exits %+v", s.Sources, s.Countries, s.Exits)
	}
	if len(s.Reputation) != 1 || s.Reputation[0].HealthyNow != 4 {
		t.Errorf("reputation %+v", s.Reputation)
	}
	if len(s.Floors) != 1 || !s.Floors[0].Below {
		t.Errorf("floors %+v", s.Floors)
	}
	if _, _, err := m.Add(ctx, "socks5://127.0.0.9:1"); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("Add on a read-only store: %v", err)
	}
	c, err := m.Counts(ctx)
	if err != nil || c.Total != 10 || c.Healthy != 4 || c.Unknown != 6 {
		t.Errorf("counts %+v %v", c, err)
	}
}

// TestSecretsOnlyForPrivileged: List and Export give the upstreams'
// credentials to a privileged caller, and to everyone on a Trusted
// manager (proxypoolctl --db); anyone else, a context without a caller
// included, sees REDACTED in their place.
func TestSecretsOnlyForPrivileged(t *testing.T) {
	st := openStore(t)
	links := "socks5://alice:pw-socks-1@127.76.0.1:1080\ntrojan://pw-trojan-2@127.76.0.2:443?sni=example.com\n"
	secrets := []string{"alice", "pw-socks-1", "pw-trojan-2"}
	setup := New(Options{Store: st})
	defer setup.Close()
	if _, err := setup.Import(ctxT(t), links); err != nil {
		t.Fatal(err)
	}
	all, err := st.List(ctxT(t), store.Filter{})
	if err != nil || len(all) != 2 {
		t.Fatalf("store: %d records, %v", len(all), err)
	}
	for i, r := range all {
		st.Submit(okResult(r.ID, i))
	}
	st.Flush(ctxT(t))
	tests := []struct {
		name    string
		ctx     context.Context
		trusted bool
		secrets bool
	}{
		{"no caller", ctxT(t), false, false},
		{"unprivileged caller", control.WithCaller(ctxT(t), control.Caller{UID: 65534}), false, false},
		{"privileged caller", control.WithCaller(ctxT(t), control.Caller{UID: 0, Privileged: true}), false, true},
		{"trusted manager", ctxT(t), true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := New(Options{Store: st, Trusted: tc.trusted})
			defer m.Close()
			page, err := m.List(tc.ctx, control.ListQuery{})
			if err != nil {
				t.Fatal(err)
			}
			listed, _ := json.Marshal(page)
			outputs := map[string]string{"list": string(listed)}
			for _, f := range []string{control.FormatJSON, control.FormatTXT, control.FormatClash} {
				b, err := m.Export(tc.ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				outputs["export "+f] = string(b)
			}
			for what, out := range outputs {
				want := secrets
				if what == "export txt" {
					want = secrets[:2] // a URI for plain kinds only: nothing of the trojan's
				}
				for _, s := range want {
					if strings.Contains(out, s) != tc.secrets {
						t.Errorf("%s: holds %q: %v, want %v\n%s", what, s, !tc.secrets, tc.secrets, out)
					}
				}
				if strings.Contains(out, upstream.RedactedValue) == tc.secrets {
					t.Errorf("%s: %s marker present: %v, want %v", what, upstream.RedactedValue, tc.secrets, !tc.secrets)
				}
			}
			if again, _ := st.List(tc.ctx, store.Filter{}); again[0].Str("password") == upstream.RedactedValue || again[1].Str("password") == upstream.RedactedValue {
				t.Error("redaction reached the store's records")
			}
		})
	}
}
