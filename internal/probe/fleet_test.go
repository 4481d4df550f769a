package probe_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/geoip"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/upstream"
)

type collect struct {
	mu  sync.Mutex
	got map[string]upstream.CheckResult
}

func (c *collect) Submit(r upstream.CheckResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.got == nil {
		c.got = map[string]upstream.CheckResult{}
	}
	c.got[r.ID] = r
}

func newProber(t *testing.T, f *fleet.Fleet, judge *fleet.Judge, timeout time.Duration) *probe.Prober {
	return newProberWith(t, f, judge, probe.Options{Timeout: timeout, Concurrency: 64, UplinkCheck: true})
}

// newProberWith is a prober over a real dialer that asks judge and knows
// the fleet's countries, tuned by o.
func newProberWith(t *testing.T, f *fleet.Fleet, judge *fleet.Judge, o probe.Options) *probe.Prober {
	t.Helper()
	geo := filepath.Join(t.TempDir(), "geoip")
	if err := f.WriteGeoIP(geo); err != nil {
		t.Fatal(err)
	}
	o.Country = func(string) string { return "" }
	if db, err := geoip.Open(geo, ""); err == nil {
		o.Country = db.CountryOf
	}
	d := dial.New(dial.Options{})
	t.Cleanup(func() { d.Close() })
	o.Judges, o.Classify = []string{judge.URL + "/get"}, dial.Classify
	p, err := probe.New(d, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestVerdicts: every kind of good and bad upstream ends with the verdict a
// user expects, with exit, country and anonymity learned from a real judge.
func TestVerdicts(t *testing.T) {
	judge := fleet.StartJudgeT(t)
	tests := []struct {
		spec      fleet.MemberSpec
		ok        bool
		anon      upstream.Anonymity
		cause     upstream.Cause // CauseNone: not checked
		untrusted bool
	}{
		{fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "US"}, true, upstream.AnonElite, upstream.CauseNone, false},
		{fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "DE", Username: "u", Password: "p"}, true, upstream.AnonElite, upstream.CauseNone, false},
		{fleet.MemberSpec{Kind: fleet.SOCKS4, Behavior: fleet.Good, Country: "NL"}, true, upstream.AnonElite, upstream.CauseNone, false},
		{fleet.MemberSpec{Kind: fleet.HTTP, Behavior: fleet.Good, Country: "JP"}, true, upstream.AnonElite, upstream.CauseNone, false},
		{fleet.MemberSpec{Kind: fleet.SS, Behavior: fleet.Good, Country: "FR"}, true, upstream.AnonElite, upstream.CauseNone, false},
		{fleet.MemberSpec{Kind: fleet.VMess, Behavior: fleet.Good, Country: "SE"}, true, upstream.AnonElite, upstream.CauseNone, false},
		{fleet.MemberSpec{Kind: fleet.Trojan, Behavior: fleet.Good, Country: "GB"}, true, upstream.AnonElite, upstream.CauseNone, false},
		{fleet.MemberSpec{Kind: fleet.HTTP, Behavior: fleet.Anonymous, Country: "US"}, true, upstream.AnonAnonymous, upstream.CauseNone, false},
		{fleet.MemberSpec{Kind: fleet.HTTP, Behavior: fleet.Transparent, Country: "US"}, false, upstream.AnonTransparent, upstream.CauseTransparent, false},
		{fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Refuse}, false, "", upstream.CauseRefused, false},
		{fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Blackhole}, false, "", upstream.CauseTimeout, false},
		{fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Reset}, false, "", upstream.CauseNone, false},
		{fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Garbage}, false, "", upstream.CauseNone, false},
		{fleet.MemberSpec{Kind: fleet.HTTP, Behavior: fleet.Garbage}, false, "", upstream.CauseNone, false},
		{fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Local}, false, "", upstream.CauseRoutesLocally, false},
		// liars: the answer is not the judge's, or not what it said
		{fleet.MemberSpec{Kind: fleet.HTTP, Behavior: fleet.FakeEcho}, false, "", upstream.CauseTamper, true},
		{fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.FakeEcho}, false, "", upstream.CauseTamper, true},
		{fleet.MemberSpec{Kind: fleet.HTTP, Behavior: fleet.NonceRewrite}, false, "", upstream.CauseTamper, true},
		{fleet.MemberSpec{Kind: fleet.SOCKS4, Behavior: fleet.NonceRewrite}, false, "", upstream.CauseTamper, true},
		{fleet.MemberSpec{Kind: fleet.HTTP, Behavior: fleet.BodyInject}, false, "", upstream.CauseTamper, true},
		{fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.BodyInject}, false, "", upstream.CauseTamper, true},
	}
	var spec fleet.Spec
	for _, tt := range tests {
		spec.Members = append(spec.Members, tt.spec)
	}
	f := fleet.StartT(t, spec)
	p := newProber(t, f, judge, time.Second)
	var ups []upstream.Upstream
	for _, m := range f.Members() {
		ups = append(ups, m.Upstream)
	}
	var c collect
	start := time.Now()
	prog, err := p.Pass(context.Background(), ups, &c)
	if err != nil {
		t.Fatalf("pass: %v", err)
	}
	if el := time.Since(start); el > 6*time.Second { // ≈1 s: bounded by the 1 s timeout, with room for a loaded machine
		t.Errorf("pass over %d upstreams took %v with a 1s check timeout", len(ups), el)
	}
	if prog.Done != len(ups) {
		t.Fatalf("progress %v, want all %d done", prog, len(ups))
	}
	if p.RealIP() != "127.0.0.1" {
		t.Errorf("learned real IP %q, want 127.0.0.1", p.RealIP())
	}
	for i, m := range f.Members() {
		tt := tests[i]
		name := string(tt.spec.Kind) + "/" + string(tt.spec.Behavior)
		r, ok := c.got[m.Upstream.ID]
		if !ok {
			t.Errorf("%s: no result", name)
			continue
		}
		if r.OK != tt.ok {
			t.Errorf("%s: ok=%v (err %q), want %v", name, r.OK, upstream.Failure(r.Cause, r.Detail), tt.ok)
			continue
		}
		if tt.anon != "" && r.Anonymity != tt.anon {
			t.Errorf("%s: anonymity %q, want %q", name, r.Anonymity, tt.anon)
		}
		if tt.cause != upstream.CauseNone && r.Cause != tt.cause {
			t.Errorf("%s: failure %q, want cause %q", name, upstream.Failure(r.Cause, r.Detail), tt.cause)
		}
		if r.Untrusted != tt.untrusted {
			t.Errorf("%s: untrusted %v (%q), want %v", name, r.Untrusted, upstream.Failure(r.Cause, r.Detail), tt.untrusted)
		}
		if r.ExitIP == fleet.FakeEchoIP {
			t.Errorf("%s: the made-up exit %s was taken for the judge's", name, r.ExitIP)
		}
		if r.OK {
			if r.ExitIP != m.ExitIP {
				t.Errorf("%s: exit %q, want %q", name, r.ExitIP, m.ExitIP)
			}
			if r.Country != tt.spec.Country {
				t.Errorf("%s: country %q, want %q", name, r.Country, tt.spec.Country)
			}
			if r.TotalMS <= 0 || r.ConnectMS <= 0 || r.TTFBMS < r.ConnectMS {
				t.Errorf("%s: timings connect=%v ttfb=%v total=%v", name, r.ConnectMS, r.TTFBMS, r.TotalMS)
			}
			// the fleet's HTTP proxies do both; every other kind tunnels
			want := upstream.CapConnect
			if tt.spec.Kind == fleet.HTTP {
				want |= upstream.CapForward
			}
			if got := r.Caps &^ upstream.CapPipeline; got != want {
				t.Errorf("%s: caps %q, want %q", name, r.Caps, want)
			}
		}
	}
}

