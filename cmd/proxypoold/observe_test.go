package main

import (
	"context"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/metrics"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/store/storetest"
	"github.com/proxypool/proxypool/internal/upstream"
)

// TestProbeSinkLabelsByCause: a failed check is counted under its cause's
// name, certificate and routes_locally included (both once fell into a
// neighbour's label), and still reaches the store with its detail.
func TestProbeSinkLabelsByCause(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, store.Options{})
	u := upstream.MustNew(map[string]any{"type": "socks5", "server": "127.73.1.1", "port": 1080})
	if _, err := st.Add(ctx, "manual", u); err != nil {
		t.Fatal(err)
	}
	m := metrics.NewWith(metrics.Options{Version: "test"})
	sink := probeSink{st: st, m: m.Probe()}
	results := []upstream.CheckResult{
		{ID: u.ID, At: time.Now(), Cause: upstream.CauseCertificate, Detail: "x509: certificate has expired or is not yet valid"},
		{ID: u.ID, At: time.Now(), Cause: upstream.CauseRoutesLocally, Detail: "exit 127.73.1.1 is in our own network"},
		{ID: u.ID, At: time.Now(), Cause: upstream.CauseLocal},
		{ID: u.ID, At: time.Now(), OK: true},
	}
	for _, r := range results {
		sink.Submit(r)
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "proxypool_probe_checks_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "outcome" {
					got[l.GetValue()] = mt.GetCounter().GetValue()
				}
			}
		}
	}
	want := map[string]float64{"certificate": 1, "routes_locally": 1, "local": 1, "ok": 1}
	for outcome, n := range want {
		if got[outcome] != n {
			t.Errorf("proxypool_probe_checks_total{outcome=%q} = %v, want %v (all: %v)", outcome, got[outcome], n, got)
		}
	}
	if got["other"] != 0 {
		t.Errorf("a named cause was counted as other: %v", got)
	}
	r, err := st.Get(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.LastCause != upstream.CauseNone || r.OKs != 1 || r.Failures != 0 {
		t.Errorf("store after the OK check: %+v", r.Status)
	}
}
