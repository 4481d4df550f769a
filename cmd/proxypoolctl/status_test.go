package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/upstream"
)

// TestPrintStatus pins the text of proxypoolctl status: the tables, their
// order, and the country cut past --countries.
func TestPrintStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	full := control.Status{
		Version:    7,
		States:     map[upstream.State]int{upstream.Healthy: 3, upstream.Failing: 1, upstream.Dead: 2, upstream.Unknown: 4},
		Sources:    map[string]int{"a": 4, "b": 4, "manual": 2},
		Countries:  map[string]int{"US": 5, "DE": 3, "NL": 3, "FR": 1, "JP": 1},
		Groups:     map[string]int{"us": 2, "de": 9},
		Probe:      control.ProbeStatus{Done: 10, Total: 10, LastPass: now.Add(-90 * time.Second)},
		Gateway:    &control.GatewayStatus{Active: 2, Total: 30, Errors: 1},
		Exits:      &control.ExitCounts{Distinct: 6, Healthy: 2},
		Reputation: []control.SourceReputation{{Source: "a", Listed: 4, HealthyNow: 2, EverHealthy: 3, HealthySeconds: 3725.4}},
		SourceState: []control.SourceStatus{
			{Name: "a", LastFetch: now.Add(-2 * time.Minute), LastOK: now.Add(-2 * time.Minute), Listed: 4},
			{Name: "b", LastFetch: now.Add(-10 * time.Second), Error: "GET http://b.test/list: 404 Not Found", Listed: 4},
		},
		Floors: []control.GroupFloor{
			{Healthy: 3, Exits: 2, MinHealthy: 5, MinExits: 2, Below: true, LastAction: "scaled up tor"},
			{Group: "us", Healthy: 2, Exits: 2, MinHealthy: 1, MinExits: 1},
		},
		Targets: []control.TargetStatus{{Name: "imot", Checked: 8, Passing: 6}, {Name: "shop", Checked: 0}},
	}
	tests := []struct {
		name string
		st   control.Status
		topN int
		want string
	}{
		{"empty pool", control.Status{States: map[upstream.State]int{}}, 15,
			"pool: 0 upstreams: 0 healthy, 0 failing, 0 dead, 0 unknown (version 0)\nprobe: no pass yet\n"},
		{"last reloads", control.Status{States: map[upstream.State]int{}, Reloads: []control.ReloadStatus{
			{Component: "gateway", PID: 41, Generation: 3, At: now.Add(-30 * time.Second), Error: "/etc/proxypool/proxypool.yaml:12: gateway.strategy: unknown"},
			{Component: "probe", PID: 40, Generation: 1, At: now.Add(-2 * time.Hour), Restart: []string{"groups.us.min-healthy", "probe.interval"}},
			{Component: "run", PID: 39, Generation: 0, At: now.Add(-3 * time.Hour)},
		}}, 15, "pool: 0 upstreams: 0 healthy, 0 failing, 0 dead, 0 unknown (version 0)\nprobe: no pass yet\n" +
			"reload: gateway (pid 41) #3 at " + now.Add(-30*time.Second).Local().Format("2006-01-02 15:04:05") +
			" (30s ago): FAILED, running config kept: /etc/proxypool/proxypool.yaml:12: gateway.strategy: unknown\n" +
			"reload: probe (pid 40) #1 at " + now.Add(-2*time.Hour).Local().Format("2006-01-02 15:04:05") + " (2h ago): applied; needs a restart: groups.us.min-healthy, probe.interval\n" +
			"reload: run (pid 39) none since it started at " + now.Add(-3*time.Hour).Local().Format("2006-01-02 15:04:05") + " (3h ago)\n"},
		{"every table", full, 2, `pool: 10 upstreams: 3 healthy, 1 failing, 2 dead, 4 unknown (version 7)
exits: 6 distinct exit IPs, 2 of them healthy
probe: running
  last pass: 1m ago, 10 upstreams
gateway: 2 open connections, 30 since start, 1 failed on every try

GROUP   HEALTHY  MIN  EXITS  MIN  FLOOR  LAST ACTION
(pool)  3        5    2      2    BELOW  scaled up tor
us      2        1    2      1    met    -

TARGET  PASSING  CHECKED  PASS RATE
imot    6        8        75%
shop    0        0        -

SOURCE  LISTED  HEALTHY  EVER HEALTHY  HEALTHY TIME  LAST FETCH
a       4       2        3             1h2m5s        2m ago: ok
b       4       -        -             -             10s ago: GET http://b.test/list: 404 Not Found
manual  2       -        -             -             -

COUNTRY   HEALTHY
US        5
DE        3
(3 more)  5

GROUP  UPSTREAMS
de     9
us     2
`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			printStatus(&b, tc.st, tc.topN, now)
			if b.String() != tc.want {
				t.Errorf("status text:\n%s\nwant:\n%s", b.String(), tc.want)
			}
		})
	}
}

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
