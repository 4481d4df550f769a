package clashbackend_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// vendorUI finds the metacubexd build in ../shared/vendor, beside the
// main checkout. It is not copied into the tree.
func vendorUI(t *testing.T) string {
	t.Helper()
	for _, dir := range []string{os.Getenv("PROXYPOOL_METACUBEXD"), "/work/shared/vendor/metacubexd"} {
		if dir == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "index.html")); err == nil {
			return dir
		}
	}
	wd, _ := os.Getwd()
	for d := wd; d != "/"; d = filepath.Dir(d) {
		p := filepath.Join(d, "..", "shared", "vendor", "metacubexd")
		if _, err := os.Stat(filepath.Join(p, "index.html")); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("metacubexd not found in ../shared/vendor/metacubexd (or $PROXYPOOL_METACUBEXD)")
	}
	t.Skip("metacubexd not found in ../shared/vendor/metacubexd (or $PROXYPOOL_METACUBEXD)")
	return ""
}

// serveUI serves the dashboard under /ui/ and api everywhere else (as
// mihomo's external-ui does), on one origin.
func serveUI(t *testing.T, dir string, api http.Handler) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/ui/", http.StripPrefix("/ui/", http.FileServer(http.Dir(dir))))
	if api != nil {
		mux.Handle("/", api)
	}
	ln, err := net.Listen("tcp", "127.87.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// recorder passes requests on and keeps the delay tests' answers: what
// the page asked for and the numbers it got back.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	got  []delayAnswer
}

type delayAnswer struct {
	path   string
	status int
	delays []int
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/delay") {
		rc.next.ServeHTTP(w, r)
		return
	}
	cw := &capture{ResponseWriter: w, status: 200}
	rc.next.ServeHTTP(cw, r)
	a := delayAnswer{path: r.URL.Path, status: cw.status}
	var one struct {
		Delay int `json:"delay"`
	}
	var many map[string]int
	if json.Unmarshal(cw.body.Bytes(), &one) == nil && one.Delay > 0 {
		a.delays = append(a.delays, one.Delay)
	} else if json.Unmarshal(cw.body.Bytes(), &many) == nil {
		for _, d := range many {
			a.delays = append(a.delays, d)
		}
	}
	rc.mu.Lock()
	rc.got = append(rc.got, a)
	rc.mu.Unlock()
}

// answered is every positive delay answered so far.
func (rc *recorder) answered() (paths []string, delays []int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, a := range rc.got {
		if a.status == 200 && len(a.delays) > 0 {
			paths = append(paths, a.path)
			delays = append(delays, a.delays...)
		}
	}
	return paths, delays
}

type capture struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (c *capture) WriteHeader(code int) { c.status = code; c.ResponseWriter.WriteHeader(code) }
func (c *capture) Write(b []byte) (int, error) {
	c.body.Write(b)
	return c.ResponseWriter.Write(b)
}

// dashboard is what the page must show: a controller's groups and
// members, and a way to keep tunnels open through its proxy port.
type dashboard struct {
	base    string // where the UI and the API (or a proxy to it) are served
	secret  string
	groups  []string
	members []string
	proxy   string // the proxy port for the tunnel loop
	target  string // an echo server to tunnel to
	shots   string // directory for the screenshots
}

