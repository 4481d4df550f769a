package torctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/proxypool/proxypool/internal/testtool"
)

// startTor runs a real tor that never touches the network (DisableNetwork
// 1) with a control socket and cookie auth. The full path (bootstrap to
// 100 %, NEWNYM changing circuits, current exit) is proven on the private
// Tor network in internal/torgen.
func startTor(t *testing.T) string {
	t.Helper()
	tor := testtool.Need(t, "tor", "apt-get install -y tor")
	dir := t.TempDir()
	dd := filepath.Join(dir, "d")
	os.MkdirAll(dd, 0o700)
	sock := filepath.Join(dd, "control")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := fmt.Sprintf("DataDirectory %s\nSocksPort 127.0.0.1:%d\nControlSocket %s\nCookieAuthentication 1\nDisableNetwork 1\nGeoIPFile %s\n", dd, port, sock, filepath.Join(dir, "geoip"))
	os.WriteFile(filepath.Join(dir, "geoip"), []byte("16909056,16909311,DE\n"), 0o644) // 1.2.3.0/24
	os.WriteFile(filepath.Join(dir, "torrc"), []byte(conf), 0o644)
	cmd := exec.Command(tor, "-f", filepath.Join(dir, "torrc"), "--defaults-torrc", os.DevNull, "--hush")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dd, "control_auth_cookie")); err == nil {
			if _, err := os.Stat(sock); err == nil {
				return "unix:" + sock
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("tor did not open its control socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestControlAgainstRealTor(t *testing.T) {
	addr := startTor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	m, err := c.GetInfo(ctx, "version", "ip-to-country/1.2.3.4", "ip-to-country/5.6.7.8")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m["version"], "0.") || m["ip-to-country/1.2.3.4"] != "de" || m["ip-to-country/5.6.7.8"] != "??" {
		t.Errorf("getinfo = %q", m)
	}
	p, _, err := c.Bootstrap(ctx)
	if err != nil || p >= 100 {
		t.Errorf("bootstrap with the network disabled = %d, %v", p, err)
	}
	// WaitBootstrap gives up at the deadline and says where it was.
	short, cancel2 := context.WithTimeout(ctx, 600*time.Millisecond)
	err = c.WaitBootstrap(short)
	cancel2()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last at") {
		t.Errorf("WaitBootstrap = %v", err)
	}
	// The connection still works after a deadline hit.
	if err := c.NewNym(ctx); err != nil {
		t.Errorf("NEWNYM: %v", err)
	}
	if _, _, err := c.CurrentExit(ctx); !errors.Is(err, ErrNoCircuit) {
		t.Errorf("current exit with no circuits: %v", err)
	}
	if ss, err := c.Streams(ctx); err != nil || len(ss) != 0 {
		t.Errorf("streams = %v, %v", ss, err)
	}
	// A cancelled context cuts a call short instead of hanging.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, err := c.GetInfo(cctx, "version"); err == nil {
		t.Error("GetInfo with a cancelled context succeeded")
	}
}

func TestDialErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Dial(ctx, "unix:"+filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "dialing tor control") {
		t.Errorf("err = %v", err)
	}
	// Something that is not tor.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("HTTP/1.0 400 Bad\r\n\r\n"))
			c.Close()
		}
	}()
	if _, err := Dial(ctx, ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "authenticating") {
		t.Errorf("err = %v", err)
	}
}

func TestParseCircuitLine(t *testing.T) {
	if got := splitQuoted(`NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done here"`); len(got) != 5 || got[4] != `SUMMARY="Done here"` {
		t.Errorf("splitQuoted = %q", got)
	}
}

func TestNewNymEveryStopsWithContext(t *testing.T) {
	addr := startTor(t)
	// tor answers its control socket once it has started (seconds on a
	// loaded machine): the periods counted below begin after that.
	rctx, rcancel := context.WithTimeout(context.Background(), 15*time.Second)
	c, err := Dial(rctx, addr)
	rcancel()
	if err != nil {
		t.Fatalf("tor never answered its control socket: %v", err)
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	start := time.Now()
	NewNymEvery(ctx, addr, "", 200*time.Millisecond, log) // returns when ctx ends
	if d := time.Since(start); d < 600*time.Millisecond || d > 5*time.Second {
		t.Errorf("returned after %v", d)
	}
	// tor.newnym-period: one NEWNYM per period (200, 400, 600ms), each
	// accepted by the real tor.
	sent := 0
	for _, e := range hook.AllEntries() {
		if e.Message == "tor NEWNYM sent" {
			sent++
		}
	}
	if sent < 2 || sent > 3 {
		var msgs []string
		for _, e := range hook.AllEntries() {
			msgs = append(msgs, e.Message+" "+fmt.Sprint(e.Data))
		}
		t.Errorf("%d NEWNYMs accepted in 700ms at a 200ms period, want 2-3; log: %q", sent, msgs)
	}
}
