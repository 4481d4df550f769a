package clashapi

import (
	"encoding/json"
	"testing"
	"time"
)

// TestAppendUpstreamMatches: the list's hand-written encoding is byte for
// byte what encoding/json makes of the same proxy elsewhere (GET
// /proxies/{name}), for the strings hostile sources put in names.
func TestAppendUpstreamMatches(t *testing.T) {
	at := time.Date(2026, 12, 7, 13, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name    string
		p       Proxy
		testURL string
	}{
		{"bare", Proxy{Name: "0123abcd", Type: "socks5"}, ""},
		{"full", Proxy{Name: "id1", Type: "vmess", Title: "🇺🇸 US «fast»", Server: "example.com", Port: 443, UDP: true,
			State: "healthy", Alive: true, ExitIP: "198.51.100.7", Country: "US", LatencyMS: 123.456,
			Sources: []string{"a", "b<c>&d"}, History: []Delay{{Time: at, Delay: 12}, {Time: at.Add(time.Second), Delay: 0}}},
			"http://127.0.0.1:1/generate_204"},
		{"hostile strings", Proxy{Name: "q\"\\\n\t\x00\u2028", Type: "Weird", Title: "\xff\xfe bad utf-8", Server: "</script>",
			LatencyMS: 1e-7}, "http://x/?a=<b>&c"},
		{"tiny and huge latency", Proxy{Name: "n", Type: "http", LatencyMS: 0.000001}, ""},
		{"huge latency", Proxy{Name: "n", Type: "http", LatencyMS: 1e22}, ""},
		{"no type", Proxy{Name: "n"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &handler{o: Options{TestURL: tt.testURL}}
			want, err := json.Marshal(h.upstreamJSON(&tt.p, "src"))
			if err != nil {
				t.Fatal(err)
			}
			got := h.appendUpstream(nil, &tt.p, "src")
			if string(got) != string(want) {
				t.Fatalf("appendUpstream:\n got %s\nwant %s", got, want)
			}
		})
	}
}
