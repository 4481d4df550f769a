package gateway_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/gateway"
)

// TestRequestBounds proves config keys of the gateway by what a client
// sees (on both engines): gateway.total-timeout ends a request whose tries
// would take longer, gateway.max-session-id and max-session-ttl refuse a
// username asking for more and keep one within them.
func TestRequestBounds(t *testing.T) {
	t.Run("total-timeout", func(t *testing.T) {
		// Every try of a blackholed upstream lasts its 300ms bound; four
		// tries would take 1.2s, so an answer within 900ms is the total.
		tests := []struct {
			name     string
			total    time.Duration
			min, max time.Duration
		}{
			{"450ms cuts four tries of 300ms short", 450 * time.Millisecond, 400 * time.Millisecond, 900 * time.Millisecond},
			{"5s lets all four tries run", 5 * time.Second, 1150 * time.Millisecond, 2500 * time.Millisecond},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				w := newWorld(t, worldOpts{spec: fleet.Uniform(4, fleet.SOCKS5, fleet.Blackhole),
					gw: gateway.Options{MaxTries: 4, TotalTimeout: tt.total, DialTimeout: 300 * time.Millisecond, MinDialTimeout: 300 * time.Millisecond}})
				start := time.Now()
				got, body := statusOf(t, w.addr, "GET "+w.judge+"/ HTTP/1.1\r\nHost: j\r\n\r\n")
				took := time.Since(start)
				if got < 500 {
					t.Fatalf("a pool of blackholes answered %d %q, want a 5xx", got, body)
				}
				if took < tt.min || took > tt.max {
					t.Errorf("answered %d after %v, want within [%v, %v]", got, took.Round(time.Millisecond), tt.min, tt.max)
				}
			})
		}
	})
	t.Run("usernames", func(t *testing.T) {
		w := newWorld(t, worldOpts{spec: fleet.Uniform(2, fleet.SOCKS5, fleet.Good),
			gw: gateway.Options{Usernames: gateway.UsernameLimits{SessionID: 8, TTL: time.Hour}}})
		tests := []struct {
			key, user string
			want      int
			limit     string // named by the 407
		}{
			{"max-session-id", "u-session-12345678", http.StatusOK, ""},
			{"max-session-id", "u-session-123456789", http.StatusProxyAuthRequired, "over the limit of 8"},
			{"max-session-ttl", "u-session-a-ttl-1h", http.StatusOK, ""},
			{"max-session-ttl", "u-session-a-ttl-61m", http.StatusProxyAuthRequired, "over the limit of 1h0m0s"},
		}
		for _, tt := range tests {
			auth := base64.StdEncoding.EncodeToString([]byte(tt.user + ":x"))
			got, body := statusOf(t, w.addr, "GET "+w.judge+"/ HTTP/1.1\r\nHost: j\r\nProxy-Authorization: Basic "+auth+"\r\n\r\n")
			if got != tt.want {
				t.Errorf("%s: %s: %d %q, want %d", tt.key, tt.user, got, body, tt.want)
			}
			if tt.limit != "" && !strings.Contains(body, tt.limit) {
				t.Errorf("%s: the 407 does not name the limit: %q", tt.key, body)
			}
		}
	})
}
