package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/proxypool/proxypool/internal/metrics"
	"github.com/proxypool/proxypool/internal/upstream"
)

// serve runs m's server on a fresh loopback port until the test ends and
// returns its base URL.
func serve(t *testing.T, m *metrics.Metrics, health func() error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.ServeListener(ctx, ln, health) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeListener returned %v after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("metrics server did not stop within 10s of cancel")
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// scrape fetches /metrics in the text format and parses it.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return fams
}

// value is the sample of fam with exactly labels (name=value pairs); for
// histograms it is the sample count. ok is false when no such series.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// driveAll exercises every recorder once, so every proxypool series
// exists. The dashboard and rules tests compare against what this yields.
func driveAll(m *metrics.Metrics, now time.Time) {
	m.Checks().TargetPass("shop", 40, 31, false)
	m.Checks().TargetPass("shop", 40, 0, true)
	m.Checks().SpeedPass(12, 12<<20)
	g := m.Gateway()
	g.ConnOpened("mixed", "socks5")
	g.ConnOpened("mixed", "http")
	g.ConnOpened("us", "http")
	g.ActiveTunnels(1)
	g.DialLatency("", 40*time.Millisecond)
	g.DialLatency("refused", 3*time.Millisecond)
	g.Retry()
	g.Bytes(1000, 250000)
	g.ActiveTunnels(-1)
	g.ConnDone("mixed", "socks5", "ok", 2*time.Second)
	g.ConnDone("mixed", "http", "upstream_failed", 300*time.Millisecond)
	g.ConnDone("us", "http", "client_error", time.Millisecond)
	g.AuthRejected("us")
	g.AuthDelayed("us")
	g.ClientLimited("mixed")
	g.ClientLimited("mixed")
	g.SnapshotLoaded(42, 1234, 15*time.Millisecond)

	p := m.Probe()
	p.CheckDone("ok", 200*time.Millisecond)
	p.CheckDone("timeout", 5*time.Second)
	p.Backlog(17)
	p.Pass(10, 100, 4)

	m.Source().Refreshed("local", true, now.Add(-time.Minute), 5, 1, 2)
	m.Source().Summary(upstream.SourceSummary{Source: "remote", Err: "fetching: 503", Failed: 0}, now)

	m.Tor().Instances("us", 3, 2)
	m.Tor().Exits("us", 40)
	m.Tor().Plan("us", 120, 1)
	m.Tor().Discovered(now.Add(-time.Hour))
	m.Tor().Resources(9060, "us", 12.5, 13<<20)
	m.Tor().Traffic(9060, "us", 4000, 1500)
	m.Tor().Traffic(9061, "us", 1000, 500)

	m.SLO().Floor("us", 12, 8, 50, 20)
	m.SLO().Floor("nonus", 70, 30, 50, 20)
	m.SLO().Floor("", 82, 38, 1, 0)
	m.SLO().Action("us", "recheck")

	m.SetPool(metrics.PoolSnapshot{
		At:            now,
		Healthy:       82,
		ByState:       map[string]int{"healthy": 82, "dead": 10, "unknown": 8},
		BySource:      map[string]int{"local": 60, "remote": 40},
		ByType:        map[string]int{"socks5": 70, "vmess": 20, "tor": 10},
		ByCountry:     map[string]int{"US": 12, "DE": 50, "": 20},
		ByAnonymity:   map[string]int{"elite": 60, "anonymous": 22},
		ByGroup:       map[string]int{"us": 3},
		ByClass:       map[string]int{"datacenter": 50, "residential": 30, "": 2, "hosting": 1},
		DistinctExits: 60,
		HealthyExits:  38,
	})
}

