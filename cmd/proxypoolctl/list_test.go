package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/upstream"
)

// TestListLastError: `list` shows why an upstream last failed as "cause:
// detail", one row per upstream whatever the detail holds, and `list
// --json` gives both fields.
func TestListLastError(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pool.db")
	st, err := store.Open(ctx, path, store.Options{FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		server string
		cause  upstream.Cause
		detail string
		row    string // what the LAST ERROR column shows
	}{
		{"127.73.0.1", upstream.CauseCertificate, "x509: certificate signed by unknown authority", "certificate: x509: certificate signed by unknown authority"},
		{"127.73.0.2", upstream.CauseRoutesLocally, "exit 127.73.0.2 is in our own network", "routes_locally: exit 127.73.0.2 is in our own network"},
		{"127.73.0.3", upstream.CauseRefused, "", "refused"},
		{"127.73.0.4", upstream.CauseOther, "judge answered\r\n\tgarbage", "other: judge answered   garbage"},
	}
	for _, tt := range tests {
		u := upstream.MustNew(map[string]any{"type": "socks5", "server": tt.server, "port": 1080})
		if _, err := st.Add(ctx, "local", u); err != nil {
			t.Fatal(err)
		}
		st.Submit(upstream.CheckResult{ID: u.ID, At: time.Now(), Cause: tt.cause, Detail: tt.detail})
	}
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st.Close()

	out := mustCtl(t, "--db", path, "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1+len(tests) || !strings.HasSuffix(strings.TrimSpace(lines[0]), "LAST ERROR") {
		t.Fatalf("list: want a header ending LAST ERROR and %d rows:\n%s", len(tests), out)
	}
	for _, tt := range tests {
		found := false
		for _, l := range lines[1:] {
			if strings.Contains(l, tt.server+":1080") {
				found = true
				if !strings.HasSuffix(l, tt.row) {
					t.Errorf("row of %s: %q, want it to end %q", tt.server, l, tt.row)
				}
			}
		}
		if !found {
			t.Errorf("no row for %s:\n%s", tt.server, out)
		}
	}

	for _, l := range strings.Split(strings.TrimSpace(mustCtl(t, "--db", path, "--json", "list")), "\n") {
		var r struct {
			Server    string `json:"server"`
			LastCause string `json:"last_cause"`
			LastError string `json:"last_error"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("list --json line %q: %v", l, err)
		}
		for _, tt := range tests {
			if r.Server == tt.server && (r.LastCause != tt.cause.String() || r.LastError != tt.detail) {
				t.Errorf("%s: last_cause %q last_error %q, want %q %q", tt.server, r.LastCause, r.LastError, tt.cause, tt.detail)
			}
		}
	}
}
