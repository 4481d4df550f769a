package clashbackend_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestHostileRequests: what a broken or hostile client sends gets a JSON
// error with mihomo's status, never a panic or a hang.
func TestHostileRequests(t *testing.T) {
	w := newWorld(t, 3, "")
	name := w.fleet.Member(0).Upstream.ID
	tests := []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/proxies/" + name + "/delay?url=http://127.0.0.1/&timeout=abc", "", 400},
		{"GET", "/proxies/" + name + "/delay?url=http://127.0.0.1/&timeout=99999", "", 400}, // not 16-bit, as mihomo
		{"GET", "/proxies/" + name + "/delay?url=ftp://127.0.0.1/&timeout=100", "", 400},
		{"GET", "/proxies/" + name + "/delay?url=%zz&timeout=100", "", 400},
		{"GET", "/proxies/" + name + "/delay?url=http:///&timeout=100", "", 400},
		{"GET", "/group/us/delay?url=http://127.0.0.1/&timeout=-5", "", 400},
		{"PATCH", "/configs", "{not json", 400},
		{"PATCH", "/configs", `{"mode":"` + strings.Repeat("x", 2<<20) + `"}`, 400},
		{"PUT", "/proxies/us", `{"name":`, 400},
		{"PUT", "/proxies/us?ttl=forever", `{"name":"` + name + `"}`, 400},
		{"PUT", "/proxies/GLOBAL", `{"name":"us"}`, 400},
		{"GET", "/connections?interval=x", "", 400},
		{"GET", "/logs?level=verbose", "", 400},
		{"GET", "/no/such/path", "", 404},
		{"GET", "/proxies/%2e%2e%2fetc", "", 404},
		{"DELETE", "/connections/does-not-exist", "", 204},
		{"POST", "/proxies", "", 405},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path[:min(len(tt.path), 60)], func(t *testing.T) {
			req, err := http.NewRequest(tt.method, w.api.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status >= 400 && tt.status != 405 {
				var m map[string]string
				if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || m["message"] == "" {
					t.Fatalf("error answer is not {\"message\": …}: %v %v", m, err)
				}
			}
		})
	}
}
