package upstream

import "testing"

func TestIdentity(t *testing.T) {
	tests := []struct {
		name string
		a, b map[string]any
		same bool
	}{
		{"name does not count",
			map[string]any{"type": "vless", "server": "a.example", "port": 443, "uuid": "u", "name": "one"},
			map[string]any{"type": "vless", "server": "a.example", "port": "443", "uuid": "u", "name": "two"}, true},
		{"empty option equals missing",
			map[string]any{"type": "vless", "server": "a.example", "port": 443, "uuid": "u", "flow": ""},
			map[string]any{"type": "vless", "server": "A.EXAMPLE.", "port": 443.0, "uuid": "u"}, true},
		{"zero-padded IPv4",
			map[string]any{"type": "socks5", "server": "001.002.003.004", "port": 1080},
			map[string]any{"type": "socks5", "server": "1.2.3.4", "port": 1080}, true},
		{"credentials count",
			map[string]any{"type": "socks5", "server": "1.2.3.4", "port": 1080, "username": "a"},
			map[string]any{"type": "socks5", "server": "1.2.3.4", "port": 1080, "username": "b"}, false},
		{"transport options count",
			map[string]any{"type": "vmess", "server": "h", "port": 1, "uuid": "u", "ws-opts": map[string]any{"path": "/a"}},
			map[string]any{"type": "vmess", "server": "h", "port": 1, "uuid": "u", "ws-opts": map[string]any{"path": "/b"}}, false},
		{"type counts",
			map[string]any{"type": "socks5", "server": "1.2.3.4", "port": 1080},
			map[string]any{"type": "http", "server": "1.2.3.4", "port": 1080}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := MustNew(tt.a), MustNew(tt.b)
			if (a.ID == b.ID) != tt.same {
				t.Fatalf("ids %s vs %s, want same=%v", a.ID, b.ID, tt.same)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	for _, m := range []map[string]any{
		{"server": "h", "port": 1},
		{"type": "socks5", "port": 1},
		{"type": "socks5", "server": "h", "port": 0},
		{"type": "socks5", "server": "h", "port": 70000},
		{"type": "socks5", "server": "h", "port": "x"},
	} {
		if _, err := New(m); err == nil {
			t.Errorf("New(%v) = nil error", m)
		}
	}
}

func TestURI(t *testing.T) {
	u := MustNew(map[string]any{"type": "http", "server": "::1", "port": 8080, "tls": true, "username": "u", "password": "p"})
	if got, want := u.URI(), "https://u:p@[::1]:8080"; got != want {
		t.Fatalf("URI = %q, want %q", got, want)
	}
	v := MustNew(map[string]any{"type": "vmess", "server": "h", "port": 1})
	if v.URI() != "" {
		t.Fatalf("vmess URI should be empty")
	}
}

func TestCapsText(t *testing.T) {
	for _, tc := range []struct {
		c    Caps
		text string
	}{{0, ""}, {CapConnect, "connect"}, {CapConnect | CapPipeline, "connect,pipeline"}, {CapConnect | CapForward | CapPipeline, "connect,forward,pipeline"}} {
		b, err := tc.c.MarshalText()
		if err != nil || string(b) != tc.text {
			t.Errorf("%d: MarshalText = %q, %v; want %q", tc.c, b, err, tc.text)
		}
		var back Caps
		if err := back.UnmarshalText(b); err != nil || back != tc.c {
			t.Errorf("%q: UnmarshalText = %d, %v; want %d", b, back, err, tc.c)
		}
	}
	var c Caps
	if err := c.UnmarshalText([]byte("connect,teleport")); err == nil {
		t.Error("UnmarshalText accepted an unknown capability")
	}
}
