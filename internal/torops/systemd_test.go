package torops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/slo"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torgen"
	"github.com/proxypool/proxypool/internal/torgen/torrc"
)

// needTor finds the tor binary; in CI a missing one fails the test.
func needTor(t *testing.T) string {
	t.Helper()
	tor, err := exec.LookPath("tor")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("tor not installed (apt-get install -y tor): %v", err)
		}
		t.Skip("tor not installed (apt-get install -y tor)")
	}
	return tor
}

// socksAndControlPorts finds k consecutive SOCKS ports whose control
// ports (+ControlPortOffset) are free too, all below the ephemeral range
// (32768 up) so no outgoing connection of a test running alongside takes
// one between this check and tor's bind.
func socksAndControlPorts(t *testing.T, k int) int {
	t.Helper()
	const lo, hi = 21000, 32768 - ControlPortOffset
	for base := lo + os.Getpid()%500; base+k <= hi; base += k {
		var held []net.Listener
		for p := base; p < base+k; p++ {
			for _, port := range []int{p, p + ControlPortOffset} {
				if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
					held = append(held, ln)
				}
			}
		}
		for _, ln := range held {
			ln.Close()
		}
		if len(held) == 2*k {
			return base
		}
	}
	t.Fatal("no free port range for the tor instances")
	return 0
}

// TestSystemdTorSteps proves the SLO guard's tor steps under systemd
// without systemd: torgen's systemd generation (what proxy-torgen.service
// runs) writes a torrc with a password control port and records the
// group's unused slots; a real tor started from that very torrc takes the
// probe's NEWNYM; ScaleUp waits while the instance is young, then raises
// the budget in the store and writes the request proxy-torgen.path watches;
// the next generation brings up a second instance without touching the
// first one's torrc.
func TestSystemdTorSteps(t *testing.T) {
	tor := needTor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	base := socksAndControlPorts(t, 10) // testTor's range: base..base+9
	var later time.Time                 // zero: the clock runs
	clock := func() time.Time {
		if later.IsZero() {
			return time.Now()
		}
		return later
	}
	// three US exits: three single slots within max-instances 3 (grouped
	// mode would hand the new instance ranges of the running one, a
	// reload of its torrc: TestGroupedOnRecordedConsensus)
	ops, st := testTor(t, dir, "single", 1, 3, base, true, clock)
	run := &torgen.DryRun{}
	gen := func() []int {
		t.Helper()
		plan, err := ops.Apply(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		return plan.Changed
	}
	unused := func() int {
		t.Helper()
		g, err := st.TorGroups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return g["us"].Unused
	}

	// 1. The floor's budget: one instance, a control port with a password.
	gen()
	w := run.Wanted()
	if len(w) != 1 || w[0] < base || w[0] > base+9 {
		t.Fatalf("first plan runs %v, want one instance in %d-%d (the floor's budget)", w, base, base+9)
	}
	p1 := w[0]
	b, _ := os.ReadFile(torrc.Path(filepath.Join(dir, "etc"), p1))
	if !strings.Contains(string(b), fmt.Sprintf("ControlPort 127.0.0.1:%d\nHashedControlPassword 16:", p1+ControlPortOffset)) {
		t.Fatalf("torrc.%d has no password control port:\n%s", p1, b)
	}
	if u := unused(); u != 2 {
		t.Errorf("unused slots recorded %d, want us: 2", u)
	}

	// 2. A real tor from that torrc (its data dir and no network added on
	// the command line, as Debian's defaults would) takes the probe's NEWNYM.
	dd := filepath.Join(dir, "data")
	os.MkdirAll(dd, 0o700)
	cmd := exec.Command(tor, "-f", torrc.Path(filepath.Join(dir, "etc"), p1), "--defaults-torrc", os.DevNull,
		"--DataDirectory", dd, "--DisableNetwork", "1", "--hush")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { cmd.Process.Kill(); <-exited }()
	request := filepath.Join(dir, RequestFile)
	sys := ops.RequestScaler(request)
	for {
		n, err := sys.NewNym(ctx, "us")
		if n == 1 && err == nil {
			break
		}
		select {
		case werr := <-exited:
			exited <- werr // for the deferred wait
			t.Fatalf("tor from torrc.%d exited (%v) before it took NEWNYM (last try: %d, %v):\n%s", p1, werr, n, err, out)
		case <-ctx.Done():
			t.Fatalf("NEWNYM through the generated control port: %d, %v\n%s", n, err, out)
		case <-time.After(100 * time.Millisecond):
		}
	}
	// Its traffic through the same control port; no tor@ unit's cgroup
	// exists here, so no resources are claimed for it.
	usage, err := ops.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(usage) != 1 || usage[0].Port != p1 || usage[0].Group != "us" || !usage[0].Traffic || usage[0].Resources {
		t.Errorf("usage %+v, want port %d of us with traffic read and no resources", usage, p1)
	}
	// The operator's NEWNYM reaches the same instance, and names a port
	// that has none.
	if err := ops.Newnym(ctx, p1); err != nil {
		t.Errorf("proxypoolctl tor newnym %d: %v", p1, err)
	}
	other := base + (p1-base+1)%10
	if err := ops.Newnym(ctx, other); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("no tor instance on port %d", other)) {
		t.Errorf("proxypoolctl tor newnym on a port without an instance: %v", err)
	}

	// 3. ScaleUp: not yet while the instance is young; then the budget and
	// the request for proxy-torgen.path.
	if n, err := sys.ScaleUp(ctx, "us"); n != 0 || !errors.Is(err, slo.ErrNotYet) {
		t.Fatalf("ScaleUp right after the instance appeared: %d, %v; want slo.ErrNotYet", n, err)
	}
	later = time.Now().Add(time.Minute + time.Second)
	if n, err := sys.ScaleUp(ctx, "us"); n != 1 || err != nil {
		t.Fatalf("ScaleUp past the grace: %d, %v; want 1", n, err)
	}
	if req, err := os.ReadFile(request); err != nil || !strings.Contains(string(req), " us") {
		t.Errorf("request for proxy-torgen.path: %q, %v", req, err)
	}
	if g, _ := st.TorGroups(ctx); g["us"].Budget != 2 {
		t.Errorf("budget %+v, want us: 2", g)
	}

	// 4. proxy-torgen's next run: a second instance; the first one's torrc
	// is not rewritten (no restart of a running tor).
	changed := gen()
	if w := run.Wanted(); len(w) != 2 || !slices.Contains(w, p1) {
		t.Errorf("after the scale-up torgen runs %v, want two instances, %d among them", w, p1)
	}
	if slices.Contains(changed, p1) {
		t.Errorf("torrc.%d rewritten by the scale-up (changed %v): its tor would restart", p1, changed)
	}
	if u := unused(); u != 1 {
		t.Errorf("unused slots after the scale-up %d, want us: 1", u)
	}
	// A group without unused slots adds nothing.
	if err := st.SetTorUnused(ctx, map[string]int{"us": 0}); err != nil {
		t.Fatal(err)
	}
	if n, err := sys.ScaleUp(ctx, "us"); n != 0 || err != nil {
		t.Errorf("ScaleUp with no unused slot: %d, %v; want 0, nil", n, err)
	}
	if recs, err := st.List(ctx, store.Filter{Source: SourceName}); err != nil || len(recs) != 2 {
		t.Errorf("tor upstreams in the store: %d, %v; want 2", len(recs), err)
	}
}
