package main

import (
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/control"
)

// TestPrintProbe: status says what the probe does now — paused since when
// and why, a pass or job running, or just running — then its last pass and
// last full pass, each with its size and duration.
func TestPrintProbe(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.Local)
	full := &control.Pass{At: now.Add(-10 * time.Minute), Size: 1000, Healthy: 600, Seconds: 9.2}
	small := &control.Pass{At: now.Add(-54 * time.Second), Size: 1, Healthy: 1, Seconds: 0.2}
	tests := []struct {
		name string
		p    control.ProbeStatus
		want []string
	}{
		{"never ran", control.ProbeStatus{}, []string{"probe: no pass yet\n"}},
		{"running", control.ProbeStatus{Done: 1, Total: 1, LastPass: small.At, Last: small, LastFull: full}, []string{
			"probe: running\n",
			"  last pass: 54s ago, 1 upstreams checked in 200ms, 1 healthy\n",
			"  last full pass: 10m ago, 1000 upstreams checked in 9.2s, 600 healthy\n"}},
		{"paused", control.ProbeStatus{Paused: true, Since: now.Add(-3 * time.Minute), Reason: "uplink down: no judge answered", Last: small}, []string{
			"probe: PAUSED since 2026-12-07 09:57:00 (3m ago): uplink down: no judge answered\n",
			"  last pass: 54s ago"}},
		{"pass running", control.ProbeStatus{Done: 3, Total: 10, Last: small}, []string{"probe: pass running, 3 of 10 checked\n", "  last pass:"}},
		{"other process ran it (--db)", control.ProbeStatus{Last: full, LastFull: full}, []string{"probe: running\n", "  last full pass: 10m ago"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			printProbe(&b, tt.p, now)
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}

// TestFetchNote: a source's last fetch shows its error, or ok.
func TestFetchNote(t *testing.T) {
	now := time.Now()
	for _, tt := range []struct {
		f    control.SourceStatus
		want string
	}{
		{control.SourceStatus{}, ""},
		{control.SourceStatus{LastFetch: now.Add(-2 * time.Minute), LastOK: now.Add(-2 * time.Minute)}, "2m ago: ok"},
		{control.SourceStatus{LastFetch: now.Add(-5 * time.Second), Error: "GET http://x/list.txt: 404 Not Found"}, "5s ago: GET http://x/list.txt: 404 Not Found"},
	} {
		if got := fetchNote(tt.f, now); got != tt.want {
			t.Errorf("fetchNote(%+v) = %q, want %q", tt.f, got, tt.want)
		}
	}
}
