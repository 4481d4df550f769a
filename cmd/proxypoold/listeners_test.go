package main

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/proxypool/proxypool/internal/config"
	"github.com/proxypool/proxypool/internal/source"
	"github.com/proxypool/proxypool/internal/upstream"
)

// Listener and group names reach logs, metric labels and clients' error
// answers: each must say what the port is (no "port--4", no "pinned2").
func TestListenerAndGroupNames(t *testing.T) {
	cfg := config.Default()
	cfg.Groups = map[string]config.Group{"us": {}}
	cfg.Gateway.Ports = []config.Port{
		{Listen: "127.0.0.1:8001", Group: "us"},
		{Listen: "127.0.0.1:8002", Group: "us"},
		{Listen: "127.0.0.1:8003"},
		{Listen: "127.0.0.1:8004", Upstream: "0123456789abcdef"},
		{Listen: "127.0.0.1:8005", Upstream: "0123456789abcdef"},
	}
	e := &env{cfg: cfg}
	want, ports := listenerPlan(e)
	wantAddrs := map[string]string{
		"main": "127.0.0.1:8000", "port-us": "127.0.0.1:8001", "port-us-8002": "127.0.0.1:8002", "port-8003": "127.0.0.1:8003",
		"port-upstream-0123456789abcdef": "127.0.0.1:8004", "port-upstream-0123456789abcdef-8005": "127.0.0.1:8005",
	}
	if !reflect.DeepEqual(want, wantAddrs) {
		t.Errorf("listeners %v, want %v", want, wantAddrs)
	}
	wantPorts := map[string]string{
		"port-us": "us", "port-us-8002": "us", "port-8003": "",
		"port-upstream-0123456789abcdef": "upstream-0123456789abcdef", "port-upstream-0123456789abcdef-8005": "upstream-0123456789abcdef",
	}
	if !reflect.DeepEqual(ports, wantPorts) {
		t.Errorf("groups %v, want %v", ports, wantPorts)
	}
	var names []string
	for _, g := range poolGroups(e) {
		names = append(names, g.Name)
	}
	if len(names) != 2 {
		t.Errorf("pool groups %v, want us and one upstream-0123456789abcdef", names)
	}
}

// TestPrintSummaries: proxypoold refresh's table says which listed
// upstreams the operator removed and, under it, how many it retired.
func TestPrintSummaries(t *testing.T) {
	tests := []struct {
		name       string
		rep        source.Report
		want, not  []string
		wantHeader bool
	}{
		{"removed and retired", source.Report{Sources: []upstream.SourceSummary{{Source: "free", Seen: 4, Removed: 1}}, Retired: 2},
			[]string{"free", "1 listed but removed by the operator", "retired: 2 (no source has listed them for refresh.retire-after)"}, nil, true},
		{"nothing out of the pool", source.Report{Sources: []upstream.SourceSummary{{Source: "free", New: 3}}},
			[]string{"free"}, []string{"removed", "retired"}, true},
		{"retiring failed", source.Report{RetireErr: "retiring upstreams no source lists: disk full"},
			[]string{"retired: error: retiring upstreams no source lists: disk full"}, []string{"SOURCE"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			printSummaries(&b, tt.rep)
			out := b.String()
			if strings.HasPrefix(out, "SOURCE") != tt.wantHeader {
				t.Errorf("header: %q", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}
}