func TestRecordersMoveSeries(t *testing.T) {
	m := metrics.New()
	base := serve(t, m, nil)

	before := scrape(t, base)
	if v, ok := value(before, "proxypool_gateway_bytes_total", "direction", "down"); !ok || v != 0 {
		t.Errorf("before traffic: bytes down = %v (present %v), want a 0 series", v, ok)
	}
	if _, ok := before["proxypool_pool_healthy_upstreams"]; ok {
		t.Error("pool series exported before any snapshot")
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "proxypool_build_info"} {
		if before[name] == nil {
			t.Errorf("%s missing from /metrics", name)
		}
	}

	now := time.Now()
	driveAll(m, now)
	after := scrape(t, base)

	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"proxypool_gateway_connections_total", []string{"listener", "mixed", "proto", "socks5", "outcome", "ok"}, 1},
		{"proxypool_gateway_connections_total", []string{"listener", "mixed", "proto", "http", "outcome", "upstream_failed"}, 1},
		{"proxypool_gateway_connections_opened_total", []string{"listener", "mixed", "proto", "http"}, 1},
		{"proxypool_gateway_connections_active", []string{"listener", "mixed"}, 0},
		{"proxypool_gateway_connection_duration_seconds", []string{"proto", "http"}, 2},
		{"proxypool_gateway_tunnels_active", nil, 0},
		{"proxypool_gateway_dial_duration_seconds", []string{"cause", "ok"}, 1},
		{"proxypool_gateway_dial_duration_seconds", []string{"cause", "refused"}, 1},
		{"proxypool_gateway_retries_total", nil, 1},
		{"proxypool_gateway_bytes_total", []string{"direction", "up"}, 1000},
		{"proxypool_gateway_bytes_total", []string{"direction", "down"}, 250000},
		{"proxypool_gateway_auth_rejected_total", []string{"listener", "us"}, 1},
		{"proxypool_gateway_auth_delayed_total", []string{"listener", "us"}, 1},
		{"proxypool_gateway_client_limited_total", []string{"listener", "mixed"}, 2},
		{"proxypool_gateway_snapshot_version", nil, 42},
		{"proxypool_gateway_snapshot_upstreams", nil, 1234},
		{"proxypool_gateway_snapshot_load_seconds", nil, 0.015},
		{"proxypool_gateway_snapshot_loads_total", nil, 1},
		{"proxypool_probe_checks_total", []string{"outcome", "ok"}, 1},
		{"proxypool_probe_checks_total", []string{"outcome", "timeout"}, 1},
		{"proxypool_probe_check_duration_seconds", []string{"result", "fail"}, 1},
		{"proxypool_probe_backlog", nil, 17},
		{"proxypool_probe_pass_done", nil, 10},
		{"proxypool_probe_pass_size", nil, 100},
		{"proxypool_probe_pass_healthy", nil, 4},
		{"proxypool_source_refreshes_total", []string{"source", "local", "result", "ok"}, 1},
		{"proxypool_source_refreshes_total", []string{"source", "remote", "result", "error"}, 1},
		{"proxypool_source_upstreams_total", []string{"source", "local", "change", "new"}, 5},
		{"proxypool_source_upstreams_total", []string{"source", "local", "change", "failed"}, 2},
		{"proxypool_source_failing", []string{"source", "local"}, 0},
		{"proxypool_source_failing", []string{"source", "remote"}, 1},
		{"proxypool_source_last_success_timestamp_seconds", []string{"source", "local"}, float64(now.Add(-time.Minute).UnixNano()) / 1e9},
		{"proxypool_source_last_attempt_timestamp_seconds", []string{"source", "remote"}, float64(now.UnixNano()) / 1e9},
		{"proxypool_tor_instances_active", []string{"group", "us"}, 3},
		{"proxypool_tor_instances_bootstrapped", []string{"group", "us"}, 2},
		{"proxypool_tor_exits", []string{"group", "us"}, 40},
		{"proxypool_tor_instance_cpu_seconds_total", []string{"group", "us", "port", "9060"}, 12.5},
		{"proxypool_tor_instance_memory_bytes", []string{"group", "us", "port", "9060"}, 13 << 20},
		{"proxypool_tor_traffic_bytes_total", []string{"group", "us", "direction", "read"}, 5000},
		{"proxypool_tor_traffic_bytes_total", []string{"group", "us", "direction", "written"}, 2000},
		{"proxypool_slo_below_floor", []string{"group", "us"}, 1},
		{"proxypool_slo_below_floor", []string{"group", "nonus"}, 0},
		{"proxypool_slo_below_floor", []string{"group", "_pool"}, 0},
		{"proxypool_slo_min_healthy", []string{"group", "us"}, 50},
		{"proxypool_slo_min_exits", []string{"group", "us"}, 20},
		{"proxypool_slo_actions_total", []string{"group", "us", "kind", "recheck"}, 1},
		{"proxypool_group_healthy_upstreams", []string{"group", "us"}, 12},
		{"proxypool_group_healthy_exits", []string{"group", "nonus"}, 30},
		{"proxypool_pool_healthy_upstreams", nil, 82},
		{"proxypool_pool_upstreams", []string{"state", "healthy"}, 82},
		{"proxypool_pool_upstreams", []string{"state", "failing"}, 0}, // filled in
		{"proxypool_pool_upstreams_by_source", []string{"source", "remote"}, 40},
		{"proxypool_pool_upstreams_by_type", []string{"type", "vmess"}, 20},
		{"proxypool_pool_healthy_by_country", []string{"country", "DE"}, 50},
		{"proxypool_pool_healthy_by_country", []string{"country", "unknown"}, 20},
		{"proxypool_pool_healthy_by_anonymity", []string{"anonymity", "elite"}, 60},
		{"proxypool_pool_upstreams_by_group", []string{"group", "us"}, 3},
		{"proxypool_pool_healthy_by_class", []string{"class", "datacenter"}, 50},
		{"proxypool_pool_healthy_by_class", []string{"class", "unknown"}, 3}, // "" and a name not a class
		{"proxypool_pool_healthy_by_class", []string{"class", "mobile"}, 0},  // filled in
		{"proxypool_pool_exits", nil, 60},
		{"proxypool_pool_healthy_exits", nil, 38},
		{"proxypool_pool_snapshot_timestamp_seconds", nil, float64(now.UnixNano()) / 1e9},
		{"proxypool_build_info", []string{"version", "unknown"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name+fmt.Sprint(tt.labels), func(t *testing.T) {
			got, ok := value(after, tt.name, tt.labels...)
			if !ok {
				t.Fatalf("no series %s%v in /metrics", tt.name, tt.labels)
			}
			if d := got - tt.want; d > 1e-3 || d < -1e-3 {
				t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
			}
		})
	}
}