// driveDashboard opens metacubexd against d and checks the proxies page,
// a delay test from it and the connections page, saving screenshots.
func driveDashboard(t *testing.T, d dashboard, rc *recorder) {
	b := startBrowser(t)
	u, _ := url.Parse(d.base)
	b.navigate(d.base + "/ui/index.html#/setup?hostname=" + u.Hostname() + "&port=" + u.Port() + "&secret=" + url.QueryEscape(d.secret))
	b.waitFor("the overview after setup", 30*time.Second, func(s string) bool { return strings.Contains(s, "Active Connections") })
	b.navigate(d.base + "/ui/index.html#/proxies")
	b.waitFor("every group", 30*time.Second, func(s string) bool { return containsAll(s, d.groups) })
	if err := b.eval(`document.querySelector('button[title="Expand All"]').click()`, nil); err != nil {
		t.Fatalf("clicking Expand All: %v", err)
	}
	b.waitFor("every member", 30*time.Second, func(s string) bool { return containsAll(s, d.members) })
	t.Logf("screenshot: %s", b.screenshot(filepath.Join(d.shots, "proxies.png")))

	if err := b.eval(`document.querySelector('button[title="Test All Groups"]').click()`, nil); err != nil {
		t.Fatalf("clicking Test All Groups: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var delays []int
	var paths []string
	for len(delays) == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		paths, delays = rc.answered()
	}
	if len(delays) == 0 {
		t.Fatalf("the page's delay test got no numbers back: %+v", rc.got)
	}
	t.Logf("delay tests from the page: %v answered %v ms", paths, delays)
	// the page shows what it got: some member's latency reads as a number
	b.waitFor("a tested delay", 15*time.Second, func(s string) bool {
		for _, line := range strings.Split(s, "\n") {
			for _, dl := range delays {
				if strings.TrimSpace(line) == strconv.Itoa(dl) {
					return true
				}
			}
		}
		return false
	})
	time.Sleep(2 * time.Second) // the other groups' tests, for the picture
	t.Logf("screenshot: %s", b.screenshot(filepath.Join(d.shots, "delay.png")))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loopDone := make(chan int, 1)
	go func() { loopDone <- tunnelLoop(ctx, d.proxy, d.target) }()
	b.navigate(d.base + "/ui/index.html#/connections")
	_, port, _ := net.SplitHostPort(d.target)
	s := b.waitFor("a live tunnel", 30*time.Second, func(s string) bool {
		return strings.Contains(s, ":"+port) && containsAny(s, d.members)
	})
	t.Logf("screenshot: %s", b.screenshot(filepath.Join(d.shots, "connections.png")))
	cancel()
	if n := <-loopDone; n == 0 {
		t.Fatalf("no tunnel of the loop went through %s; the page showed:\n%s", d.proxy, tail(s, 1000))
	}
}

// tunnelLoop keeps opening CONNECT tunnels to target through proxy, each
// echoing a line a second for a few seconds, until ctx ends; it returns
// how many carried their line.
func tunnelLoop(ctx context.Context, proxy, target string) int {
	ok := 0
	var wg sync.WaitGroup
	var mu sync.Mutex
	for ctx.Err() == nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, br, err := openTunnel(proxy, target, 15*time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			context.AfterFunc(ctx, func() { c.Close() })
			for range 4 {
				io.WriteString(c, "tick\n")
				if _, err := br.ReadString('\n'); err != nil {
					return
				}
				mu.Lock()
				ok++
				mu.Unlock()
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		}()
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	wg.Wait()
	return ok
}

func containsAll(s string, subs []string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

func containsAny(s string, subs []string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// shotsDir is where a run's screenshots go: kept after the test, printed.
func shotsDir(t *testing.T, name string) string {
	dir := filepath.Join(os.TempDir(), "proxypool-dashboard", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// TestDashboard opens the metacubexd build in headless Chromium against
// real mihomo, then against proxypool's handler over a live pool.
func TestDashboard(t *testing.T) {
	ui := vendorUI(t)
	tg := startTargets(t)
	t.Run("mihomo", func(t *testing.T) {
		c := startMihomo(t, tg, 0)
		target, _ := url.Parse(c.Base)
		rc := &recorder{next: httputil.NewSingleHostReverseProxy(target)}
		driveDashboard(t, dashboard{base: serveUI(t, ui, rc), secret: c.Secret, groups: []string{"lb", "GLOBAL"},
			members: []string{"fleet-a", "fleet-b"}, proxy: c.Proxy, target: tg.echo, shots: shotsDir(t, "mihomo")}, rc)
	})
	t.Run("proxypool", func(t *testing.T) {
		w := newWorld(t, 6, tg.delayURL)
		rc := &recorder{next: w.handler}
		var members []string
		for _, m := range w.fleet.Members() {
			members = append(members, m.Upstream.ID)
		}
		driveDashboard(t, dashboard{base: serveUI(t, ui, rc), groups: []string{"us", "de", w.gwAddr, w.usAddr, "GLOBAL"},
			members: members, proxy: w.gwAddr, target: tg.echo, shots: shotsDir(t, "proxypool")}, rc)
	})
}
