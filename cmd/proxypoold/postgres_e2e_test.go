package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/store/pgtest"
)

// TestMain stops the PostgreSQL cluster the tests started, if any.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestRunOnPostgres: `proxypoold run` with its database on PostgreSQL
// (PROXYPOOL_DATABASE_URL over the config's file) fills the pool from a
// fleet, serves through the gateway with no error and only through good
// members, and stops cleanly; the file the config names is never made.
func TestRunOnPostgres(t *testing.T) {
	dbURL := pgtest.Database(t)
	judge := fleet.StartJudgeT(t)
	// three good members of two kinds and one that refuses
	var spec fleet.Spec
	for i, k := range []fleet.Kind{fleet.SOCKS5, fleet.HTTP, fleet.SOCKS5, fleet.SOCKS5} {
		m := fleet.MemberSpec{Kind: k, Behavior: fleet.Good, Country: []string{"US", "DE", "NL", "US"}[i]}
		if i == 3 {
			m.Behavior = fleet.Refuse
		}
		spec.Members = append(spec.Members, m)
	}
	f := fleet.StartT(t, spec)
	dir := t.TempDir()
	ports := freePorts(t, 2)
	gw, met := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	cfgPath := f.WriteConfigT(t, dir, judge.URL, time.Second, fmt.Sprintf(`gateway:
  listen: %s
metrics:
  listen: %s
  gateway-listen: ""
log: {level: info, format: text}
`, gw, met))
	d := startDaemon(t, dir, cfgPath, "PROXYPOOL_DATABASE_URL="+dbURL)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for healthyCount(ctx, dbURL) != 3 {
		select {
		case err := <-d.exited:
			d.stopped = true
			t.Fatalf("proxypoold exited early: %v", err)
		case <-ctx.Done():
			t.Fatalf("the pool on PostgreSQL never reached 3 healthy upstreams (has %d)", healthyCount(context.Background(), dbURL))
		case <-time.After(200 * time.Millisecond):
		}
	}
	// the gateway serves from its snapshot, which follows the store
	for snapshotSize(met) != 3 {
		select {
		case <-ctx.Done():
			t.Fatalf("the gateway's snapshot never reached 3 upstreams (has %d)", snapshotSize(met))
		case <-time.After(50 * time.Millisecond):
		}
	}
	exits := map[string]int{}
	for i := range 9 {
		scheme := "socks5"
		if i%2 == 1 {
			scheme = "http"
		}
		exit := get(t, scheme+"://"+gw, judge.URL+"/ip") // fails the test on any error
		if m := f.ByExitIP(exit); m == nil || m.Behavior() != fleet.Good {
			t.Errorf("traffic left through %s, which is not a good fleet member", exit)
		}
		exits[exit]++
	}
	if len(exits) < 2 {
		t.Errorf("9 requests left through %d exits (%v), want rotation", len(exits), exits)
	}
	d.stop(t, 20*time.Second)
	if _, err := os.Stat(dir + "/pp.db"); err == nil {
		t.Errorf("the config's SQLite file was created although the database is on PostgreSQL")
	}
	ro, err := store.OpenReadOnly(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if c, err := ro.Counts(context.Background()); err != nil || c.Total != 4 || c.Healthy != 3 {
		t.Errorf("counts after the run: %+v %v; want 4 upstreams, 3 healthy", c, err)
	}
}

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
		var lines []byte
		for _, m := range f.Members()[:n] {
			lines = append(lines, m.URI()+"\n"...)
		}
		if err := os.WriteFile(list, lines, 0o644); err != nil {
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
