package clashbackend_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/proxypool/proxypool/internal/clashbackend"
	"github.com/proxypool/proxypool/internal/metrics"
)

// TestMetricsGateway reads a gateway's numbers from a real metrics
// endpoint, as the API does under systemd where the gateway is its own
// process.
func TestMetricsGateway(t *testing.T) {
	m := metrics.New()
	m.Gateway().Bytes(1500, 64000)
	m.Gateway().Bytes(500, 0)
	srv := httptest.NewServer(m.Handler(func() error { return nil }))
	defer srv.Close()
	gw := &clashbackend.MetricsGateway{URL: srv.URL + "/metrics"}
	st, err := gw.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.UpTotal != 2000 || st.DownTotal != 64000 {
		t.Fatalf("totals up %d down %d, want 2000 and 64000", st.UpTotal, st.DownTotal)
	}
	if st.Memory == 0 {
		t.Fatal("no resident memory read from the process collector")
	}
	if err := gw.CloseConns(context.Background(), "1"); !errors.Is(err, clashbackend.ErrNoTunnels) {
		t.Fatalf("CloseConns: %v, want ErrNoTunnels", err)
	}
	bad := &clashbackend.MetricsGateway{URL: srv.URL + "/nothing"}
	if _, err := bad.Stats(context.Background()); err == nil {
		t.Fatal("a page without metrics read as numbers")
	}
}
