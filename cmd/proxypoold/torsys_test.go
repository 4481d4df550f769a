package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/slo"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torgen/torrc"
)

// TestSystemdTorSteps proves the SLO guard's tor steps under systemd
// without systemd: torgen's systemd generation (what proxy-torgen.service
// runs) writes a torrc with a password control port and records the
// group's unused slots; a real tor started from that very torrc takes the
// probe's NEWNYM; ScaleUp waits while the instance is young, then raises
// the budget in the store and writes the request proxy-torgen.path watches;
// the next generation brings up a second instance without touching the
// first one's torrc.
func TestSystemdTorSteps(t *testing.T) {
	tor, err := exec.LookPath("tor")
	if err != nil {
		t.Skip("tor not installed (apt-get install -y tor)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	base := freeRange(t, 3)
	csv := "Router Name,Country Code,Bandwidth (KB/s),IP Address,ORPort,Flag - Exit,Flag - Running,Flag - Valid,Flag - Fast\n"
	for i, bw := range []int{400, 300, 200} { // three US /16s: three grouped slots
		csv += fmt.Sprintf("us%d,US,%d,%d.1.0.1,9001,1,1,1,1\n", i, bw, 20+i)
	}
	relays := filepath.Join(dir, "relays.csv")
	cfgPath := filepath.Join(dir, "proxypool.yaml")
	cfg := fmt.Sprintf(`database: %[1]s/pp.db
sources: []
groups:
  us: {countries: [US], min-healthy: 1}
tor:
  enabled: true
  relays: %[2]s
  relays-format: csv
  mode: grouped
  groups: [us]
  port-base: %[3]d
  port-max: %[4]d
  max-instances: 3
  torrc-dir: %[1]s/etc
log: {level: warn}
`, dir, relays, base, base+2)
	e, st := loadWith(ctx, t, cfgPath, map[string]string{relays: csv, cfgPath: cfg})
	run := &wantRunner{}
	gen := func() []int {
		t.Helper()
		plan, err := generateTor(ctx, e, st, run, true)
		if err != nil {
			t.Fatal(err)
		}
		return plan.Changed
	}

	// 1. The floor's budget: one instance, a control port with a password.
	gen()
	if w := run.wanted(); !slices.Equal(w, []int{base}) {
		t.Fatalf("first plan runs %v, want [%d] (the floor's budget)", w, base)
	}
	b, _ := os.ReadFile(torrc.Path(filepath.Join(dir, "etc"), base))
	if !strings.Contains(string(b), fmt.Sprintf("ControlPort 127.0.0.1:%d\nHashedControlPassword 16:", base+torControlPortOffset)) {
		t.Fatalf("torrc.%d has no password control port:\n%s", base, b)
	}
	if u, _ := readGroupInts(ctx, st, settingUnused); u["us"] != 2 {
		t.Errorf("unused slots recorded %v, want us: 2", u)
	}

	// 2. A real tor from that torrc (its data dir and no network added on
	// the command line, as Debian's defaults would) takes the probe's NEWNYM.
	dd := filepath.Join(dir, "data")
	os.MkdirAll(dd, 0o700)
	cmd := exec.Command(tor, "-f", torrc.Path(filepath.Join(dir, "etc"), base), "--defaults-torrc", os.DevNull,
		"--DataDirectory", dd, "--DisableNetwork", "1", "--hush")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { cmd.Process.Kill(); <-exited }()
	sys := newTorScaler(&daemonTor{e: e, st: st, systemd: true}, requestTorgen(e))
	for {
		n, err := sys.NewNym(ctx, "us")
		if n == 1 && err == nil {
			break
		}
		select {
		case werr := <-exited:
			exited <- werr // for the deferred wait
			t.Fatalf("tor from torrc.%d exited (%v) before it took NEWNYM (last try: %d, %v):\n%s", base, werr, n, err, out)
		case <-ctx.Done():
			t.Fatalf("NEWNYM through the generated control port: %d, %v\n%s", n, err, out)
		case <-time.After(100 * time.Millisecond):
		}
	}

	// 3. ScaleUp: not yet while the instance is young; then the budget and
	// the request for proxy-torgen.path.
	if n, err := sys.ScaleUp(ctx, "us"); n != 0 || !errors.Is(err, slo.ErrNotYet) {
		t.Fatalf("ScaleUp right after the instance appeared: %d, %v; want slo.ErrNotYet", n, err)
	}
	later := time.Now().Add(e.cfg.Tor.BootstrapGrace + time.Second)
	sys.now = func() time.Time { return later }
	if n, err := sys.ScaleUp(ctx, "us"); n != 1 || err != nil {
		t.Fatalf("ScaleUp past the grace: %d, %v; want 1", n, err)
	}
	if req, err := os.ReadFile(filepath.Join(dir, torgenRequest)); err != nil || !strings.Contains(string(req), " us") {
		t.Errorf("request for proxy-torgen.path: %q, %v", req, err)
	}
	if bud, _ := readGroupInts(ctx, st, settingBudget); bud["us"] != 2 {
		t.Errorf("budget %v, want us: 2", bud)
	}

	// 4. proxy-torgen's next run: a second instance; the first one's torrc
	// is not rewritten (no restart of a running tor).
	changed := gen()
	if w := run.wanted(); !slices.Equal(w, []int{base, base + 1}) {
		t.Errorf("after the scale-up torgen runs %v, want [%d %d]", w, base, base+1)
	}
	if slices.Contains(changed, base) {
		t.Errorf("torrc.%d rewritten by the scale-up (changed %v): its tor would restart", base, changed)
	}
	if u, _ := readGroupInts(ctx, st, settingUnused); u["us"] != 1 {
		t.Errorf("unused slots after the scale-up %v, want us: 1", u)
	}
	// A group at its max (one unused slot left but max-instances reached
	// in another run) or without unused slots adds nothing.
	writeGroupInts(ctx, st, settingUnused, map[string]int{"us": 0})
	if n, err := sys.ScaleUp(ctx, "us"); n != 0 || err != nil {
		t.Errorf("ScaleUp with no unused slot: %d, %v; want 0, nil", n, err)
	}
}

// loadWith writes files (path → content), loads the config at cfgPath and
// opens its store, closed at the end of the test.
func loadWith(ctx context.Context, t *testing.T, cfgPath string, files map[string]string) (*env, *store.Store) {
	t.Helper()
	for p, s := range files {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e, err := load(&globals{config: cfgPath})
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.openStore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return e, st
}
