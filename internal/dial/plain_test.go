package dial

import (
	"testing"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TestPlainSOCKS5: the event loop dials only SOCKS5 servers (socks5, tor)
// at an IP address that want neither TLS nor credentials, whether their
// Entry holds options or not.
func TestPlainSOCKS5(t *testing.T) {
	tests := []struct {
		name, want string // want: the address, "" for not plain
		mapping    map[string]any
	}{
		{"bare socks5", "127.75.0.1:29001", map[string]any{"type": "socks5", "server": "127.75.0.1", "port": 29001}},
		{"tor", "127.75.0.1:29002", map[string]any{"type": "tor", "server": "127.75.0.1", "port": 29002}},
		{"socks5 with options beyond its fields", "[::1]:29003", map[string]any{"type": "socks5", "server": "::1", "port": 29003, "udp": true}},
		{"socks5 with credentials", "", map[string]any{"type": "socks5", "server": "127.75.0.1", "port": 29004, "username": "u", "password": "p"}},
		{"tor with a username", "", map[string]any{"type": "tor", "server": "127.75.0.1", "port": 29005, "username": "iso"}},
		{"socks5 over TLS", "", map[string]any{"type": "socks5", "server": "127.75.0.1", "port": 29006, "tls": true}},
		{"socks5 at a name", "", map[string]any{"type": "socks5", "server": "proxy.example", "port": 29007}},
		{"http", "", map[string]any{"type": "http", "server": "127.75.0.1", "port": 29008}},
	}
	p := New(Options{})
	defer p.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := entry(t, upstream.MustNew(tt.mapping))
			for range 2 { // the second answer comes from the cached dialer
				got := ""
				if ap, ok := p.PlainSOCKS5(e); ok {
					got = ap.String()
				}
				if got != tt.want {
					t.Fatalf("PlainSOCKS5 = %q, want %q", got, tt.want)
				}
			}
		})
	}
}
