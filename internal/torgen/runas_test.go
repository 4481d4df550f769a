package torgen

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/torgen/exits"
	"github.com/proxypool/proxypool/internal/torgen/torrc"
)

// TestRunAsTorUser: proxypoold's process runner started as root runs tor
// as debian-tor (tor's User option): the real tor child ends up with that
// uid and owns its data dir. A data dir behind a directory the account
// cannot pass gives no User line, and a warning, instead of a tor that
// cannot start.
func TestRunAsTorUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("tor switches users only when started as root; proxypoold runs as root here only in the systemd-less `run`")
	}
	bin, err := exec.LookPath("tor")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("tor not installed (apt-get install -y tor): %v", err)
		}
		t.Skip("tor not installed")
	}
	tu, err := user.Lookup(DefaultTorUser)
	if err != nil {
		t.Fatalf("Debian's tor package makes %s: %v", DefaultTorUser, err)
	}
	open, err := os.MkdirTemp("", "runas-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(open) })
	if err := os.Chmod(open, 0o755); err != nil { // as /var/lib/proxypool (0750 proxypool) would not be
		t.Fatal(err)
	}
	closed := t.TempDir() // 0700 root
	base := freePortRange(t, 2)

	tests := []struct {
		name     string
		root     string
		wantUser bool
	}{
		{"reachable data dir", open, true},
		{"data dir behind a 0700 root directory", closed, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs strings.Builder
			log := logrus.New()
			log.SetOutput(&logs)
			torrcDir, dataDir := filepath.Join(tt.root, "etc"), filepath.Join(tt.root, "data")
			for _, d := range []string{torrcDir, dataDir} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cfg := Config{
				Groups: []exits.Group{{Name: "us", Countries: []string{"US"}}}, Mode: exits.ModeSingle,
				PortBase: base + i, PortMax: base + i, TorrcDir: torrcDir, DataDir: dataDir, RunAs: DefaultTorUser,
				Extra: []string{"DisableNetwork 1"}, Verify: torrc.FindVerifier(), Log: log,
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			rctx, stop := context.WithCancel(ctx)
			runner := NewProcessRunner(rctx, bin, torrcDir, log)
			defer func() { stop(); runner.Wait() }()
			p, err := Generate(ctx, cfg, exits.Static{relay("A", "US", "10.0.0.1")}, runner)
			if err != nil {
				t.Fatal(err)
			}
			port := p.Instances[0].Port
			b, _ := os.ReadFile(torrc.Path(torrcDir, port))
			if got := strings.Contains(string(b), "\nUser "+DefaultTorUser+"\n"); got != tt.wantUser {
				t.Fatalf("torrc.%d has a User line: %v, want %v:\n%s", port, got, tt.wantUser, b)
			}
			if !tt.wantUser {
				if !strings.Contains(logs.String(), "cannot reach") {
					t.Errorf("no warning saying why tor keeps root:\n%s", logs.String())
				}
				return
			}
			fi, err := os.Stat(filepath.Join(dataDir, strconv.Itoa(port)))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); strconv.Itoa(int(st.Uid)) != tu.Uid {
				t.Errorf("data dir owned by uid %d, want %s's %s", st.Uid, DefaultTorUser, tu.Uid)
			}
			// The running tor's effective uid, once it has switched.
			var uid string
			for ctx.Err() == nil && uid != tu.Uid {
				time.Sleep(100 * time.Millisecond)
				if pid := runner.PID(port); pid > 0 {
					status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
					for _, l := range strings.Split(string(status), "\n") {
						if f := strings.Fields(l); len(f) >= 3 && f[0] == "Uid:" {
							uid = f[2] // real, effective, saved, fs
						}
					}
				}
			}
			if uid != tu.Uid {
				t.Fatalf("tor on port %d runs as uid %q, want %s (%s); log:\n%s", port, uid, tu.Uid, DefaultTorUser, logs.String())
			}
			// ... and keeps running as it (a data dir it may not use makes
			// tor exit right after the switch).
			pid := runner.PID(port)
			time.Sleep(1500 * time.Millisecond)
			if again := runner.PID(port); again != pid || syscall.Kill(pid, 0) != nil {
				t.Errorf("tor pid %d did not survive the switch (now %d); log:\n%s", pid, again, logs.String())
			}
		})
	}
}
