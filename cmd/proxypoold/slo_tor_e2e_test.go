package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/tornet"
	"github.com/proxypool/proxypool/internal/upstream"
)

// TestSLOTorScaleUpE2E proves issue 8's Tor step through the whole product:
// `proxypoold run` with tor.mode single and a US group whose floor is one
// healthy upstream starts one tor instance (the floor's budget) pinned to
// one of the private network's two US exits. (Grouped mode would spread
// both US /16s over that one instance, which then survives an exit's
// death by itself.) When that instance's exit dies, the
// group falls below its floor and the SLO guard, after re-checking it and
// sending NEWNYM, brings up another instance on the unused US exit; the
// group is back at its floor through it, within a bounded time.
func TestSLOTorScaleUpE2E(t *testing.T) {
	n := tornet.StartT(t) // skips unless PROXYPOOL_TORNET=1 and tor is installed
	judge := fleet.StartJudgeT(t)
	usExits := map[string]tornet.Exit{} // by fingerprint
	for _, e := range n.Exits() {
		if e.Country == "US" {
			usExits[strings.ToUpper(e.Fingerprint)] = e
		}
	}
	if len(usExits) != 2 {
		t.Fatalf("the private network has %d US exits, want 2", len(usExits))
	}

	w := writeTorWorld(t, n, judge, torWorld{mode: "single", groups: "us: {countries: [US], min-healthy: 1}", torGroups: "[us]",
		maxInstances: 4, probeEvery: "5s", probeTimeout: "10s", slo: "{min-healthy: 0, check-interval: 1s, min-action-interval: 2s}"})
	dir, torrcDir, cfgPath := w.dir, w.torrcDir, w.cfgPath

	d := startDaemon(t, dir, cfgPath)
	exited, started, logPath := d.exited, d.started, d.logPath
	var ports []int
	t.Cleanup(func() {
		for _, p := range ports {
			if pid := torPID(torrcDir, p); pid != 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	db := filepath.Join(dir, "proxypool.db")

	// 1. The floor's budget: one instance for the group, healthy.
	recs := waitTorHealthy(ctx, t, db, 1, exited)
	first := recs[0]
	ports = append(ports, first.Port)
	healthyAfter := time.Since(started)
	torrc, err := os.ReadFile(filepath.Join(torrcDir, fmt.Sprintf("torrc.%d", first.Port)))
	if err != nil {
		t.Fatal(err)
	}
	var victim tornet.Exit
	for fp, e := range usExits { // single: ExitNodes is the exit's $FINGERPRINT
		if strings.Contains(strings.ToUpper(string(torrc)), "$"+fp) {
			if victim.Name != "" {
				t.Fatalf("torrc.%d pins both US exits; want one each:\n%s", first.Port, torrc)
			}
			victim = e
		}
	}
	if victim.Name == "" {
		t.Fatalf("torrc.%d pins no US exit of the network:\n%s", first.Port, torrc)
	}
	t.Logf("group us runs %s (port %d) through %s after %v", first.Name, first.Port, victim.Name, healthyAfter.Round(100*time.Millisecond))

	// 2. Its exit dies.
	pid := n.RelayPIDs()[victim.Name]
	if pid == 0 {
		t.Fatalf("no pid for relay %s", victim.Name)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()

	// 3. Below the floor, then another instance on a new port, then back at
	// the floor through it.
	var below, added, back time.Duration
	var fresh upstream.Record
	var st *store.Store
	defer func() {
		if st != nil {
			st.Close()
		}
	}()
	last := ""
	for back == 0 {
		select {
		case err := <-exited:
			t.Fatalf("proxypoold run exited: %v", err)
		case <-ctx.Done():
			t.Fatalf("group us did not get a new healthy tor instance within %v of its exit dying; last: %s", time.Since(killed).Round(time.Second), last)
		case <-time.After(500 * time.Millisecond):
		}
		if st == nil {
			if st, err = store.OpenReadOnly(ctx, db); err != nil {
				t.Fatal(err)
			}
		}
		recs, err := st.List(ctx, store.Filter{Source: "tor"})
		if err != nil {
			last = err.Error()
			continue
		}
		var states []string
		for _, r := range recs {
			states = append(states, fmt.Sprintf("%s=%s(%s)", r.Name, r.State, r.LastError))
			switch {
			case r.Group != "us":
				t.Errorf("tor upstream %s of group %q; only us is a tor group", r.Name, r.Group)
			case r.Port == first.Port:
				if below == 0 && r.State != upstream.Healthy {
					below = time.Since(killed)
				}
			default:
				if added == 0 {
					added = time.Since(killed)
					fresh = r
					ports = append(ports, r.Port)
				}
				if r.State == upstream.Healthy && back == 0 {
					back = time.Since(killed)
					fresh = r
				}
			}
		}
		last = strings.Join(states, " ")
		if len(recs) > 2 {
			t.Fatalf("%d tor upstreams: %s; the network has 2 US exits", len(recs), last)
		}
	}
	if torPID(torrcDir, fresh.Port) == 0 {
		t.Errorf("no tor process runs torrc.%d", fresh.Port)
	}
	torrc2, _ := os.ReadFile(filepath.Join(torrcDir, fmt.Sprintf("torrc.%d", fresh.Port)))
	if strings.Contains(strings.ToUpper(string(torrc2)), "$"+strings.ToUpper(victim.Fingerprint)) {
		t.Errorf("the new instance is pinned to the dead exit %s", victim.Name)
	}
	if fresh.Country != "US" {
		t.Errorf("new instance %s exit country %q, want US", fresh.Name, fresh.Country)
	}
	logText, _ := os.ReadFile(logPath)
	for _, want := range []string{"group us is below its floor", "for the SLO floor"} {
		if !strings.Contains(string(logText), want) {
			t.Errorf("the log does not say %q", want)
		}
	}

	// 4. SIGTERM: clean exit, no tor child left.
	d.stop(t, 30*time.Second)
	for _, p := range ports {
		if pid := torPID(torrcDir, p); pid != 0 {
			t.Errorf("tor pid %d (port %d) still runs after proxypoold stopped", pid, p)
		}
	}
	t.Logf("figures: network bootstrap %v; first instance healthy %v after start; after its exit died: below floor %v, new instance %s (port %d) planned %v, healthy (floor met) %v",
		n.Bootstrap.Round(100*time.Millisecond), healthyAfter.Round(100*time.Millisecond), below.Round(100*time.Millisecond),
		fresh.Name, fresh.Port, added.Round(100*time.Millisecond), back.Round(100*time.Millisecond))
}
