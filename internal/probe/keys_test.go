package probe_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/upstream"
)

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

	good := fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Good}
	hole := fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Blackhole}
	leaky := fleet.MemberSpec{Kind: fleet.HTTP, Behavior: fleet.Transparent}
	tests := []struct {
		name     string
		members  []fleet.MemberSpec
		opts     probe.Options // Judges default to the working judge
		wantOK   bool          // of every member
		wantAnon upstream.Anonymity
		wantCaus upstream.Cause
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
			}
		})
	}
}
