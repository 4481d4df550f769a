package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/reload"
	"github.com/proxypool/proxypool/internal/store"
)

// Fixed addresses of the target reload test (this part's block).
const (
	reloadTargetsMain = "127.84.0.1:20110"
	reloadTargetsPort = "127.84.0.1:20111"
	reloadTargetsSite = "127.84.0.1:20112"
)

// TestReloadTargetsE2E: a reload of `proxypoold run` that adds a target
// check (probe.targets) and makes a group require it (require-targets)
// takes effect without a restart: the new target is checked, the pinned
// port of that group then leaves only through the members passing it, and
// the reload names no key as needing a restart. The site passes members
// 0 and 1 on /a and members 2 and 3 on /b.
func TestReloadTargetsE2E(t *testing.T) {
	judge := fleet.StartJudgeT(t)
	specs := make([]fleet.MemberSpec, 4)
	for i := range specs {
		specs[i] = fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "US"}
	}
	f := fleet.StartT(t, fleet.Spec{Members: specs})
	passes := map[string]map[string]bool{"/a": {}, "/b": {}}
	exitOf := map[string]string{} // upstream ID → exit
	for i, m := range f.Members() {
		passes[[]string{"/a", "/b"}[i/2]][m.ExitIP] = true
		exitOf[m.Upstream.ID] = m.ExitIP
	}
	ln, err := net.Listen("tcp", reloadTargetsSite)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, _, _ := net.SplitHostPort(r.RemoteAddr)
		if !passes[r.URL.Path][ip] {
			http.Error(w, "blocked", http.StatusForbidden)
			return
		}
		io.WriteString(w, "<html>listings</html>")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	dir := t.TempDir()
	list, geo := f.WriteFilesT(t, dir)
	cfgPath := filepath.Join(dir, "proxypool.yaml")
	target := func(name, path string) string {
		return fmt.Sprintf("    %s: {url: \"http://%s%s\", max-time: 1s, interval: 1s, ttl: 5s}\n", name, reloadTargetsSite, path)
	}
	write := func(targets, require string) {
		cfg := fleetConfig(dir, list, judge.URL, geo, "  targets:\n"+targets+fmt.Sprintf(`gateway:
  listen: %s
  ports:
    - {listen: "%s", group: shop}
metrics: {enabled: false}
groups:
  shop: {require-targets: [%s]}
`, reloadTargetsMain, reloadTargetsPort, require))
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(target("a", "/a"), "a")
	d := startDaemon(t, dir, cfgPath)
	pid := d.cmd.Process.Pid
	db := filepath.Join(dir, "pp.db")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	waitFor(t, ctx, d, "4 healthy upstreams", func() bool { return healthyCount(ctx, db) == 4 })
	st, err := store.OpenReadOnly(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// checked is whether every member has a result for target matching
	// what the site does.
	checked := func(name, path string) func() bool {
		return func() bool {
			rs, err := st.TargetResults(ctx)
			if err != nil {
				return false
			}
			n := 0
			for _, r := range rs {
				if exit, ok := exitOf[r.ID]; ok && r.Target == name && r.OK == passes[path][exit] {
					n++
				}
			}
			return n == len(specs)
		}
	}
	// only is whether 12 requests through the shop port all leave
	// through members passing path.
	only := func(path string) func() bool {
		return func() bool {
			c := proxyClient("socks5://" + reloadTargetsPort)
			for range 12 {
				ip, err := exitVia(c, judge.URL+"/ip")
				if err != nil || !passes[path][ip] {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, ctx, d, "target a checked through every member", checked("a", "/a"))
	waitFor(t, ctx, d, "the shop port leaving through the members passing a", only("/a"))

	rs, err := st.Reloads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := reload.Of(rs, pid)
	write(target("a", "/a")+target("b", "/b"), "b")
	d.cmd.Process.Signal(syscall.SIGHUP)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	got, err := reload.Wait(wctx, st.Reloads, pid, before.Generation)
	wcancel()
	if err != nil {
		t.Fatalf("the reload adding target b: %v", err)
	}
	if len(got.Restart) > 0 {
		t.Errorf("the reload adding target b says %q need a restart", got.Restart)
	}
	start := time.Now()
	waitFor(t, ctx, d, "the reloaded target b checked through every member", checked("b", "/b"))
	waitFor(t, ctx, d, "the shop port leaving through the members passing b", only("/b"))
	t.Logf("target b checked and the shop port switched %s after the reload", time.Since(start).Round(time.Millisecond))
	d.stop(t, 20*time.Second)
}
