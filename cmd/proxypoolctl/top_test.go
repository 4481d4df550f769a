package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/metrics"
	"github.com/proxypool/proxypool/internal/testtool"
	"github.com/proxypool/proxypool/internal/top"
)

// metricsServer runs a real metrics endpoint with a small pool recorded
// and returns its /metrics URL.
func metricsServer(t *testing.T) (*metrics.Metrics, string) {
	t.Helper()
	m := metrics.New()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.ServeListener(ctx, ln, nil); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	now := time.Now()
	m.SetPool(metrics.PoolSnapshot{
		At: now, Healthy: 62,
		ByState:       map[string]int{"healthy": 62, "dead": 30, "unknown": 8},
		DistinctExits: 70, HealthyExits: 41,
	})
	m.SLO().Floor("us", 12, 8, 50, 20)
	m.SLO().Floor("nonus", 50, 33, 10, 0)
	m.SLO().Floor("empty", 0, 0, 0, 0)
	m.Tor().Instances("us", 3, 2)
	m.Tor().Exits("us", 40)
	m.Probe().Pass(250, 1000, 61)
	m.Probe().Backlog(750)
	m.Probe().CheckDone("ok", 100*time.Millisecond)
	m.Probe().CheckDone("timeout", 5*time.Second)
	m.Source().Refreshed("local", true, now.Add(-3*time.Minute), 10, 0, 0)
	m.Source().Refreshed("remote", false, now, 0, 0, 0)
	m.Gateway().SnapshotLoaded(7, 62, time.Millisecond)
	return m, "http://" + ln.Addr().String() + "/metrics"
}

func traffic(m *metrics.Metrics, ok, failed int) {
	g := m.Gateway()
	for range ok {
		g.ConnOpened("mixed", "socks5")
		g.DialLatency("", 50*time.Millisecond)
		g.Bytes(100, 10000)
		g.ConnDone("mixed", "socks5", "ok", time.Second)
	}
	for range failed {
		g.ConnOpened("mixed", "http")
		g.Retry()
		g.DialLatency("refused", time.Millisecond)
		g.ConnDone("mixed", "http", "upstream_failed", 10*time.Millisecond)
	}
	g.ConnOpened("mixed", "http")
	g.ConnDone("mixed", "http", "client_error", time.Millisecond) // not an error of ours
}

func runCtl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestTopOnce(t *testing.T) {
	m, url := metricsServer(t)
	traffic(m, 9, 1)
	code, out, stderr := runCtl(t, "top", "--metrics", url, "--once")
	if code != 0 {
		t.Fatalf("top --once: exit %d\n%s", code, stderr)
	}
	if strings.Contains(out, top.ClearScreen) {
		t.Error("--once output clears the screen")
	}
	for _, want := range []string{
		"POOL     62 healthy of 100",
		"exits 41 healthy, 70 seen",
		"healthy 62, unknown 8, failing 0, dead 30",
		"GATEWAY  - req/s", // one scrape: no rate yet
		"since start: 11 conns, 1 errors",
		"ok 9", "upstream_failed 1", "client_error 1",
		"dial p50 ", "snapshot v7",
		"PROBE    pass 250/1000 (25%)", "backlog 750", "50% ok of 2 checks",
		"SOURCES  local ok 3m0s ago", "remote FAILING (never ok)",
		"PROCESS  cpu -",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("frame lacks %q:\n%s", want, out)
		}
	}
	// The group table: us below floor with its Tor figures, empty marked.
	lines := strings.Split(out, "\n")
	row := func(name string) string {
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) > 0 && f[0] == name {
				return strings.Join(f, " ")
			}
		}
		return ""
	}
	for name, want := range map[string]string{
		"us":    "us 12 8 50/20 BELOW FLOOR 3/2 40",
		"nonus": "nonus 50 33 10/0 ok - -",
		"empty": "empty 0 0 - EMPTY - -",
	} {
		if got := row(name); got != want {
			t.Errorf("group row %q = %q, want %q\n%s", name, got, want, out)
		}
	}
}

