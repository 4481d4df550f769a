package checks_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/checks"
	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/store/storetest"
	"github.com/proxypool/proxypool/internal/upstream"
)

// How the test's target site treats a request, by the exit address it
// comes from (each fleet member leaves from its own).
const (
	siteOK      = "ok"      // 200, the page
	siteBlocked = "403"     // 403 Forbidden
	siteCaptcha = "captcha" // 200 with a captcha wall instead of the page
	siteHang    = "hang"    // reads the request, never answers
)

// site is a loopback target: /page answers by the caller's exit address
// (and only with the X-Need header the check sends), /down is down for
// everyone, /blob serves bytes for speed checks and takes uploads.
type site struct {
	url   string
	mu    sync.Mutex
	treat map[string]string // exit IP → site*
	hung  chan struct{}     // closed when the test ends: hanging handlers return
}

func startSite(t testing.TB) *site {
	t.Helper()
	ln, err := net.Listen("tcp", "127.90.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &site{url: "http://" + ln.Addr().String(), treat: map[string]string{}, hung: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		ip, _, _ := net.SplitHostPort(r.RemoteAddr)
		if r.Header.Get("X-Need") != "1" {
			http.Error(w, "missing header", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		treat := s.treat[ip]
		s.mu.Unlock()
		switch treat {
		case siteOK:
			io.WriteString(w, "<html>price list: 42</html>")
		case siteBlocked:
			http.Error(w, "forbidden", http.StatusForbidden)
		case siteCaptcha:
			io.WriteString(w, "<html>Please solve the CAPTCHA to continue</html>")
		case siteHang:
			select {
			case <-r.Context().Done():
			case <-s.hung:
			}
		default:
			http.Error(w, "unknown exit "+ip, http.StatusTeapot)
		}
	})
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/blob", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		buf := make([]byte, 32<<10)
		for range 64 { // 2 MiB at most; the check stops reading at its size
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() {
		close(s.hung)
		srv.Close()
	})
	return s
}

// rig is a fleet of upstreams made healthy in a real store, a real
// dialer and the site.
type rig struct {
	f    *fleet.Fleet
	st   *store.Store
	d    *dial.Pool
	site *site
	ids  []string // member i's upstream id
}

// member is one fleet member of a rig: its spec, how the site treats
// it, its source and the latency its liveness check recorded.
type member struct {
	spec    fleet.MemberSpec
	treat   string
	source  string
	latency int64 // ms
}

func startRig(t *testing.T, ms []member) *rig { return startRigTB(t, ms) }

func startRigTB(t testing.TB, ms []member) *rig {
	t.Helper()
	specs := make([]fleet.MemberSpec, len(ms))
	for i, m := range ms {
		specs[i] = m.spec
	}
	r := &rig{f: fleet.StartT(t, fleet.Spec{Members: specs}), st: storetest.Open(t, store.Options{}), site: startSite(t)}
	r.d = dial.New(dial.Options{})
	t.Cleanup(func() { r.d.Close() })
	ctx := context.Background()
	for i, m := range ms {
		fm := r.f.Member(i)
		r.site.treat[fm.ExitIP] = m.treat
		if _, err := r.st.Add(ctx, m.source, fm.Upstream); err != nil {
			t.Fatal(err)
		}
		r.st.Submit(upstream.CheckResult{ID: fm.Upstream.ID, At: time.Now(), OK: true, TotalMS: float64(m.latency),
			ExitIP: fm.ExitIP, Anonymity: upstream.AnonElite, Caps: upstream.CapConnect})
		r.ids = append(r.ids, fm.Upstream.ID)
	}
	if err := r.st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) scheduler(t *testing.T, o checks.Options) *checks.Scheduler {
	t.Helper()
	s, err := checks.New(r.st, r.d, r.st, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// results is the store's results for target by upstream id.
func (r *rig) results(t *testing.T, target string) map[string]upstream.TargetResult {
	t.Helper()
	all, err := r.st.TargetResults(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]upstream.TargetResult{}
	for _, x := range all {
		if x.Target == target {
			out[x.ID] = x
		}
	}
	return out
}

// TestFleetTargets: a target checked through every member of a fleet
// whose members the site treats differently (the page, 403, a captcha
// wall, a hang) gets each member's result right, with its reason; the
// check sends its headers, keeps to its concurrency and max-time, gives
// each result its TTL; with a budget only the cheapest upstreams are
// checked (plain ones before share links, then by latency).
func TestFleetTargets(t *testing.T) {
	treats := []string{siteOK, siteBlocked, siteCaptcha, siteHang}
	var ms []member
	for i := range 12 {
		k := fleet.SOCKS5
		if i%3 == 1 {
			k = fleet.HTTP
		}
		ms = append(ms, member{spec: fleet.MemberSpec{Kind: k}, treat: treats[i%4], source: "free", latency: int64(20 + i)})
	}
	// a share link, the fastest of all by latency, and fine for the site
	ms = append(ms, member{spec: fleet.MemberSpec{Kind: fleet.VMess}, treat: siteOK, source: "paid", latency: 1})
	r := startRig(t, ms)
	const ttl = 7 * time.Minute
	target := checks.Target{
		Name: "shop", URL: r.site.url + "/page", Status: []int{200},
		Body: regexp.MustCompile(`price`), NotBody: regexp.MustCompile(`(?i)captcha`),
		Headers: map[string]string{"X-Need": "1"}, MaxTime: time.Second, TTL: ttl, Concurrency: 3,
	}
	s := r.scheduler(t, checks.Options{Targets: []checks.Target{target}})
	ctx := context.Background()
	start := time.Now()
	st, err := s.TargetPass(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	want := map[string]string{siteOK: "", siteBlocked: "status 403", siteCaptcha: `body matches "(?i)captcha"`, siteHang: "no answer within 1s"}
	got := r.results(t, "shop")
	for i, m := range ms {
		res, ok := got[r.ids[i]]
		switch {
		case !ok:
			t.Errorf("member %d (%s, %s): no result", i, m.spec.Kind, m.treat)
		case res.OK != (m.treat == siteOK) || res.Detail != want[m.treat]:
			t.Errorf("member %d (%s, %s): ok %v %q, want ok %v %q", i, m.spec.Kind, m.treat, res.OK, res.Detail, m.treat == siteOK, want[m.treat])
		case res.Until.Sub(res.At) != ttl:
			t.Errorf("member %d: result valid for %v, want the ttl %v", i, res.Until.Sub(res.At), ttl)
		}
	}
	if st.Checked != 13 || st.Passed != 4 || st.Outage {
		t.Errorf("pass %+v, want 13 checked, 4 passed, no outage", st)
	}
	if st.Peak > 3 || st.Peak < 2 {
		t.Errorf("%d checks in flight at most, want up to concurrency 3 (and more than one)", st.Peak)
	}
	// Three hangs of 1s each, three at a time: about 1s, never 3s.
	if took > 2500*time.Millisecond {
		t.Errorf("the pass took %v: max-time or concurrency not kept", took)
	}

	t.Run("budget", func(t *testing.T) {
		b := target
		b.Name, b.Budget, b.URL = "cheap", 4, r.site.url+"/page"
		s := r.scheduler(t, checks.Options{Targets: []checks.Target{b}})
		st, err := s.TargetPass(ctx, "cheap")
		if err != nil {
			t.Fatal(err)
		}
		var checked []string
		for id := range r.results(t, "cheap") {
			checked = append(checked, id)
		}
		slices.Sort(checked)
		wantIDs := slices.Clone(r.ids[:4]) // plain, lowest latency; not the vmess link
		slices.Sort(wantIDs)
		if st.Checked != 4 || !slices.Equal(checked, wantIDs) {
			t.Errorf("budget 4 checked %d: %v, want the 4 cheapest plain ones %v", st.Checked, checked, wantIDs)
		}
	})
}

// TestOutageRule: a target failing through (nearly) every upstream of a
// pass is the target's outage, not theirs: nothing is recorded against
// them (their earlier passes stand); a target failing through some is
// theirs.
func TestOutageRule(t *testing.T) {
	var ms []member
	for i := range 10 {
		treat := siteOK
		if i < 4 {
			treat = siteBlocked
		}
		ms = append(ms, member{spec: fleet.MemberSpec{Kind: fleet.SOCKS5}, treat: treat, source: "free", latency: 10})
	}
	r := startRig(t, ms)
	ctx := context.Background()
	for _, tt := range []struct {
		name, path  string
		outage      bool
		okRows      int // passing results stored after the pass
		failingRows int
	}{
		{"some blocked: their failures", "/page", false, 6, 4},
		{"site down for all: its outage", "/down", true, 6, 4}, // the last pass's results stand
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := r.scheduler(t, checks.Options{Targets: []checks.Target{{Name: "t", URL: r.site.url + tt.path,
				Headers: map[string]string{"X-Need": "1"}, MaxTime: time.Second}}})
			st, err := s.TargetPass(ctx, "t")
			if err != nil {
				t.Fatal(err)
			}
			oks, fails := 0, 0
			for _, x := range r.results(t, "t") {
				if x.OK {
					oks++
				} else {
					fails++
				}
			}
			if st.Outage != tt.outage || oks != tt.okRows || fails != tt.failingRows {
				t.Errorf("outage %v, %d ok and %d failing stored; want outage %v, %d and %d", st.Outage, oks, fails, tt.outage, tt.okRows, tt.failingRows)
			}
		})
	}
}

// TestFleetSpeed: members throttled to different rates are measured in
// that order; a pass moves no more than its byte budget (the cheapest
// upstreams first) with no more checks in flight than its concurrency;
// kinds and sources limit who is measured; a check over max-time records
// nothing; upload is measured when asked.
func TestFleetSpeed(t *testing.T) {
	rates := []int64{64 << 10, 512 << 10, 128 << 10, 256 << 10}
	var ms []member
	for i, rate := range rates {
		ms = append(ms, member{spec: fleet.MemberSpec{Kind: fleet.SOCKS5, Rate: rate}, treat: siteOK, source: "free", latency: int64(10 + i)})
	}
	ms = append(ms,
		member{spec: fleet.MemberSpec{Kind: fleet.HTTP}, treat: siteOK, source: "free", latency: 50},                  // another kind
		member{spec: fleet.MemberSpec{Kind: fleet.SOCKS5}, treat: siteOK, source: "paid", latency: 51},                // another source
		member{spec: fleet.MemberSpec{Kind: fleet.SOCKS5, Rate: 8 << 10}, treat: siteOK, source: "free", latency: 60}, // too slow for max-time
	)
	r := startRig(t, ms)
	ctx := context.Background()
	const size = 64 << 10
	base := checks.Speed{URL: r.site.url + "/blob", Size: size, Upload: 16 << 10, BudgetBytes: 100 * size, Concurrency: 2,
		MaxTime: 3 * time.Second, Kinds: []string{"socks5"}, Sources: []string{"free"}}
	speeds := func(t *testing.T) map[string]upstream.SpeedResult {
		t.Helper()
		m, err := r.st.Speeds(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	s := r.scheduler(t, checks.Options{Speed: &base})
	st, err := s.SpeedPass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := speeds(t)
	for i := range rates {
		res, ok := got[r.ids[i]]
		if !ok || res.Down <= 0 || res.Up <= 0 {
			t.Fatalf("member %d (%d B/s): %+v, %v; want down and up measured", i, rates[i], res, ok)
		}
		// within a factor of two of the cap: the measure is the member's
		if res.Down > 2*float64(rates[i]) || res.Down < float64(rates[i])/2 {
			t.Errorf("member %d capped at %d B/s measured %.0f B/s", i, rates[i], res.Down)
		}
	}
	order := slices.Clone(r.ids[:len(rates)])
	slices.SortFunc(order, func(a, b string) int { return int(got[b].Down - got[a].Down) })
	wantOrder := []string{r.ids[1], r.ids[3], r.ids[2], r.ids[0]} // 512K, 256K, 128K, 64K
	if !slices.Equal(order, wantOrder) {
		t.Errorf("fastest first %v, want %v", order, wantOrder)
	}
	for _, i := range []int{4, 5, 6} {
		if res, ok := got[r.ids[i]]; ok {
			t.Errorf("member %d (kind %s, source %s, rate %d) measured %+v: kinds, sources or max-time not kept", i, ms[i].spec.Kind, ms[i].source, ms[i].spec.Rate, res)
		}
	}
	if st.Peak > 2 {
		t.Errorf("%d speed checks in flight, want at most 2", st.Peak)
	}

	t.Run("budget", func(t *testing.T) {
		b := base
		b.BudgetBytes = 2*(size+b.Upload) + size/2 // two checks fit, a third does not
		b.Kinds, b.Sources = nil, nil
		s := r.scheduler(t, checks.Options{Speed: &b})
		before := speeds(t)
		st, err := s.SpeedPass(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Bytes > b.BudgetBytes || st.Passed != 2 {
			t.Errorf("pass moved %d bytes over %d measured, want 2 within the budget of %d", st.Bytes, st.Passed, b.BudgetBytes)
		}
		after := speeds(t)
		var remeasured []string
		for id, x := range after {
			if !x.At.Equal(before[id].At) {
				remeasured = append(remeasured, id)
			}
		}
		slices.Sort(remeasured)
		want := []string{r.ids[0], r.ids[1]} // the lowest latency
		slices.Sort(want)
		if !slices.Equal(remeasured, want) {
			t.Errorf("measured %v, want the two cheapest %v", remeasured, want)
		}
	})
}

// TestRunEachOnItsInterval: Run makes each check's passes on its own
// interval, the first at once.
func TestRunEachOnItsInterval(t *testing.T) {
	r := startRig(t, []member{{spec: fleet.MemberSpec{Kind: fleet.SOCKS5}, treat: siteOK, source: "free", latency: 10}})
	var mu sync.Mutex
	passes := map[string]int{}
	s := r.scheduler(t, checks.Options{
		Targets: []checks.Target{{Name: "t", URL: r.site.url + "/page", Headers: map[string]string{"X-Need": "1"}, Interval: 200 * time.Millisecond}},
		Speed:   &checks.Speed{URL: r.site.url + "/blob", Size: 1 << 10, Interval: 500 * time.Millisecond},
		OnPass: func(p checks.PassStats) {
			mu.Lock()
			passes[p.Kind]++
			mu.Unlock()
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 1100*time.Millisecond)
	defer cancel()
	s.Run(ctx)
	mu.Lock()
	defer mu.Unlock()
	// t at 0, 200, …, 1000 ms; speed at 0, 500, 1000 ms (the last may fall at the end)
	if passes["target"] < 4 || passes["target"] > 6 || passes["speed"] < 2 || passes["speed"] > 3 {
		t.Errorf("passes in 1.1s: %v; want target every 200ms (5-6), speed every 500ms (2-3)", passes)
	}
	if res := r.results(t, "t")[r.ids[0]]; !res.OK {
		t.Errorf("the target's result through the one member: %+v", res)
	}
}
