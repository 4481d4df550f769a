// Package testtool holds what tests in several packages need from the host:
// an external program (tor, curl) that a test drives for real.
package testtool

import (
	"net"
	"os"
	"os/exec"
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

// ServeTCP listens on a free port of 127.0.0.1 until the test ends and
// serves each connection with h in its own goroutine, closing it after h
// returns. It returns the listener's address.
func ServeTCP(t testing.TB, h func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h(c)
			}()
		}
	}()
	return ln.Addr().String()
}