func TestTopJSONRates(t *testing.T) {
	m, url := metricsServer(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // steady traffic while top samples
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				traffic(m, 3, 1)
				m.Probe().CheckDone("ok", 20*time.Millisecond)
			}
		}
	}()
	code, out, stderr := runCtl(t, "--json", "top", "--metrics", url, "--frames", "3", "--interval", "200ms")
	close(stop)
	wg.Wait()
	if code != 0 {
		t.Fatalf("top --json: exit %d\n%s", code, stderr)
	}
	var frames []top.Frame
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var f top.Frame
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		frames = append(frames, f)
	}
	if len(frames) != 3 {
		t.Fatalf("%d frames, want 3", len(frames))
	}
	if frames[0].Gateway.RatePerSec != nil {
		t.Error("first frame has a rate without an earlier scrape")
	}
	last := frames[2]
	if last.Interval < 0.15 || last.Interval > 2 {
		t.Errorf("interval %v s, want about 0.2", last.Interval)
	}
	gw := last.Gateway
	if gw.RatePerSec == nil || *gw.RatePerSec < 50 {
		t.Fatalf("gateway rate %v, want well above 50/s under steady traffic", gw.RatePerSec)
	}
	// 1 of 5 connections per round is ours to blame (client_error is not).
	if ratio := *gw.ErrorsPerSec / *gw.RatePerSec; ratio < 0.1 || ratio > 0.3 {
		t.Errorf("error ratio %.2f, want about 0.2", ratio)
	}
	if gw.RetriesPerSec == nil || *gw.RetriesPerSec <= 0 || gw.DownBytesPerSec == nil || *gw.DownBytesPerSec <= 0 {
		t.Errorf("retries %v/s, down %v B/s: want both moving", gw.RetriesPerSec, gw.DownBytesPerSec)
	}
	if gw.DialP50 == nil || *gw.DialP50 < 0.025 || *gw.DialP50 > 0.1 {
		t.Errorf("dial p50 %v, want within the 25–100 ms buckets (50 ms dials)", gw.DialP50)
	}
	if last.Probe.ChecksPerSec == nil || *last.Probe.ChecksPerSec <= 0 {
		t.Errorf("checks/s %v, want > 0", last.Probe.ChecksPerSec)
	}
	if last.Process.CPU == nil || last.Process.RSS <= 0 {
		t.Errorf("process cpu %v rss %v: want both", last.Process.CPU, last.Process.RSS)
	}
	var us *top.GroupView
	for i := range last.Groups {
		if last.Groups[i].Name == "us" {
			us = &last.Groups[i]
		}
	}
	if us == nil || !us.BelowFloor || us.TorExits == nil || *us.TorExits != 40 {
		t.Errorf("group us = %+v, want below floor with 40 Tor exits", us)
	}
}

func TestTopLiveRedraws(t *testing.T) {
	_, url := metricsServer(t)
	code, out, stderr := runCtl(t, "top", "--metrics", url, "--frames", "2", "--interval", "100ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if n := strings.Count(out, top.ClearScreen); n != 2 {
		t.Errorf("%d screen clears for 2 frames, want 2", n)
	}
	if n := strings.Count(out, "POOL "); n != 2 {
		t.Errorf("%d frames drawn, want 2", n)
	}
}

func TestTopErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	dir := t.TempDir()
	cfg := filepath.Join(dir, "proxypool.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	off := filepath.Join(dir, "off.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("metrics:\n  listen: %s\n", dead)), 0o644)
	os.WriteFile(bad, []byte("metrics:\n  lissen: 127.0.0.1:1\n"), 0o644)
	os.WriteFile(off, []byte("metrics:\n  enabled: false\n"), 0o644)

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"nothing listening", []string{"top", "--metrics", "http://" + dead + "/metrics", "--once"}, exitFail, "connection refused"},
		{"default from config", []string{"--config", cfg, "top", "--once"}, exitFail, "scraping http://" + dead + "/metrics"},
		{"broken config", []string{"--config", bad, "top", "--once"}, exitFail, "bad.yaml:2"},
		{"metrics disabled", []string{"--config", off, "top", "--once"}, exitFail, "metrics are disabled"},
		{"interval too short", []string{"top", "--metrics", "http://" + dead + "/x", "--interval", "1ms"}, exitUsage, "too short"},
		{"stray argument", []string{"top", "now"}, exitUsage, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCtl(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, tt.code, tt.want)
			}
		})
	}

	// A page that is not the exposition format is a parse error, not a panic.
	srv := newTextServer(t, "<html>hello</html>\n")
	code, _, stderr := runCtl(t, "top", "--metrics", srv, "--once")
	if code != exitFail || !strings.Contains(stderr, "parsing the metrics") {
		t.Errorf("html page: exit %d, %q", code, stderr)
	}
}

func newTextServer(t *testing.T, body string) string {
	t.Helper()
	addr := testtool.ServeTCP(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(buf)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	})
	return "http://" + addr + "/metrics"
}
