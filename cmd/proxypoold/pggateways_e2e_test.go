package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/store/pgtest"
)

// TestGatewaysFollowPostgres: a probe process and two gateway processes
// share one PostgreSQL and no D-Bus. An upstream a refresh adds reaches
// both gateways' snapshots soon after the probe finds it healthy; one
// killed is ejected by the gateway that meets it, whose passive result
// reaches the database, and the other gateway drops it too, by NOTIFY
// (the version poll is 10 s, the bound 3 s). Both gateways serve with no
// error and map each session key to the same upstream.
func TestGatewaysFollowPostgres(t *testing.T) {
	dbURL := pgtest.Database(t)
	judge := fleet.StartJudgeT(t)
	f := fleet.StartT(t, fleet.Uniform(4, fleet.SOCKS5, fleet.Good))
	dir := t.TempDir()
	list, geo := f.WriteFilesT(t, dir)
	writeList := func(n int) {
		t.Helper()
		var b strings.Builder
		for _, m := range f.Members()[:n] {
			b.WriteString(m.URI() + "\n")
		}
		if err := os.WriteFile(list, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeList(3) // the fourth comes later
	ports := freePorts(t, 5)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	gws := []struct{ listen, metrics string }{{addr(0), addr(1)}, {addr(2), addr(3)}}
	var cfgs []string
	for i, gw := range gws {
		// eject-after 1: the first failure through an upstream ejects it
		// and tells the store
		cfg := fleetConfig(dir, list, judge.URL, geo, fmt.Sprintf(`gateway: {listen: %s, eject-after: 1}
metrics: {listen: %s, gateway-listen: %s}
api: {listen: ""}
`, gw.listen, addr(4), gw.metrics))
		path := filepath.Join(dir, fmt.Sprintf("gw%d.yaml", i))
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		cfgs = append(cfgs, path)
	}
	env := append(noBusEnv(dir), "PROXYPOOL_DATABASE_URL="+dbURL)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	refresh := func() {
		t.Helper()
		p := startProc(t, filepath.Join(dir, "refresh.log"), []string{"--config", cfgs[0], "refresh", "--force"}, env...)
		select {
		case err := <-p.exited:
			p.stopped = true
			if err != nil {
				t.Fatalf("proxypoold refresh: %v\n%s", err, tail(p.logPath, 20))
			}
		case <-ctx.Done():
			t.Fatal("proxypoold refresh did not finish")
		}
	}
	refresh()
	procs := []*daemonProc{startProc(t, filepath.Join(dir, "probe.log"), []string{"--config", cfgs[0], "probe"}, env...)}
	for i, c := range cfgs {
		procs = append(procs, startProc(t, filepath.Join(dir, fmt.Sprintf("gateway%d.log", i)), []string{"--config", c, "gateway"}, env...))
	}
	ro, err := store.OpenReadOnly(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()

	// waitFor polls until the store holds want healthy upstreams and each
	// gateway's snapshot as many, and returns how long each gateway took
	// after the store.
	waitFor := func(what string, want int, within time.Duration) []time.Duration {
		t.Helper()
		deadline := time.Now().Add(within)
		var inStore time.Time
		lag := make([]time.Duration, len(gws))
		seen := make([]bool, len(gws))
		for {
			for _, p := range procs {
				select {
				case err := <-p.exited:
					p.stopped = true
					t.Fatalf("%s: %s exited: %v", what, filepath.Base(p.logPath), err)
				default:
				}
			}
			if inStore.IsZero() {
				if recs, err := ro.Healthy(ctx); err == nil && len(recs) == want {
					inStore = time.Now()
				}
			}
			done := !inStore.IsZero()
			for i, gw := range gws {
				if !seen[i] && snapshotSize(gw.metrics) == want && !inStore.IsZero() {
					seen[i], lag[i] = true, time.Since(inStore)
				}
				done = done && seen[i]
			}
			if done {
				return lag
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: after %s the store has it at %v, the gateways %v (want %d healthy)", what, within, inStore, seen, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the first refresh", 3, 30*time.Second)

	writeList(4)
	refresh()
	lag := waitFor("an added upstream", 4, 15*time.Second)
	t.Logf("added upstream: in both gateways' snapshots %v after the store", lag)
	for i, l := range lag {
		if l > 3*time.Second {
			t.Errorf("gateway %d saw the added upstream %s after the store, want < 3s (NOTIFY, not the 10s poll)", i, l)
		}
	}

	// Sticky sessions: each key leaves through one exit on both gateways.
	exits := map[string]bool{}
	for k := range 8 {
		var got []string
		for _, gw := range gws {
			got = append(got, get(t, fmt.Sprintf("socks5h://u-session-key%d:x@%s", k, gw.listen), judge.URL+"/ip"))
		}
		if got[0] != got[1] {
			t.Errorf("session key%d: gateway 0 sent it through %s, gateway 1 through %s", k, got[0], got[1])
		}
		exits[got[0]] = true
	}
	if len(exits) < 2 {
		t.Errorf("8 session keys all left through %v: want them spread over the pool", exits)
	}

	// Kill one upstream: gateway 0 meets it, ejects it and writes the
	// failure back; gateway 1 drops it by the store's notification.
	dead := f.Member(3)
	if err := dead.SetBehavior(fleet.Refuse); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		if exit := get(t, "socks5h://"+gws[0].listen, judge.URL+"/ip"); exit == dead.ExitIP {
			t.Errorf("a request left through the killed upstream %s", exit)
		}
	}
	lag = waitFor("a killed upstream", 3, 15*time.Second)
	t.Logf("killed upstream: out of both gateways' snapshots %v after the store", lag)
	if lag[1] > 3*time.Second {
		t.Errorf("gateway 1 dropped the killed upstream %s after the store, want < 3s", lag[1])
	}
	hist, err := ro.History(ctx, deadID(t, ctx, ro, dead), 10)
	if err != nil {
		t.Fatal(err)
	}
	passive := 0
	for _, h := range hist {
		if h.Passive && !h.OK {
			passive++
		}
	}
	if passive == 0 {
		t.Errorf("the killed upstream's history on PostgreSQL has no passive failure from the gateway: %+v", hist)
	}
	for _, p := range procs {
		p.stop(t, 20*time.Second)
	}
}

// deadID is the store's id of fleet member m.
func deadID(t *testing.T, ctx context.Context, st *store.Store, m *fleet.Member) string {
	t.Helper()
	recs, err := st.List(ctx, store.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if fmt.Sprintf("%s:%d", r.Server, r.Port) == m.Addr {
			return r.ID
		}
	}
	t.Fatalf("member %s is not in the store", m.Addr)
	return ""
}

// snapshotSize is a gateway's snapshot size from its metrics endpoint, -1
// while it does not answer.
func snapshotSize(addr string) int {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || !strings.Contains(string(b), "proxypool_gateway_snapshot_upstreams") {
		return -1
	}
	return int(sum(string(b), "proxypool_gateway_snapshot_upstreams"))
}
