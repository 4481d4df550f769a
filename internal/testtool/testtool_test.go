package testtool

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// recorder is a testing.TB that remembers how the test ended instead of
// ending the real one.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Skipf(f string, a ...any)  { r.skipped, r.msg = true, f }
func (r *recorder) Fatalf(f string, a ...any) { r.failed, r.msg = true, f }

func TestNeed(t *testing.T) {
	dir := t.TempDir()
	tool := filepath.Join(dir, "pp-testtool-probe")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	tests := []struct {
		name, prog, ci string
		wantPath       string
		skip, fail     bool
	}{
		{"found", "pp-testtool-probe", "", tool, false, false},
		{"missing skips", "pp-testtool-absent", "", "", true, false},
		{"missing fails in CI", "pp-testtool-absent", "true", "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			r := &recorder{TB: t}
			got := Need(r, tt.prog, "apt-get install it")
			if got != tt.wantPath || r.skipped != tt.skip || r.failed != tt.fail {
				t.Fatalf("Need = %q skipped=%v failed=%v, want %q %v %v", got, r.skipped, r.failed, tt.wantPath, tt.skip, tt.fail)
			}
			if (tt.skip || tt.fail) && !strings.Contains(r.msg, "not installed") {
				t.Errorf("message %q does not say the tool is missing", r.msg)
			}
		})
	}
	if _, err := exec.LookPath("pp-testtool-probe"); err != nil {
		t.Fatalf("fixture not on PATH: %v", err)
	}
}

func TestWithoutBus(t *testing.T) {
	tests := []struct {
		name    string
		in, out []string
	}{
		{"empty", nil, nil},
		{"drops the bus and runtime dir only",
			[]string{"PATH=/bin", "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/0/bus", "XDG_RUNTIME_DIR=/run/user/0", "HOME=/root"},
			[]string{"PATH=/bin", "HOME=/root"}},
		{"a look-alike name stays", []string{"DBUS_SESSION_BUS_ADDRESSX=1", "MY_XDG_RUNTIME_DIR=/x"},
			[]string{"DBUS_SESSION_BUS_ADDRESSX=1", "MY_XDG_RUNTIME_DIR=/x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := WithoutBus(tt.in); !slices.Equal(got, tt.out) {
				t.Fatalf("WithoutBus(%q) = %q, want %q", tt.in, got, tt.out)
			}
		})
	}
}
