// Package sockstest starts independent SOCKS5 servers for tests: servers
// nobody here wrote, so a test sees what a user's upstream would do.
package sockstest

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// Microsocks starts microsocks (Debian package microsocks) on ip:port,
// requiring user/pass when user is set, and returns its address. It is
// the SOCKS5 server of free lists that reads one message per read and
// drops the rest. Missing, the test is skipped, except in CI (CI=true)
// where it fails.
func Microsocks(t testing.TB, ip string, port int, user, pass string) string {
	t.Helper()
	bin, err := exec.LookPath("microsocks")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("microsocks not installed (apt-get install microsocks): %v", err)
		}
		t.Skipf("microsocks not installed (apt-get install microsocks): %v", err)
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	args := []string{"-i", ip, "-p", strconv.Itoa(port)}
	if user != "" {
		args = append(args, "-u", user, "-P", pass)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting microsocks: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(3 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("microsocks on %s did not listen within 3s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
