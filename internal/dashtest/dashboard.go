package dashtest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// VendorUI finds the metacubexd build in ../shared/vendor, beside the
// main checkout. It is not copied into the tree.
func VendorUI(t *testing.T) string {
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

// ServeUI serves the dashboard under /ui/ on host (a loopback address of
// the caller's block) and api, if set, everywhere else (as mihomo's
// external-ui does), on one origin.
func ServeUI(t *testing.T, host, dir string, api http.Handler) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/ui/", http.StripPrefix("/ui/", http.FileServer(http.Dir(dir))))
	if api != nil {
		mux.Handle("/", api)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
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

// Recorder passes requests on and keeps the delay tests' answers: what
// the page asked for and the numbers it got back.
type Recorder struct {
	Next http.Handler
	mu   sync.Mutex
	got  []delayAnswer
}

type delayAnswer struct {
	path   string
	status int
	delays []int
}

func (rc *Recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/delay") {
		rc.Next.ServeHTTP(w, r)
		return
	}
	cw := &capture{ResponseWriter: w, status: 200}
	rc.Next.ServeHTTP(cw, r)
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

// Answered is every positive delay answered so far.
func (rc *Recorder) Answered() (paths []string, delays []int) {
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

// Dashboard is what the page must show: a controller's groups and
// members, and a way to keep tunnels open through its proxy port.
type Dashboard struct {
	Base string // where the UI is served (ServeUI)
	// API is the controller's base URL when it is not Base: another
	// origin, whose CORS must let the page in
	API     string
	Secret  string
	Groups  []string
	Members []string
	Proxy   string // the proxy port for the tunnel loop
	Target  string // an echo server to tunnel to
	Shots   string // directory for the screenshots
	// Delays is where and what positive delays the page's tests were
	// answered so far (Recorder.Answered, or read back from the API)
	Delays func() (paths []string, delays []int)
}

// Drive opens metacubexd against d and checks the proxies page,
// a delay test from it and the connections page, saving screenshots.
func Drive(t *testing.T, d Dashboard) {
	b := StartBrowser(t)
	api := d.API
	if api == "" {
		api = d.Base
	}
	u, _ := url.Parse(api)
	b.Navigate(d.Base + "/ui/index.html#/setup?hostname=" + u.Hostname() + "&port=" + u.Port() + "&secret=" + url.QueryEscape(d.Secret))
	b.WaitFor("the overview after setup", 30*time.Second, func(s string) bool { return strings.Contains(s, "Active Connections") })
	b.Navigate(d.Base + "/ui/index.html#/proxies")
	b.WaitFor("every group", 30*time.Second, func(s string) bool { return containsAll(s, d.Groups) })
	if err := b.Eval(`document.querySelector('button[title="Expand All"]').click()`, nil); err != nil {
		t.Fatalf("clicking Expand All: %v", err)
	}
	b.WaitFor("every member", 30*time.Second, func(s string) bool { return containsAll(s, d.Members) })
	t.Logf("screenshot: %s", b.Screenshot(filepath.Join(d.Shots, "proxies.png")))

	if err := b.Eval(`document.querySelector('button[title="Test All Groups"]').click()`, nil); err != nil {
		t.Fatalf("clicking Test All Groups: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var delays []int
	var paths []string
	for len(delays) == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		paths, delays = d.Delays()
	}
	if len(delays) == 0 {
		t.Fatal("the page's delay test got no numbers back")
	}
	t.Logf("delay tests from the page: %v answered %v ms", paths, delays)
	// the page shows what it got: some member's latency reads as a number
	b.WaitFor("a tested delay", 15*time.Second, func(s string) bool {
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
	t.Logf("screenshot: %s", b.Screenshot(filepath.Join(d.Shots, "delay.png")))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loopDone := make(chan int, 1)
	go func() { loopDone <- TunnelLoop(ctx, d.Proxy, d.Target) }()
	b.Navigate(d.Base + "/ui/index.html#/connections")
	_, port, _ := net.SplitHostPort(d.Target)
	s := b.WaitFor("a live tunnel", 30*time.Second, func(s string) bool {
		return strings.Contains(s, ":"+port) && containsAny(s, d.Members)
	})
	t.Logf("screenshot: %s", b.Screenshot(filepath.Join(d.Shots, "connections.png")))
	cancel()
	if n := <-loopDone; n == 0 {
		t.Fatalf("no tunnel of the loop went through %s; the page showed:\n%s", d.Proxy, tail(s, 1000))
	}
}

// TunnelLoop keeps opening CONNECT tunnels to target through proxy, each
// echoing a line a second for a few seconds, until ctx ends; it returns
// how many carried their line.
func TunnelLoop(ctx context.Context, proxy, target string) int {
	ok := 0
	var wg sync.WaitGroup
	var mu sync.Mutex
	for ctx.Err() == nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, br, err := OpenTunnel(proxy, target, 15*time.Second)
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

// ShotsDir is where a run's screenshots go: kept after the test, printed.
func ShotsDir(t *testing.T, name string) string {
	dir := filepath.Join(os.TempDir(), "proxypool-dashboard", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}
