package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/store"
)

// TestTargetsE2E runs the real `proxypoold run` over a fleet whose members
// a target site treats differently by their exit (the page, 403, a
// captcha wall, a hang): the checks find which pass; the gateway port of
// a group requiring the target and a "-target-" username leave only
// through passing members; a member the site starts blocking leaves
// both within a check; the metrics show the target's passing count.
func TestTargetsE2E(t *testing.T) {
	judge := fleet.StartJudgeT(t)
	treat := []string{"ok", "403", "ok", "captcha", "ok", "hang"}
	specs := make([]fleet.MemberSpec, len(treat))
	for i := range specs {
		specs[i] = fleet.MemberSpec{Kind: fleet.SOCKS5, Country: "US"}
	}
	f := fleet.StartT(t, fleet.Spec{Members: specs})

	// the site: answers by the exit a request comes from
	var mu sync.Mutex
	byExit := map[string]string{}
	for i, m := range f.Members() {
		byExit[m.ExitIP] = treat[i]
	}
	ln, err := net.Listen("tcp", "127.90.0.1:22023")
	if err != nil {
		t.Fatal(err)
	}
	hung := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, _, _ := net.SplitHostPort(r.RemoteAddr)
		mu.Lock()
		how := byExit[ip]
		mu.Unlock()
		switch how {
		case "ok":
			io.WriteString(w, "<html>listings</html>")
		case "403":
			http.Error(w, "forbidden", http.StatusForbidden)
		case "captcha":
			io.WriteString(w, "<html>solve this CAPTCHA</html>")
		case "hang":
			select {
			case <-r.Context().Done():
			case <-hung:
			}
		default:
			http.Error(w, "who are you", http.StatusTeapot)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { close(hung); srv.Close() })

	dir := t.TempDir()
	list, geo := f.WriteFilesT(t, dir)
	const gw, shopPort, met = "127.90.0.1:22020", "127.90.0.1:22021", "127.90.0.1:22022"
	// rest's first lines are indented: they go on with fleetConfig's probe section
	cfg := fleetConfig(dir, list, judge.URL, geo, fmt.Sprintf(`  targets:
    shop: {url: "http://127.90.0.1:22023/", not-body: "(?i)captcha", max-time: 1s, interval: 1s, ttl: 5s, concurrency: 8}
gateway:
  listen: %s
  ports:
    - {listen: "%s", group: shop}
metrics:
  listen: %s
  gateway-listen: ""
groups:
  shop: {require-targets: [shop]}
`, gw, shopPort, met))
	cfgPath := filepath.Join(dir, "proxypool.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, dir, cfgPath)

	passing := func(ctx context.Context) map[string]bool {
		st, err := store.OpenReadOnly(ctx, filepath.Join(dir, "pp.db"))
		if err != nil {
			return nil
		}
		defer st.Close()
		rs, err := st.TargetResults(ctx)
		if err != nil {
			return nil
		}
		out := map[string]bool{}
		for _, r := range rs {
			out[r.ID] = r.OK
		}
		return out
	}
	want := func(i int) bool { mu.Lock(); defer mu.Unlock(); return byExit[f.Member(i).ExitIP] == "ok" }
	// waitResults waits until the stored results are those the site gives.
	waitResults := func(what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for {
			got := passing(ctx)
			right := len(got) == len(treat)
			for i, m := range f.Members() {
				if ok, seen := got[m.Upstream.ID]; !seen || ok != want(i) {
					right = false
				}
			}
			if right {
				return
			}
			select {
			case err := <-d.exited:
				d.stopped = true
				t.Fatalf("proxypoold exited early: %v", err)
			case <-ctx.Done():
				t.Fatalf("%s: target results %v never matched the site's treatment %v", what, got, treat)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	// only checks that every request through proxy leaves through a
	// member the site serves; the pool reloads a moment after a result
	// changes, so the first tries may wait for it.
	only := func(what, proxy string) {
		t.Helper()
		used := map[string]int{}
		deadline := time.Now().Add(10 * time.Second)
		for n := 0; n < 24; {
			exit := get(t, proxy, judge.URL+"/ip")
			m := f.ByExitIP(exit)
			mu.Lock()
			how := byExit[exit]
			mu.Unlock()
			if m == nil || how != "ok" {
				if time.Now().Before(deadline) && n == 0 {
					time.Sleep(100 * time.Millisecond) // the reload is on its way
					continue
				}
				t.Fatalf("%s: a request left through %s (%s), which fails the target", what, exit, how)
			}
			used[exit]++
			n++
		}
		t.Logf("%s: exits %v", what, used)
	}

	waitResults("first pass")
	only("group port requiring shop", "socks5://"+shopPort)
	only("-target-shop username", "http://u-target-shop:x@"+gw)
	only("-target-shop username over socks5", "socks5h://u-target-shop-session-s1:x@"+gw)

	// The site starts blocking member 0: it leaves within a check.
	mu.Lock()
	byExit[f.Member(0).ExitIP] = "403"
	mu.Unlock()
	waitResults("member 0 blocked")
	only("group port after the block", "socks5://"+shopPort)
	only("-target-shop after the block", "http://u-target-shop:x@"+gw)

	if v := sum(scrape(t, met), "proxypool_checks_target_passing"); v != 2 {
		t.Errorf("proxypool_checks_target_passing = %v, want 2 (members 2 and 4)", v)
	}
	d.stop(t, 20*time.Second)
}
