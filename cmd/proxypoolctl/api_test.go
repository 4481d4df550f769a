package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAPIURL(t *testing.T) {
	for _, tt := range []struct{ listen, want string }{
		{"127.0.0.1:9090", "http://127.0.0.1:9090"},
		{"0.0.0.0:9090", "http://127.0.0.1:9090"},
		{":9090", "http://127.0.0.1:9090"},
		{"[::]:9090", "http://[::1]:9090"},
		{"[::1]:9091", "http://[::1]:9091"},
		{"localhost:9090", "http://localhost:9090"},
	} {
		if got := apiURL(tt.listen); got != tt.want {
			t.Errorf("apiURL(%q) = %q, want %q", tt.listen, got, tt.want)
		}
	}
}

// TestNoDaemonAnywhere: no daemon on the bus and none behind the config's
// api.listen is exit 3 with both reasons; a config without an API keeps
// the bus's words alone.
func TestNoDaemonAnywhere(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+filepath.Join(dir, "nobus"))
	for _, tt := range []struct {
		name, api string
		want      []string
		notWant   string
	}{
		{"api configured", `"127.86.0.1:21498"`, []string{"system bus", "nor does its HTTP API answer at http://127.86.0.1:21498"}, ""},
		{"api off", `""`, []string{"system bus"}, "HTTP API"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(dir, tt.name+".yaml")
			if err := os.WriteFile(cfg, []byte("database: "+filepath.Join(dir, "pp.db")+"\napi: {listen: "+tt.api+"}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, errOut := ctl(t, "", "--config", cfg, "add", "socks5://127.0.0.1:1")
			if code != exitNotRunning {
				t.Errorf("exit %d, want %d: %s", code, exitNotRunning, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q, want %q", errOut, w)
				}
			}
			if tt.notWant != "" && strings.Contains(errOut, tt.notWant) {
				t.Errorf("stderr %q mentions %q", errOut, tt.notWant)
			}
		})
	}
}
