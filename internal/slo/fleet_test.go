package slo_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/geoip"
	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/slo"
	"github.com/proxypool/proxypool/internal/source"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/upstream"
)

// listServer is a proxy list source on loopback that counts its requests.
type listServer struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	body     string
	status   int
}

func startList(t *testing.T) *listServer {
	s := &listServer{status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *listServer) serve(status int, members ...*fleet.Member) {
	var b strings.Builder
	for _, m := range members {
		b.WriteString(m.URI() + "\n")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.status = b.String(), status
}

// fetchRefresher is the Refresher cmd wires: source.Fetcher.Refresh with
// force false, so every source's min-interval holds.
type fetchRefresher struct {
	f       *source.Fetcher
	sink    source.Sink
	sources []source.Source
	calls   atomic.Int64
}

func (r *fetchRefresher) Refresh(ctx context.Context, _ string) (bool, error) {
	r.calls.Add(1)
	fetched := false
	var errs []error
	for _, s := range r.f.Refresh(ctx, r.sink, r.sources, false) {
		switch {
		case s.Err != "":
			fetched = true
			errs = append(errs, fmt.Errorf("source %s: %s", s.Source, s.Err))
		case !s.NotModified:
			fetched = true
		}
	}
	return fetched, errors.Join(errs...)
}

type rig struct {
	t      *testing.T
	f      *fleet.Fleet
	st     *store.Store
	list   *listServer
	ref    *fetchRefresher
	guard  *slo.Guard
	log    *logrus.Logger
	mu     sync.Mutex
	events []string // "kind group" from OnAction, in order
	below  []time.Time
}

func (r *rig) actions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

type rigOptions struct {
	members                      int
	floor                        slo.Floor
	check, minAction, maxBackoff time.Duration
	sourceMin                    time.Duration
	policy                       upstream.Policy
	noProbe                      bool
}

// newRig wires real parts: a fleet of US socks5 members, a geoip file for
// them, a store, the probe over dial, a list source on loopback fetched by
// source.Fetcher, and a Guard over all of it for group "us".
func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	judge := fleet.StartJudgeT(t)
	spec := fleet.Uniform(o.members, fleet.SOCKS5, fleet.Good)
	for i := range spec.Members {
		spec.Members[i].Country = "US"
	}
	f := fleet.StartT(t, spec)
	geo := filepath.Join(t.TempDir(), "geoip")
	if err := f.WriteGeoIP(geo); err != nil {
		t.Fatal(err)
	}
	db, err := geoip.Open(geo, "")
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetLevel(logrus.InfoLevel)
	log.SetOutput(testWriter{t})
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "pp.db"), store.Options{Policy: o.policy, FlushInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, f: f, st: st, log: log, list: startList(t)}
	r.ref = &fetchRefresher{f: &source.Fetcher{}, sink: st,
		sources: []source.Source{{Name: "list", URL: r.list.URL + "/socks5.txt", Format: "socks5", MinInterval: o.sourceMin, Timeout: 2 * time.Second}}}

	groups := []slo.Group{{Name: "us", Floor: o.floor, Member: slo.Member(pool.Group{Name: "us", Countries: []string{"US"}})}}
	r.guard, err = slo.New(slo.Options{
		Groups:            groups,
		CheckInterval:     o.check,
		MinActionInterval: o.minAction,
		MaxBackoff:        o.maxBackoff,
		Counter:           slo.NewCounter(st, groups),
		Rechecker: &slo.StoreRechecker{
			List: func(ctx context.Context, s upstream.State) ([]upstream.Record, error) {
				return st.List(ctx, store.Filter{State: s})
			},
			Reschedule: st.Reschedule,
			Groups:     groups,
		},
		Refresher: r.ref,
		OnAction: func(group, kind string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.events = append(r.events, kind+" "+group)
		},
		Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	if !o.noProbe {
		d := dial.New(dial.Options{})
		p, err := probe.New(d, probe.Options{
			Judges:      []string{judge.URL + "/get"},
			Timeout:     time.Second,
			Concurrency: 64,
			Country:     db.CountryOf,
			Classify:    dial.Classify,
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Run(ctx, st, st, probe.RunOptions{Idle: 20 * time.Millisecond})
		}()
		t.Cleanup(func() { d.Close() })
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		st.Close()
	})
	return r
}

func (r *rig) runGuard(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.guard.Run(ctx)
	}()
	r.t.Cleanup(wg.Wait)
}

func (r *rig) usStatus() slo.GroupStatus {
	for _, s := range r.guard.Status() {
		if s.Group == "us" {
			return s
		}
	}
	return slo.GroupStatus{}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *rig) healthyUS() int {
	n := 0
	recs, _ := r.st.Healthy(context.Background())
	for _, rec := range recs {
		if rec.Country == "US" {
			n++
		}
	}
	return n
}

// TestGroupRunsDryAndRecovers is the proof: upstreams of group us
// die one by one, the group crosses its floor, the guard re-checks the dead
// ones early (long before their failing interval) and refreshes the source
// early (the list server sees it), and the group recovers once the source
// lists new live upstreams.
func TestGroupRunsDryAndRecovers(t *testing.T) {
	const listed, extra = 12, 4
	r := newRig(t, rigOptions{
		members: listed + extra,
		floor:   slo.Floor{MinHealthy: 10, MinExits: 10},
		check:   100 * time.Millisecond, minAction: time.Second, maxBackoff: 2 * time.Second,
		sourceMin: 500 * time.Millisecond,
		// Healthy upstreams are re-checked every second (so deaths are
		// seen), failing and dead ones only after an hour: a re-check
		// within the test can only be the guard's.
		policy: upstream.Policy{Interval: time.Second, FailingInterval: time.Hour, DeadBackoff: time.Hour, MaxFailures: 3},
	})
	ctx := context.Background()
	members := r.f.Members()
	r.list.serve(http.StatusOK, members[:listed]...)
	if ok, err := r.ref.Refresh(ctx, "us"); !ok || err != nil {
		t.Fatalf("first refresh: fetched %v, %v", ok, err)
	}
	waitFor(t, 5*time.Second, "12 healthy US upstreams", func() bool { return r.healthyUS() == listed })
	gctx, stop := context.WithCancel(ctx)
	defer stop()
	r.runGuard(gctx)
	time.Sleep(300 * time.Millisecond)
	if a := r.actions(); len(a) != 0 {
		t.Fatalf("group at its floor, guard acted: %q", a)
	}
	requestsBefore := r.list.requests.Load()

	// Kill upstreams one by one until the group is below its floor.
	var killed []*fleet.Member
	for i := range 3 {
		m := members[i]
		if err := m.SetBehavior(fleet.Refuse); err != nil {
			t.Fatal(err)
		}
		killed = append(killed, m)
		want := listed - len(killed)
		waitFor(t, 5*time.Second, fmt.Sprintf("%d healthy after killing %d", want, len(killed)), func() bool { return r.healthyUS() == want })
	}
	waitFor(t, 5*time.Second, "the guard to see the group below its floor", func() bool { return r.usStatus().Below })
	belowAt := time.Now()

	// (1) early re-check: the killed upstreams are checked again, long
	// before their hour-long failing interval.
	waitFor(t, 5*time.Second, "the killed upstreams re-checked early", func() bool {
		for _, m := range killed {
			h, err := r.st.History(ctx, m.Upstream.ID, 0)
			if err != nil {
				t.Fatal(err)
			}
			fails := 0
			for _, c := range h {
				if !c.OK {
					fails++
				}
			}
			if fails < 2 {
				return false
			}
		}
		return true
	})
	// (2) early refresh: the source is asked again.
	waitFor(t, 5*time.Second, "an early refresh of the source", func() bool { return r.list.requests.Load() > requestsBefore })
	waitFor(t, time.Second, "OnAction for the refresh", func() bool { return len(r.actions()) >= 2 })
	if a := r.actions(); len(a) < 2 || a[0] != "recheck us" || a[1] != "refresh us" {
		t.Fatalf("actions %q, want recheck then refresh first", a)
	}
	if st := r.usStatus(); st.Healthy != listed-3 || st.MinHealthy != 10 || st.BelowSince.IsZero() {
		t.Errorf("status while below: %+v", st)
	}

	// (3) the source lists new live upstreams: the group recovers.
	r.list.serve(http.StatusOK, members...)
	waitFor(t, 10*time.Second, "the group back at its floor", func() bool { return !r.usStatus().Below })
	t.Logf("below floor for %v; actions %q; source requests %d", time.Since(belowAt).Round(time.Millisecond), r.actions(), r.list.requests.Load())
	if n := r.healthyUS(); n != listed+extra-3 {
		t.Errorf("healthy US upstreams after recovery: %d, want %d", n, listed+extra-3)
	}

	// At the floor again: the guard stops acting.
	n := len(r.actions())
	time.Sleep(1500 * time.Millisecond)
	if a := r.actions(); len(a) != n {
		t.Errorf("floor met, still acting: %q", a[n:])
	}
}

// TestNothingLoopsWithSourcesDown: with every source answering 500 and the
// group empty, refresh attempts reaching the source stay at the configured
// minimum interval (the source's min-interval, or the guard's
// min-action-interval when that is longer), however fast the guard ticks.
func TestNothingLoopsWithSourcesDown(t *testing.T) {
	tests := []struct {
		name                 string
		sourceMin, minAction time.Duration
		interval             time.Duration // the one that must bound requests
	}{
		{"source min-interval holds", 700 * time.Millisecond, 100 * time.Millisecond, 700 * time.Millisecond},
		{"guard min-action-interval holds", 0, 500 * time.Millisecond, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, rigOptions{
				members: 1, floor: slo.Floor{MinHealthy: 10},
				check: 20 * time.Millisecond, minAction: tt.minAction, maxBackoff: tt.minAction,
				sourceMin: tt.sourceMin, noProbe: true,
			})
			r.list.serve(http.StatusInternalServerError)
			ctx, stop := context.WithCancel(context.Background())
			const window = 3 * time.Second
			start := time.Now()
			r.runGuard(ctx)
			time.Sleep(window)
			stop()
			elapsed := time.Since(start)
			got := r.list.requests.Load()
			limit := int64(elapsed/tt.interval) + 1
			t.Logf("%d source requests, %d refresh calls in %v (limit %d)", got, r.ref.calls.Load(), elapsed.Round(time.Millisecond), limit)
			if got == 0 {
				t.Fatal("the source was never asked")
			}
			if got > limit {
				t.Errorf("%d source requests in %v, want at most %d (one per %v)", got, elapsed, limit, tt.interval)
			}
			if st := r.usStatus(); !st.Below || !strings.Contains(st.LastError, "500") {
				t.Errorf("status: %+v", st)
			}
		})
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