// TestTorInstanceTotals: tor reports totals since an instance started;
// the counters grow by what is new, an instance that restarted (a smaller
// total) counts from zero again, a port that now serves another group
// starts over, and Retain drops the series of instances that stopped.
func TestTorInstanceTotals(t *testing.T) {
	m := metrics.NewWith(metrics.Options{Groups: []string{"us", "nonus"}})
	base := serve(t, m, nil)
	tor := m.Tor()
	type reading struct {
		port          int
		group         string
		cpu           float64
		read, written uint64
	}
	steps := []struct {
		name     string
		readings []reading
		retain   []int
		want     map[string]float64 // "cpu group port" / "read group" / "written group"
		gone     []string           // port label values without a cpu series
	}{
		{"first readings count whole", []reading{{9060, "us", 2, 100, 10}, {9061, "nonus", 1, 50, 5}}, []int{9060, 9061},
			map[string]float64{"cpu us 9060": 2, "cpu nonus 9061": 1, "read us": 100, "written us": 10, "read nonus": 50}, nil},
		{"the difference", []reading{{9060, "us", 3.5, 160, 30}}, []int{9060, 9061},
			map[string]float64{"cpu us 9060": 3.5, "read us": 160, "written us": 30}, nil},
		{"a restart counts from zero", []reading{{9060, "us", 0.5, 20, 2}}, []int{9060, 9061},
			map[string]float64{"cpu us 9060": 4, "read us": 180, "written us": 32}, nil},
		{"a stopped instance's series go", nil, []int{9060},
			map[string]float64{"cpu us 9060": 4, "read nonus": 50}, []string{"9061"}},
		{"a port of another group starts over", []reading{{9060, "nonus", 1, 10, 1}}, []int{9060},
			map[string]float64{"cpu nonus 9060": 1, "read nonus": 60, "read us": 180}, nil},
	}
	for _, st := range steps {
		for _, r := range st.readings {
			tor.Resources(r.port, r.group, r.cpu, 1<<20)
			tor.Traffic(r.port, r.group, r.read, r.written)
		}
		tor.Retain(st.retain)
		fams := scrape(t, base)
		for key, want := range st.want {
			f := strings.Fields(key)
			var got float64
			var ok bool
			if f[0] == "cpu" {
				got, ok = value(fams, "proxypool_tor_instance_cpu_seconds_total", "group", f[1], "port", f[2])
			} else {
				got, ok = value(fams, "proxypool_tor_traffic_bytes_total", "group", f[1], "direction", f[0])
			}
			if !ok || got != want {
				t.Errorf("%s: %s = %v (present %v), want %v", st.name, key, got, ok, want)
			}
		}
		if st.name == "a port of another group starts over" {
			if _, ok := value(fams, "proxypool_tor_instance_cpu_seconds_total", "group", "us", "port", "9060"); ok {
				t.Errorf("%s: port 9060 still has a us series", st.name)
			}
		}
		for _, port := range st.gone {
			for _, v := range labelValues(fams, "proxypool_tor_instance_memory_bytes", "port") {
				if v == port {
					t.Errorf("%s: port %s still has a memory series", st.name, port)
				}
			}
		}
	}
}

