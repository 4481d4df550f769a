package store

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gatewayBinEnv names the proxypoold binary BenchmarkGatewayProcess100k
// runs (make bench-store builds it and sets it).
const gatewayBinEnv = "PROXYPOOL_GATEWAY_BIN"

// BenchmarkGatewayProcess100k is the 100k-upstream memory goal measured on
// the product itself: the real `proxypoold gateway` process (pool, dial
// package, event loops, metrics; no D-Bus here, so it follows the store by
// polling its version) serves a 100k-healthy store. It reports the time
// from exec to "gateway ready" (the pool loaded and every listener
// served), VmRSS then, and VmHWM, the peak, after three reloads forced by
// bumping the store's version (old and new snapshot coexist during each),
// and the RSS after them; each the worst of the iterations. Skipped
// unless PROXYPOOL_GATEWAY_BIN is set.
func BenchmarkGatewayProcess100k(b *testing.B) {
	bin := os.Getenv(gatewayBinEnv)
	if bin == "" {
		b.Skip("set " + gatewayBinEnv + " to a proxypoold binary (make bench-store does)")
	}
	path := healthyFixture(b, 100_000)
	ctx := context.Background()
	s, err := Open(ctx, path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	worst := map[string]float64{} // the GC's timing moves the peak: report the worst run
	for b.Loop() {
		for k, v := range gatewayProcess(b, bin, path, s) {
			worst[k] = max(worst[k], v)
		}
	}
	for _, k := range []string{"ready-ms", "rss-ready-MiB", "peak-rss-MiB", "rss-after-reloads-MiB", "reloads"} {
		b.ReportMetric(worst[k], k)
	}
}

func gatewayProcess(b *testing.B, bin, dbPath string, s *Store) map[string]float64 {
	dir := b.TempDir()
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	cfg := filepath.Join(dir, "proxypool.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("database: %s\nsources: []\ngateway:\n  listen: %s\nmetrics:\n  listen: %s\n  gateway-listen: %s\nlog: {level: debug}\n",
		dbPath, free(), free(), free())), 0o644)
	cmd := exec.Command(bin, "--config", cfg, "gateway")
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS=unix:path="+filepath.Join(dir, "no-bus"))
	out, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout = io.Discard
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var tail []string
	wait := func(what string, d time.Duration) {
		b.Helper()
		deadline := time.After(d)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					b.Fatalf("proxypoold gateway exited before %q:\n%s", what, strings.Join(tail, "\n"))
				}
				if tail = append(tail, l); len(tail) > 20 {
					tail = tail[1:]
				}
				if strings.Contains(l, what) {
					return
				}
			case <-deadline:
				b.Fatalf("no %q from proxypoold gateway within %s:\n%s", what, d, strings.Join(tail, "\n"))
			}
		}
	}
	wait("gateway ready", 60*time.Second)
	ready := time.Since(start)
	pid := strconv.Itoa(cmd.Process.Pid)
	m := map[string]float64{"ready-ms": float64(ready.Milliseconds()), "rss-ready-MiB": float64(pidStatusKiB(b, pid, "VmRSS")) / 1024}
	for range 3 {
		if _, err := s.wdb.Exec("UPDATE meta SET version = version + 1 WHERE id = 1"); err != nil {
			b.Fatal(err)
		}
		wait("pool loaded", 60*time.Second)
		m["reloads"]++
	}
	m["peak-rss-MiB"] = float64(pidStatusKiB(b, pid, "VmHWM")) / 1024
	m["rss-after-reloads-MiB"] = float64(pidStatusKiB(b, pid, "VmRSS")) / 1024
	cmd.Process.Signal(syscall.SIGTERM)
	return m
}
