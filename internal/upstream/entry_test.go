package upstream

import (
	"reflect"
	"strings"
	"testing"
)

// TestEntry: an upstream as the gateway holds it dials with the options
// New made (a name only labels a bare one), holds no options when they
// say nothing beyond its fields, and options that cannot be stored are
// an error, not a panic.
func TestEntry(t *testing.T) {
	tests := []struct {
		name     string
		mapping  map[string]any
		wantJSON string // Entry.Options
	}{
		{"bare socks5", map[string]any{"type": "socks5", "server": "1.2.3.4", "port": 1080}, ""},
		{"a name is not held", map[string]any{"type": "http", "server": "1.2.3.4", "port": 8080, "name": "x"}, ""},
		{"credentials are", map[string]any{"type": "socks5", "server": "1.2.3.4", "port": 1080, "username": "u", "password": "p"},
			`{"password":"p","port":1080,"server":"1.2.3.4","type":"socks5","username":"u"}`},
		{"a share link's options", map[string]any{"type": "vmess", "server": "h.example", "port": 443, "uuid": "id",
			"ws-opts": map[string]any{"path": "/v"}},
			`{"port":443,"server":"h.example","type":"vmess","uuid":"id","ws-opts":{"path":"/v"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := MustNew(tt.mapping)
			e, err := u.Entry()
			if err != nil {
				t.Fatal(err)
			}
			if e.Options != tt.wantJSON {
				t.Errorf("Options = %q, want %q", e.Options, tt.wantJSON)
			}
			if e.ID != u.ID || e.Type != u.Type || e.Server != u.Server || e.Port != u.Port || e.Addr() != u.Addr() || e.String() != u.String() {
				t.Errorf("Entry %+v does not name %+v", e, u)
			}
			got, err := e.Decode()
			if err != nil {
				t.Fatal(err)
			}
			want := u.Options
			if tt.wantJSON == "" {
				want = map[string]any{"type": string(u.Type), "server": u.Server, "port": u.Port}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Decode() = %v, want %v", got, want)
			}
		})
	}

	bad := Upstream{ID: "x", Type: SOCKS5, Server: "1.2.3.4", Port: 1, Options: map[string]any{"type": "socks5", "f": func() {}}}
	if _, err := bad.Entry(); err == nil || !strings.Contains(err.Error(), "upstream x: encoding options") {
		t.Errorf("Entry of unencodable options: %v", err)
	}
	if _, err := (Entry{ID: "y", Options: `{"type":`}).Decode(); err == nil || !strings.Contains(err.Error(), "upstream y") {
		t.Errorf("Decode of truncated options: %v", err)
	}
}

// TestRecordServed: what a gateway's pool is built from carries the
// record's status fields it serves by.
func TestRecordServed(t *testing.T) {
	r := Record{Upstream: MustNew(map[string]any{"type": "socks5", "server": "1.2.3.4", "port": 1080}),
		Status:  Status{State: Healthy, ExitIP: "5.6.7.8", Country: "DE", LatencyMS: 12, Caps: CapConnect | CapPipeline, Score: 3},
		Sources: []string{"a"}}
	s, err := r.Served()
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != r.ID || s.Caps != r.Caps || s.ExitIP != "5.6.7.8" || s.Country != "DE" || s.LatencyMS != 12 || !reflect.DeepEqual(s.Sources, r.Sources) {
		t.Errorf("Served() = %+v from %+v", s, r)
	}
}
