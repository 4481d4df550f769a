// Package testtool holds what tests in several packages need: an external
// program (tor, curl) that a test drives for real, and a loopback accept
// loop for the small servers tests stand up.
package testtool

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Need returns the path of the program name. Without it the test skips,
// saying how to install it (hint), except in CI (CI=true), where a missing
// tool is a failure: a skip there would hide that the test never ran.
func Need(t testing.TB, name, hint string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not installed (%s): %v", name, hint, err)
	} else {
		t.Skipf("%s not installed (%s)", name, hint)
	}
	return ""
}

// WithoutBus is env without DBUS_SESSION_BUS_ADDRESS and XDG_RUNTIME_DIR:
// the environment for a daemon under test that must stay off the caller's
// session bus, where two runs would fight over one bus name.
func WithoutBus(env []string) []string {
	var out []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "DBUS_SESSION_BUS_ADDRESS=") || strings.HasPrefix(kv, "XDG_RUNTIME_DIR=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}
