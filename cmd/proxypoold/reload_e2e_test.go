package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/manager"
	"github.com/proxypool/proxypool/internal/reload"
	"github.com/proxypool/proxypool/internal/store"
)

// Fixed addresses of the reload test, in this part's reserved loopback
// block: the mixed port and the pinned port reloads add and remove.
const (
	reloadMain   = "127.84.0.1:20100"
	reloadPinned = "127.84.0.1:20101"
)

// TestReloadE2E is issue 5/9's acceptance for `proxypoold run`: 64 clients
// loop through the gateway while the config is reloaded 10 times
// (strategy round-robin ⇄ sticky, a pinned port added and removed, a
// source added), with 0 failed requests and each change seen within 2 s;
// then a broken config: the daemon keeps serving, its log and the status
// name file:line:key, and `proxypoold reload` exits non-zero.
func TestReloadE2E(t *testing.T) {
	judge := fleet.StartJudgeT(t)
	f := fleet.StartT(t, fleet.Spec{Members: []fleet.MemberSpec{
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "US"},
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "US"},
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "DE"},
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "DE"},
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "NL"}, // the source a reload adds
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "NL"},
	}})
	dir := t.TempDir()
	_, geo := f.WriteFilesT(t, dir)
	first, extra := filepath.Join(dir, "first.txt"), filepath.Join(dir, "extra.txt")
	writeMembers(t, first, f.Members()[:4])
	writeMembers(t, extra, f.Members()[4:])
	db := filepath.Join(dir, "pp.db")
	cfgPath := filepath.Join(dir, "proxypool.yaml")
	type variant struct {
		strategy      string
		pinned, extra bool
	}
	write := func(v variant, broken bool) {
		var b strings.Builder
		fmt.Fprintf(&b, "database: %s\nsources:\n  - {name: fleet, url: \"file://%s\"}\n", db, first)
		if v.extra {
			fmt.Fprintf(&b, "  - {name: extra, url: \"file://%s\"}\n", extra)
		}
		fmt.Fprintf(&b, "probe:\n  judges: [%s/get]\n  timeout: 1s\n  interval: 1m\n  failing-interval: 2s\n  geoip: %s\n  geoip6: \"\"\n", judge.URL, geo)
		fmt.Fprintf(&b, "gateway:\n  listen: %s\n  strategy: %s\n", reloadMain, v.strategy)
		if broken {
			b.WriteString("  strategyy: sticky\n") // line 12 or 13: a typo
		}
		if v.pinned {
			fmt.Fprintf(&b, "  ports:\n    - {listen: \"%s\", group: us}\n", reloadPinned)
		}
		b.WriteString("metrics: {enabled: false}\ngroups:\n  us: {countries: [US]}\nlog: {level: info, format: text}\n")
		if err := os.WriteFile(cfgPath, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(variant{strategy: "round-robin"}, false)
	d := startDaemon(t, dir, cfgPath)
	pid := d.cmd.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	waitFor(t, ctx, d, "4 healthy upstreams", func() bool { return healthyCount(ctx, db) == 4 })

	// 64 clients, half SOCKS5 and half HTTP, until the reloads are done.
	var ok, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 64 {
		scheme := []string{"socks5", "http"}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := proxyClient(scheme + "://" + reloadMain)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := exitVia(c, judge.URL+"/ip"); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	endClients := func() {
		close(stop)
		wg.Wait()
	}
	defer func() {
		select {
		case <-stop:
		default:
			endClients()
		}
	}()

	st, err := store.OpenReadOnly(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	checker := proxyClient("socks5://" + reloadMain)
	var slowest time.Duration
	for i := range 10 {
		v := variant{strategy: []string{"sticky", "round-robin"}[i%2], pinned: i%2 == 0, extra: i >= 4}
		write(v, false)
		rs, err := st.Reloads(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before, _ := reload.Of(rs, pid)
		start := time.Now()
		if i%2 == 0 { // half through `proxypoold reload`, half a bare SIGHUP
			var out, errOut bytes.Buffer
			if code := mainArgs([]string{"--config", cfgPath, "reload", "--pid", strconv.Itoa(pid)}, &out, &errOut); code != 0 {
				t.Fatalf("reload %d: proxypoold reload exited %d: %s", i, code, errOut.String())
			}
		} else {
			d.cmd.Process.Signal(syscall.SIGHUP)
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := reload.Wait(wctx, st.Reloads, pid, before.Generation)
			wcancel()
			if err != nil {
				t.Fatalf("reload %d: %v", i, err)
			}
		}
		acked := time.Since(start)
		var took []string
		seen := func(what string, cond func() bool) {
			t.Helper()
			for !cond() {
				if time.Since(start) > 2*time.Second {
					t.Fatalf("reload %d (%+v): %s not seen within 2s (acknowledged after %s; %s)", i, v, what, acked, strings.Join(took, ", "))
				}
				time.Sleep(20 * time.Millisecond)
			}
			took = append(took, fmt.Sprintf("%s at %s", what, time.Since(start).Round(time.Millisecond)))
		}
		// sticky: every request of one client address leaves by one exit
		seen("strategy "+v.strategy, func() bool {
			n := distinctExits(checker, judge.URL, 4)
			return (v.strategy == "sticky") == (n == 1)
		})
		if v.pinned {
			seen("the pinned port answering with US exits", func() bool {
				ip, err := exitVia(proxyClient("socks5://"+reloadPinned), judge.URL+"/ip")
				return err == nil && f.ByExitIP(ip).Spec.Country == "US"
			})
		} else {
			seen("the pinned port refusing connections", func() bool {
				c, err := net.DialTimeout("tcp", reloadPinned, 200*time.Millisecond)
				if err == nil {
					c.Close()
				}
				return err != nil
			})
		}
		if v.extra {
			seen("the extra source's upstreams in the store", func() bool {
				recs, err := st.List(ctx, store.Filter{Source: "extra"})
				return err == nil && len(recs) == 2
			})
		}
		slowest = max(slowest, time.Since(start))
		t.Logf("reload %d: acknowledged after %s; %s", i, acked.Round(time.Millisecond), strings.Join(took, ", "))
	}
	endClients()
	t.Logf("10 reloads: %d requests ok, %d failed; slowest change seen %s after its reload", ok.Load(), failed.Load(), slowest.Round(time.Millisecond))
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during the reloads; first: %v", failed.Load(), ok.Load()+failed.Load(), *firstErr.Load())
	}
	if ok.Load() < 640 {
		t.Errorf("only %d requests got through in 10 reloads", ok.Load())
	}

	// A broken config: kept out, said where, the daemon serves on.
	write(variant{strategy: "round-robin", extra: true}, true)
	line := lineOf(t, cfgPath, "strategyy")
	var out, errOut bytes.Buffer
	if code := mainArgs([]string{"--config", cfgPath, "reload", "--pid", strconv.Itoa(pid)}, &out, &errOut); code == 0 {
		t.Fatalf("proxypoold reload of a broken config exited 0: %s", out.String())
	}
	where := fmt.Sprintf("%s:%d: gateway.strategyy", cfgPath, line)
	if !strings.Contains(errOut.String(), where) {
		t.Errorf("proxypoold reload said %q, want it to name %s", errOut.String(), where)
	}
	waitFor(t, ctx, d, "the daemon's log naming "+where, func() bool {
		b, _ := os.ReadFile(d.logPath)
		return bytes.Contains(b, []byte("config reload failed")) && bytes.Contains(b, []byte(where))
	})
	// what proxypoolctl --db status prints; the reload is recorded as it
	// is logged, and `proxypoold reload` of a broken file does not wait
	var status control.Status
	waitFor(t, ctx, d, "status naming "+where, func() bool {
		status, err = manager.New(manager.Options{Store: st}).Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(status.Reloads) == 1 && strings.Contains(status.Reloads[0].Error, where)
	})
	if status.Reloads[0].PID != pid || status.Reloads[0].Generation != 11 {
		t.Errorf("status reloads %+v, want pid %d's generation 11", status.Reloads, pid)
	}
	for i := range 20 {
		if _, err := exitVia(proxyClient([]string{"socks5", "http"}[i%2]+"://"+reloadMain), judge.URL+"/ip"); err != nil {
			t.Fatalf("after the broken reload: %v", err)
		}
	}
	if n := distinctExits(checker, judge.URL, 6); n == 1 {
		t.Errorf("the broken config's strategy took effect? one exit for 6 requests")
	}
	d.stop(t, 20*time.Second)
}

// writeMembers writes the share links of ms, one a line.
func writeMembers(t *testing.T, path string, ms []*fleet.Member) {
	t.Helper()
	var b strings.Builder
	for _, m := range ms {
		b.WriteString(m.URI() + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, the daemon exits or ctx ends.
func waitFor(t *testing.T, ctx context.Context, d *daemonProc, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case err := <-d.exited:
			d.stopped = true
			t.Fatalf("proxypoold exited waiting for %s: %v", what, err)
		case <-ctx.Done():
			t.Fatalf("no %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func proxyClient(proxy string) *http.Client {
	pu, _ := url.Parse(proxy)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: true}}
}

var originRE = regexp.MustCompile(`"origin":\s*"([^"]+)"`)

// exitVia returns the exit the judge (its /ip) saw for one request
// through c.
func exitVia(c *http.Client, target string) (string, error) {
	resp, err := c.Get(target)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := originRE.FindSubmatch(b)
	if resp.StatusCode != 200 || m == nil {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return string(m[1]), nil
}

// distinctExits makes n requests through c and counts their exits.
func distinctExits(c *http.Client, judge string, n int) int {
	seen := map[string]bool{}
	for range n {
		if ip, err := exitVia(c, judge+"/ip"); err == nil {
			seen[ip] = true
		}
	}
	return len(seen)
}

// lineOf is the 1-based line of the first line of path containing s.
func lineOf(t *testing.T, path, s string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%s has no %q", path, s)
	return 0
}