// TestLifeThroughStore: three passes through the real store turn the bad
// upstreams dead and keep the good ones healthy and servable.
func TestLifeThroughStore(t *testing.T) {
	judge := fleet.StartJudgeT(t)
	f := fleet.StartT(t, fleet.Spec{Members: []fleet.MemberSpec{
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "US"},
		{Kind: fleet.HTTP, Behavior: fleet.Good, Country: "DE"},
		{Kind: fleet.SOCKS5, Behavior: fleet.Refuse},
		{Kind: fleet.SOCKS5, Behavior: fleet.Blackhole},
		{Kind: fleet.HTTP, Behavior: fleet.Transparent, Country: "US"},
	}})
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "pp.db"), store.Options{
		Policy: upstream.Policy{MaxFailures: 3, FailingInterval: time.Millisecond, Interval: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, m := range f.Members() {
		if _, err := st.Add(ctx, "manual", m.Upstream); err != nil {
			t.Fatal(err)
		}
	}
	p := newProber(t, f, judge, 500*time.Millisecond)
	passes := 0
	err = p.Run(ctx, st, st, probe.RunOptions{MaxPasses: 3, Idle: 5 * time.Millisecond,
		OnPass: func(probe.Progress, error) { passes++ }})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]upstream.State{0: upstream.Healthy, 1: upstream.Healthy, 2: upstream.Dead, 3: upstream.Dead, 4: upstream.Dead}
	for i, m := range f.Members() {
		r, err := st.Get(ctx, m.Upstream.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != want[i] {
			t.Errorf("member %d (%s/%s): state %s (last error %q), want %s", i, m.Spec.Kind, m.Spec.Behavior, r.State, r.LastError, want[i])
		}
		// what `list` shows: a transparent proxy is dead *as transparent*,
		// with the exit and country that gave it away
		if m.Spec.Behavior == fleet.Transparent && (r.Anonymity != upstream.AnonTransparent || r.ExitIP != m.ExitIP || r.Country != "US") {
			t.Errorf("transparent member stored as anonymity %q exit %q country %q, want transparent %s US", r.Anonymity, r.ExitIP, r.Country, m.ExitIP)
		}
	}
	healthy, err := st.Healthy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(healthy) != 2 {
		t.Errorf("servable upstreams: %d, want 2", len(healthy))
	}
}

// TestUplinkDownPausesInsteadOfKilling: when the judge is unreachable
// directly, nothing is marked failed.
func TestUplinkDownPausesInsteadOfKilling(t *testing.T) {
	judge := fleet.StartJudgeT(t)
	f := fleet.StartT(t, fleet.Uniform(5, fleet.SOCKS5, fleet.Good))
	p := newProber(t, f, judge, 300*time.Millisecond)
	judge.Close() // our own link to the judges is gone
	var ups []upstream.Upstream
	for _, m := range f.Members() {
		ups = append(ups, m.Upstream)
	}
	var c collect
	_, err := p.Pass(context.Background(), ups, &c)
	if err == nil || !strings.Contains(err.Error(), "uplink") {
		t.Fatalf("pass error %v, want uplink down", err)
	}
	if len(c.got) != 0 {
		t.Fatalf("%d results recorded while our uplink was down", len(c.got))
	}
}

// TestDiscoverThroughStore: bare host:port entries nobody typed are found
// to be what they are (socks5, socks4, http) by one pass, stored as that
// kind under their first id, and served; one that speaks nothing stays
// untyped with every try's failure in its last error.
func TestDiscoverThroughStore(t *testing.T) {
	judge := fleet.StartJudgeT(t)
	kinds := []fleet.Kind{fleet.SOCKS5, fleet.SOCKS4, fleet.HTTP}
	spec := fleet.Spec{}
	for _, k := range kinds {
		spec.Members = append(spec.Members, fleet.MemberSpec{Kind: k, Behavior: fleet.Good, Country: "DE"})
	}
	spec.Members = append(spec.Members, fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Refuse})
	f := fleet.StartT(t, spec)
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "pp.db"), store.Options{
		Policy: upstream.Policy{MaxFailures: 3, Interval: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	untyped := func(m *fleet.Member) upstream.Upstream {
		return upstream.MustNew(map[string]any{"type": "http", "server": m.Upstream.Server, "port": m.Upstream.Port, upstream.OptDiscover: true})
	}
	var ids []string
	for _, m := range f.Members() {
		u := untyped(m)
		if _, err := st.Add(ctx, "list", u); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	p := newProber(t, f, judge, time.Second)
	if err := p.Run(ctx, st, st, probe.RunOptions{MaxPasses: 1, Idle: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	for i, m := range f.Members() {
		r, err := st.Get(ctx, ids[i])
		if err != nil {
			t.Fatal(err)
		}
		if m.Spec.Behavior == fleet.Refuse {
			if !r.Untyped() || r.State == upstream.Healthy || !strings.Contains(r.LastError, "no protocol answered") {
				t.Errorf("refusing member: type %s untyped %v state %s last error %q; want untyped, failing, every try named", r.Type, r.Untyped(), r.State, r.LastError)
			}
			continue
		}
		want := upstream.Kind(m.Spec.Kind)
		if r.Type != want || r.Untyped() || r.Options["type"] != string(want) || r.State != upstream.Healthy || r.ExitIP != m.ExitIP {
			t.Errorf("member %s: stored type %s (options %v) untyped %v state %s exit %q (last error %q); want %s healthy exit %s",
				m.Spec.Kind, r.Type, r.Options["type"], r.Untyped(), r.State, r.ExitIP, r.LastError, want, m.ExitIP)
		}
		// the same line read again is the same upstream, not a new one
		if n, err := st.Add(ctx, "list", untyped(m)); err != nil || n != 0 {
			t.Errorf("member %s: re-adding its bare line added %d (%v), want 0", m.Spec.Kind, n, err)
		}
	}
	healthy, err := st.Healthy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(healthy) != len(kinds) {
		t.Errorf("servable: %d, want %d", len(healthy), len(kinds))
	}
}

// TestOptionEffects proves the probe's config keys by the verdicts and the
// pass times an operator would see: probe.timeout bounds a check,
// probe.concurrency the checks in flight, probe.judges is a fallback
// chain, probe.real-ip is the address a leaking upstream is caught by, and
// probe.target.url/status is a second check every upstream must pass.
func TestOptionEffects(t *testing.T) {
	judge := fleet.StartJudgeT(t)
	// A closed port: the judge that never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadJudge := "http://" + ln.Addr().String() + "/get"
	ln.Close()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(target.Close)
	// The IPv6 judge: on ::1, which fleet members reach from ::1.
	judge6, err := fleet.StartJudge(t.Context(), "[::1]:0")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("IPv6 loopback is needed for the ipv6-judge rows: %v", err)
		}
		t.Logf("no IPv6 loopback (%v): the ipv6-judge rows will fail", err)
		judge6 = &fleet.Judge{URL: deadJudge}
	}
	asn := func(ip string) upstream.Quality {
		return upstream.Quality{ASN: 64500, Org: "exit " + ip, Class: upstream.ClassResidential}
	}

	good := fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Good}
	hole := fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Blackhole}
	leaky := fleet.MemberSpec{Kind: fleet.HTTP, Behavior: fleet.Transparent}
	good6 := fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Good, IPv6: true}
	tests := []struct {
		name     string
		members  []fleet.MemberSpec
		opts     probe.Options // Judges default to the working judge
		wantOK   bool          // of every member
		wantAnon upstream.Anonymity
		wantCaus upstream.Cause
		wantQual upstream.Quality
		min, max time.Duration // of the pass
	}{
		{name: "timeout bounds a check", members: []fleet.MemberSpec{hole},
			opts: probe.Options{Timeout: 300 * time.Millisecond}, wantCaus: upstream.CauseTimeout, min: 280 * time.Millisecond, max: 800 * time.Millisecond},
		{name: "a longer timeout waits longer", members: []fleet.MemberSpec{hole},
			opts: probe.Options{Timeout: 900 * time.Millisecond}, wantCaus: upstream.CauseTimeout, min: 880 * time.Millisecond, max: 1600 * time.Millisecond},
		{name: "concurrency 2 checks six in three rounds", members: []fleet.MemberSpec{hole, hole, hole, hole, hole, hole},
			opts: probe.Options{Timeout: 300 * time.Millisecond, Concurrency: 2}, wantCaus: upstream.CauseTimeout, min: 880 * time.Millisecond, max: 1800 * time.Millisecond},
		{name: "concurrency 6 checks six at once", members: []fleet.MemberSpec{hole, hole, hole, hole, hole, hole},
			opts: probe.Options{Timeout: 300 * time.Millisecond, Concurrency: 6}, wantCaus: upstream.CauseTimeout, min: 280 * time.Millisecond, max: 800 * time.Millisecond},
		{name: "judges: the next one answers when the first is down", members: []fleet.MemberSpec{good},
			opts: probe.Options{Judges: []string{deadJudge, judge.URL + "/get"}}, wantOK: true, max: 3 * time.Second},
		{name: "judges: no judge answering is no verdict of health", members: []fleet.MemberSpec{good},
			opts: probe.Options{Judges: []string{deadJudge}}, max: 3 * time.Second},
		{name: "real-ip learned: the leaking upstream is transparent", members: []fleet.MemberSpec{leaky},
			wantAnon: upstream.AnonTransparent, wantCaus: upstream.CauseTransparent, max: 3 * time.Second},
		{name: "real-ip set: only that address counts as a leak", members: []fleet.MemberSpec{leaky},
			opts: probe.Options{RealIP: "192.0.2.1"}, wantOK: true, wantAnon: upstream.AnonAnonymous, max: 3 * time.Second},
		{name: "target: the status it wants is a pass", members: []fleet.MemberSpec{good},
			opts: probe.Options{TargetURL: target.URL + "/", TargetStatus: http.StatusNoContent}, wantOK: true, max: 3 * time.Second},
		{name: "target: another status fails the upstream", members: []fleet.MemberSpec{good},
			opts: probe.Options{TargetURL: target.URL + "/", TargetStatus: http.StatusOK}, wantCaus: upstream.CauseTargetCheck, max: 3 * time.Second},
		{name: "quality: the exit's ASN, organisation and class", members: []fleet.MemberSpec{good},
			opts: probe.Options{Quality: asn}, wantOK: true, max: 3 * time.Second,
			wantQual: upstream.Quality{ASN: 64500, Org: "exit", Class: upstream.ClassResidential}},
		{name: "ipv6-judge: an answer from an IPv6 origin is IPv6", members: []fleet.MemberSpec{good6},
			opts: probe.Options{IPv6Judge: judge6.URL + "/get"}, wantOK: true, wantQual: upstream.Quality{IPv6: true}, max: 3 * time.Second},
		{name: "ipv6-judge: an upstream that cannot reach it is not, and passes", members: []fleet.MemberSpec{good},
			opts: probe.Options{IPv6Judge: judge6.URL + "/get"}, wantOK: true, max: 3 * time.Second},
		{name: "ipv6-judge: an IPv4 origin is not", members: []fleet.MemberSpec{good6},
			opts: probe.Options{IPv6Judge: judge.URL + "/get"}, wantOK: true, max: 3 * time.Second},
		{name: "ipv6-judge: one that is down fails nothing", members: []fleet.MemberSpec{good},
			opts: probe.Options{IPv6Judge: deadJudge}, wantOK: true, max: 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fleet.StartT(t, fleet.Spec{Members: tt.members})
			d := dial.New(dial.Options{})
			t.Cleanup(func() { d.Close() })
			o := tt.opts
			if o.Judges == nil {
				o.Judges = []string{judge.URL + "/get"}
			}
			if o.Timeout == 0 {
				o.Timeout = 2 * time.Second
			}
			o.Classify = dial.Classify
			p, err := probe.New(d, o)
			if err != nil {
				t.Fatal(err)
			}
			var ups []upstream.Upstream
			for _, m := range f.Members() {
				ups = append(ups, m.Upstream)
			}
			var c collect
			start := time.Now()
			if _, err := p.Pass(context.Background(), ups, &c); err != nil {
				t.Fatalf("pass: %v", err)
			}
			took := time.Since(start)
			if took < tt.min || took > tt.max {
				t.Errorf("the pass took %v, want within [%v, %v]", took.Round(time.Millisecond), tt.min, tt.max)
			}
			for _, u := range ups {
				r, ok := c.got[u.ID]
				if !ok {
					t.Fatalf("no result for %s", u)
				}
				if r.OK != tt.wantOK {
					t.Errorf("ok %v (%s), want %v", r.OK, upstream.Failure(r.Cause, r.Detail), tt.wantOK)
				}
				if tt.wantAnon != "" && r.Anonymity != tt.wantAnon {
					t.Errorf("anonymity %q, want %q", r.Anonymity, tt.wantAnon)
				}
				if tt.wantCaus != upstream.CauseNone && r.Cause != tt.wantCaus {
					t.Errorf("failure %q, want cause %q", upstream.Failure(r.Cause, r.Detail), tt.wantCaus)
				}
				want := tt.wantQual
				if want.Org == "exit" {
					want.Org += " " + r.ExitIP // Quality was asked of the exit's address
				}
				if r.Quality != want {
					t.Errorf("exit quality %+v, want %+v", r.Quality, want)
				}
			}
		})
	}
}
