package torctl

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/testtool"
)

// TestPasswordAgainstRealTor: a tor whose ControlPort has both cookie
// authentication (as Debian's tor@ instance defaults set it) and a
// HashedControlPassword from HashPassword takes DialPassword with the right
// password (NEWNYM works) and refuses a wrong one with a clear error.
func TestPasswordAgainstRealTor(t *testing.T) {
	tor := testtool.Need(t, "tor", "apt-get install -y tor")
	dir := t.TempDir()
	dd := filepath.Join(dir, "d")
	os.MkdirAll(dd, 0o700)
	var ports [2]int
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	const pw = `s3cret "quoted" \ back`
	conf := fmt.Sprintf("DataDirectory %s\nSocksPort 127.0.0.1:%d\nControlPort 127.0.0.1:%d\nCookieAuthentication 1\nHashedControlPassword %s\nDisableNetwork 1\n",
		dd, ports[0], ports[1], HashPassword(pw))
	os.WriteFile(filepath.Join(dir, "torrc"), []byte(conf), 0o644)
	cmd := exec.Command(tor, "-f", filepath.Join(dir, "torrc"), "--defaults-torrc", os.DevNull, "--hush")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var c *Conn
	var err error
	for c == nil {
		if c, err = DialPassword(ctx, addr, pw); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("tor's control port never took the password: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer c.Close()
	if err := c.NewNym(ctx); err != nil {
		t.Errorf("NEWNYM after password authentication: %v", err)
	}
	_, err = DialPassword(ctx, addr, "wrong")
	if err == nil || !strings.Contains(err.Error(), "authenticating to tor control "+addr) {
		t.Errorf("wrong password: %v; want an authentication error naming the address", err)
	}
}

// TestHashPasswordShape: the hash is what tor's HashedControlPassword
// parses: "16:", 8 bytes of salt, the indicator 60, 20 bytes of digest; a
// fixed salt gives a fixed hash, and salts differ between calls.
func TestHashPasswordShape(t *testing.T) {
	h := HashPassword("x")
	if len(h) != 3+2*(8+1+20) || !strings.HasPrefix(h, "16:") || h[19:21] != "60" {
		t.Errorf("hash %q", h)
	}
	if HashPassword("x") == h {
		t.Error("two hashes of one password share a salt")
	}
	var salt [8]byte
	if hashPassword(salt, "x") != hashPassword(salt, "x") || hashPassword(salt, "x") == hashPassword(salt, "y") {
		t.Error("the digest does not depend on the password alone for a fixed salt")
	}
}
