package main

import (
	"context"
	"fmt"
	"os"
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