func TestHealthz(t *testing.T) {
	var bad atomic.Bool
	m := metrics.New()
	base := serve(t, m, func() error {
		if bad.Load() {
			return errors.New("store: database is locked")
		}
		return nil
	})
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthy: %d %q, want 200 ok", code, body)
	}
	bad.Store(true)
	if code, body := get(t, base+"/healthz"); code != 503 || !strings.Contains(body, "database is locked") {
		t.Errorf("unhealthy: %d %q, want 503 naming the error", code, body)
	}
	if code, _ := get(t, base+"/nope"); code != 404 {
		t.Errorf("unknown path: %d, want 404", code)
	}
	if code, body := get(t, base+"/"); code != 200 || !strings.Contains(body, "/metrics") {
		t.Errorf("index: %d %q", code, body)
	}
}

func TestServeAddrAndStop(t *testing.T) {
	m := metrics.New()
	// Find a free port, then let Serve bind it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, addr, nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Serve(%s) never answered: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of cancel")
	}
	// A taken address is a clear error.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = m.Serve(context.Background(), ln.Addr().String(), nil)
	if err == nil || !strings.Contains(err.Error(), "listening for metrics on "+ln.Addr().String()) {
		t.Fatalf("Serve on a taken port: %v", err)
	}
}

// labelValues lists the values of label across fam's series.
func labelValues(fams map[string]*dto.MetricFamily, name, label string) []string {
	var out []string
	for _, m := range fams[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				out = append(out, l.GetValue())
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestCardinalityBounded(t *testing.T) {
	m := metrics.NewWith(metrics.Options{Sources: []string{"a", "b"}, Groups: []string{"us"}, MaxCountries: 3, MaxLabelValues: 5})
	base := serve(t, m, nil)
	countries := map[string]int{}
	for i := range 200 {
		countries[fmt.Sprintf("C%03d", i)] = 1
	}
	countries["US"], countries["DE"], countries["NL"] = 500, 400, 300
	m.SetPool(metrics.PoolSnapshot{
		ByCountry: countries,
		BySource:  map[string]int{"a": 1, "b": 2, "evil": 3, "evil2": 4},
		ByType:    map[string]int{"t1": 1, "t2": 1, "t3": 1, "t4": 1, "t5": 1, "t6": 1, "t7": 1},
	})
	for i := range 100 {
		m.Source().Refreshed(fmt.Sprintf("s%d", i), true, time.Now(), 1, 0, 0)
		m.Gateway().ConnOpened(fmt.Sprintf("listener%d", i), "socks5")
		m.Gateway().ConnDone(fmt.Sprintf("listener%d", i), "socks5", fmt.Sprintf("outcome%d", i), time.Millisecond)
		m.SLO().Floor(fmt.Sprintf("g%d", i), 0, 0, 1, 0)
	}
	m.Gateway().ConnOpened("bad\xff"+strings.Repeat("x", 300), "http") // invalid UTF-8 and long: no panic
	fams := scrape(t, base)

	if got := labelValues(fams, "proxypool_pool_healthy_by_country", "country"); strings.Join(got, ",") != "DE,NL,US,other" {
		t.Errorf("countries = %v, want the 3 largest + other", got)
	}
	if v, _ := value(fams, "proxypool_pool_healthy_by_country", "country", "other"); v != 200 {
		t.Errorf("other country = %v, want 200 (the sum of the rest)", v)
	}
	if got := labelValues(fams, "proxypool_pool_upstreams_by_source", "source"); strings.Join(got, ",") != "a,b,other" {
		t.Errorf("sources = %v, want configured names + other", got)
	}
	if v, _ := value(fams, "proxypool_pool_upstreams_by_source", "source", "other"); v != 7 {
		t.Errorf("other source = %v, want 7", v)
	}
	if got := labelValues(fams, "proxypool_source_failing", "source"); strings.Join(got, ",") != "other" {
		t.Errorf("unconfigured refreshed sources = %v, want only other", got)
	}
	if got := labelValues(fams, "proxypool_slo_below_floor", "group"); strings.Join(got, ",") != "other" {
		t.Errorf("unconfigured groups = %v, want only other", got)
	}
	if got := len(labelValues(fams, "proxypool_pool_upstreams_by_type", "type")); got > 6 {
		t.Errorf("%d type values, want at most MaxLabelValues+1", got)
	}
	// Open-ended gateway labels: at most 5 listeners + other, 32 outcomes + other.
	if got := len(labelValues(fams, "proxypool_gateway_connections_active", "listener")); got > 6 {
		t.Errorf("%d listener values, want ≤ 6", got)
	}
	if got := len(labelValues(fams, "proxypool_gateway_connections_total", "outcome")); got > 33 {
		t.Errorf("%d outcome values, want ≤ 33", got)
	}
	total := 0
	for name, f := range fams {
		if strings.HasPrefix(name, "proxypool_") {
			total += len(f.GetMetric())
		}
	}
	if total > 200 {
		t.Errorf("%d proxypool series after 100 distinct names of everything, want a bounded few", total)
	}
}

func TestPoolSnapshotReplacesAndMerges(t *testing.T) {
	m := metrics.New()
	base := serve(t, m, nil)
	t0 := time.Now().Add(-time.Hour)
	m.SetPool(metrics.PoolSnapshot{At: t0, Healthy: 5, ByCountry: map[string]int{"US": 5},
		Groups: map[string]metrics.GroupHealth{"us": {Healthy: 5, Exits: 3}, "old": {Healthy: 1}},
		Sources: []upstream.SourceMeta{
			{Name: "stale", LastFetch: t0, LastOK: t0.Add(-time.Hour), LastError: "timeout"},
			{Name: "gone", LastFetch: t0, LastOK: t0},
		}})
	// The in-process SLO loop saw group us later than the snapshot: it wins.
	m.SLO().Floor("us", 2, 1, 0, 0)
	// The in-process refresher fixed "stale" after the store's record.
	m.Source().Refreshed("stale", true, t0.Add(time.Minute), 0, 0, 0)
	fams := scrape(t, base)
	if v, _ := value(fams, "proxypool_group_healthy_upstreams", "group", "us"); v != 2 {
		t.Errorf("group us healthy = %v, want 2 (the newer Floor)", v)
	}
	if v, _ := value(fams, "proxypool_source_failing", "source", "stale"); v != 0 {
		t.Errorf("stale failing = %v, want 0 after a later good refresh", v)
	}

	// A new snapshot replaces: US gone, DE in; old group and gone source dropped.
	t1 := time.Now()
	m.SetPool(metrics.PoolSnapshot{At: t1, Healthy: 7, ByCountry: map[string]int{"DE": 7},
		Groups:  map[string]metrics.GroupHealth{"us": {Healthy: 7, Exits: 4}},
		Sources: []upstream.SourceMeta{{Name: "stale", LastFetch: t1, LastOK: t0.Add(time.Minute), LastError: "refused"}}})
	fams = scrape(t, base)
	if got := labelValues(fams, "proxypool_pool_healthy_by_country", "country"); strings.Join(got, ",") != "DE" {
		t.Errorf("countries after second snapshot = %v, want [DE]", got)
	}
	if v, _ := value(fams, "proxypool_group_healthy_upstreams", "group", "us"); v != 7 {
		t.Errorf("group us healthy = %v, want 7 (the newer snapshot)", v)
	}
	if _, ok := value(fams, "proxypool_group_healthy_upstreams", "group", "old"); ok {
		t.Error("group old still exported after a snapshot without it")
	}
	if got := labelValues(fams, "proxypool_source_failing", "source"); strings.Join(got, ",") != "stale" {
		t.Errorf("sources = %v, want [stale]", got)
	}
	if v, _ := value(fams, "proxypool_source_failing", "source", "stale"); v != 1 {
		t.Errorf("stale failing = %v, want 1 (store says the newest fetch failed)", v)
	}
}

func TestPollPool(t *testing.T) {
	m := metrics.New()
	base := serve(t, m, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- m.PollPool(ctx, 10*time.Millisecond, func(context.Context) (metrics.PoolSnapshot, error) {
			n := calls.Add(1)
			if n%2 == 0 {
				return metrics.PoolSnapshot{}, errors.New("database is locked")
			}
			return metrics.PoolSnapshot{Healthy: int(n)}, nil
		})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("PollPool returned %v, want context.Canceled", err)
	}
	fams := scrape(t, base)
	if v, _ := value(fams, "proxypool_pool_snapshot_errors_total"); v < 2 {
		t.Errorf("snapshot errors = %v, want ≥ 2", v)
	}
	if v, _ := value(fams, "proxypool_pool_healthy_upstreams"); int(v)%2 != 1 {
		t.Errorf("healthy = %v, want the last good (odd) snapshot", v)
	}
}

func TestNilRecordersAreNoOps(t *testing.T) {
	var g *metrics.GatewayMetrics
	var p *metrics.ProbeMetrics
	var s *metrics.SourceMetrics
	var tm *metrics.TorMetrics
	var slo *metrics.SLOMetrics
	g.ConnOpened("a", "b")
	g.ConnDone("a", "b", "ok", 0)
	g.ActiveTunnels(1)
	g.DialLatency("", 0)
	g.Retry()
	g.Bytes(1, 1)
	g.AuthRejected("a")
	g.SnapshotLoaded(1, 1, 0)
	p.CheckDone("ok", 0)
	p.Backlog(1)
	p.Pass(1, 1, 1)
	s.Refreshed("a", true, time.Now(), 0, 0, 0)
	s.Summary(upstream.SourceSummary{}, time.Now())
	tm.Instances("a", 1, 1)
	tm.Exits("a", 1)
	tm.Resources(9060, "a", 1, 1)
	tm.Traffic(9060, "a", 1, 1)
	tm.Retain(nil)
	slo.Floor("a", 1, 1, 1, 1)
	slo.Action("a", "b")
}

// TestPromtoolLint runs `promtool check metrics` (Debian package
// prometheus) over a full scrape when promtool is installed.
func TestPromtoolLint(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	m := metrics.New()
	base := serve(t, m, nil)
	driveAll(m, time.Now())
	_, body := get(t, base+"/metrics")
	var own bytes.Buffer
	for _, line := range strings.SplitAfter(body, "\n") {
		if strings.Contains(line, "proxypool_") {
			own.WriteString(line)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &own
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// BenchmarkGatewayConn is the gateway's per-connection cost: open, one
// dial, bytes, done.
func BenchmarkGatewayConn(b *testing.B) {
	g := metrics.New().Gateway()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g.ConnOpened("mixed", "socks5")
			g.DialLatency("", 30*time.Millisecond)
			g.Bytes(512, 4096)
			g.ConnDone("mixed", "socks5", "ok", time.Second)
		}
	})
}
