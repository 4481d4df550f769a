package config

import (
	"strings"
	"testing"
	"time"
)

// TestAPIKeys: the control API listens on loopback by default, a listen
// other hosts can reach needs a secret (the gateway's open-proxy rule),
// a cors-origins entry must be an origin, and api.clash has its defaults
// (test-url "": cmd/proxypoold takes the first judge) and refuses what
// cannot work; each error names file:line: key.
func TestAPIKeys(t *testing.T) {
	tests := []struct {
		name, yaml string
		wantErr    string // substring; "" = valid
		wantListen string
		wantClash  *Clash // nil: the defaults
	}{
		{"default is loopback 9090", "", "", "127.0.0.1:9090", nil},
		{"off", "api: {listen: \"\"}", "", "", nil},
		{"loopback without secret", "api: {listen: \"127.0.0.2:9091\"}", "", "127.0.0.2:9091", nil},
		{"wildcard needs a secret", "api: {listen: \"0.0.0.0:9090\"}", "x.yaml:1: api.listen: 0.0.0.0:9090 is reachable from other hosts and api.secret is empty", "", nil},
		{"wildcard with a secret", "api: {listen: \"0.0.0.0:9090\", secret: s3}", "", "0.0.0.0:9090", nil},
		{"bad address", "api: {listen: \"nope\"}", "api.listen: \"nope\" is not host:port", "", nil},
		{"origin star", "api: {cors-origins: [\"*\"]}", "", "127.0.0.1:9090", nil},
		{"origin with a path", "api:\n  cors-origins: [http://a.example/ui]", "x.yaml:2: api.cors-origins[0]: \"http://a.example/ui\" is not an origin", "", nil},
		{"collides with metrics", "api: {listen: \"127.0.0.1:9464\"}", "api.listen: 127.0.0.1:9464 collides with metrics.listen", "", nil},
		{"unknown key", "api: {secrets: x}", "api.secrets", "", nil},
		{"clash set", "api: {clash: {group-limit: 7, pin-ttl: 7m, test-url: 'http://127.86.0.1:21002/'}}", "", "127.0.0.1:9090",
			&Clash{GroupLimit: 7, PinTTL: 7 * time.Minute, TestURL: "http://127.86.0.1:21002/"}},
		{"clash zero limit", "api:\n  clash: {group-limit: 0}", "x.yaml:2: api.clash.group-limit: 0: must be at least 1", "", nil},
		{"clash negative ttl", "api: {clash: {pin-ttl: -1m}}", "api.clash.pin-ttl: -1m0s: must be positive", "", nil},
		{"clash test-url not http", "api: {clash: {test-url: 'ftp://x'}}", "api.clash.test-url: \"ftp://x\" is not an http(s) URL", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "x.yaml")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want one containing %q", tt.yaml, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.yaml, err)
			}
			if c.API.Listen != tt.wantListen {
				t.Errorf("api.listen = %q, want %q", c.API.Listen, tt.wantListen)
			}
			want := Clash{GroupLimit: 200, PinTTL: time.Hour}
			if tt.wantClash != nil {
				want = *tt.wantClash
			}
			if c.API.Clash != want {
				t.Errorf("api.clash = %+v, want %+v", c.API.Clash, want)
			}
		})
	}
}
