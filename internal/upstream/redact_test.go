package upstream

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRedact: every credential an upstream kind carries, at any depth, is
// replaced; what names the upstream (type, server, port, ID, cipher, sni)
// stays; the upstream given is not changed.
func TestRedact(t *testing.T) {
	tests := []struct {
		name    string
		m       map[string]any
		secrets []string // values that must not survive
		keep    []string // values that must
		uri     string   // URI after Redact, for plain kinds
	}{
		{"socks5", map[string]any{"type": "socks5", "server": "127.76.0.1", "port": 1080, "username": "alice", "password": "pw-socks"},
			[]string{"alice", "pw-socks"}, []string{"127.76.0.1"}, "socks5://REDACTED:REDACTED@127.76.0.1:1080"},
		{"http without credentials", map[string]any{"type": "http", "server": "127.76.0.1", "port": 3128},
			nil, []string{"127.76.0.1"}, "http://127.76.0.1:3128"},
		{"vless", map[string]any{"type": "vless", "server": "a.example.com", "port": 443, "uuid": "5ec2e7a1-0000-4000-8000-00000000a001",
			"servername": "sni.example.com", "reality-opts": map[string]any{"public-key": "pbk-public", "short-id": "ab"}},
			[]string{"5ec2e7a1-0000-4000-8000-00000000a001"}, []string{"sni.example.com", "pbk-public"}, ""},
		{"ss with a plugin password", map[string]any{"type": "ss", "server": "1.2.3.4", "port": 8388, "cipher": "aes-128-gcm", "password": "pw-ss",
			"plugin": "shadow-tls", "plugin-opts": map[string]any{"host": "cloud.example.com", "password": "pw-shadow-tls"}},
			[]string{"pw-ss", "pw-shadow-tls"}, []string{"aes-128-gcm", "cloud.example.com"}, ""},
		{"hysteria2", map[string]any{"type": "hysteria2", "server": "1.2.3.4", "port": 443, "password": "pw-hy2", "obfs": "salamander", "obfs-password": "pw-obfs"},
			[]string{"pw-hy2", "pw-obfs"}, []string{"salamander"}, ""},
		{"hysteria v1", map[string]any{"type": "hysteria", "server": "1.2.3.4", "port": 443, "auth-str": "pw-auth-str"},
			[]string{"pw-auth-str"}, nil, ""},
		{"tuic token", map[string]any{"type": "tuic", "server": "1.2.3.4", "port": 443, "token": "pw-token"}, []string{"pw-token"}, nil, ""},
		{"wireguard peers", map[string]any{"type": "wireguard", "server": "1.2.3.4", "port": 51820, "private-key": "key-private", "public-key": "key-public",
			"peers": []any{map[string]any{"server": "5.6.7.8", "public-key": "peer-public", "pre-shared-key": "key-psk"}}},
			[]string{"key-private", "key-psk"}, []string{"key-public", "peer-public", "5.6.7.8"}, ""},
		{"ssr", map[string]any{"type": "ssr", "server": "1.2.3.4", "port": 443, "cipher": "aes-256-cfb", "password": "pw-ssr",
			"protocol": "auth_aes128_md5", "protocol-param": "42:pw-param", "obfs": "plain"},
			[]string{"pw-ssr", "42:pw-param"}, []string{"auth_aes128_md5"}, ""},
		{"ws authorization header", map[string]any{"type": "vmess", "server": "1.2.3.4", "port": 443, "uuid": "5ec2e7a1-0000-4000-8000-00000000a002", "cipher": "auto",
			"ws-opts": map[string]any{"path": "/ws", "headers": map[string]any{"Host": "h.example.com", "Authorization": "Basic cHc="}}},
			[]string{"5ec2e7a1-0000-4000-8000-00000000a002", "Basic cHc="}, []string{"h.example.com", "/ws"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := MustNew(tc.m)
			before, _ := json.Marshal(u)
			r := u.Redact()
			got, _ := json.Marshal(r)
			if after, _ := json.Marshal(u); string(after) != string(before) {
				t.Fatalf("Redact changed its receiver:\n%s\n%s", before, after)
			}
			for _, s := range tc.secrets {
				if strings.Contains(string(got), s) {
					t.Errorf("%q survives: %s", s, got)
				}
			}
			if len(tc.secrets) > 0 && !strings.Contains(string(got), RedactedValue) {
				t.Errorf("no %s marker: %s", RedactedValue, got)
			}
			for _, s := range tc.keep {
				if !strings.Contains(string(got), s) {
					t.Errorf("%q lost: %s", s, got)
				}
			}
			if r.ID != u.ID || r.Server != u.Server || r.Port != u.Port || r.Type != u.Type {
				t.Errorf("identity changed: %+v → %+v", u, r)
			}
			if tc.uri != "" && r.URI() != tc.uri {
				t.Errorf("URI = %q, want %q", r.URI(), tc.uri)
			}
		})
	}
}
