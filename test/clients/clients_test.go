// Package clients runs real clients — curl, headless Chromium,
// proxychains4, Python requests — through the mixed port of the real
// `proxypoold run` over a loopback fleet, against origins that count and
// check what reached them.
package clients

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/testtool"
)

// The gateway and metrics listen on this helper's fixed loopback block so
// a config file can name them; origins take free ports on the same address.
const (
	host       = "127.66.0.1"
	gwAddr     = host + ":26001"
	metricAddr = host + ":26002"
	// subresources the Chromium page loads: images and scripts
	nImages  = 40
	nScripts = 10
)

// need returns the path of a client program. A missing one skips the
// test on a developer's machine and fails it in CI, where scripts/deps.sh
// installs it.
func need(t *testing.T, name string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/bin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (scripts/deps.sh installs it)", name)
	}
	t.Skipf("%s is not installed (apt-get install it, or run scripts/deps.sh)", name)
	return ""
}

// run runs a client with a bound that catches a hang, not a slow machine,
// and returns its stdout (stderr goes into the error).
func run(t *testing.T, limit time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// kill the whole group: Chromium leaves helper processes behind
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s: %.1fs", filepath.Base(name), time.Since(start).Seconds())
	if ctx.Err() != nil {
		return out.String(), fmt.Errorf("%s did not finish within %v: %s", filepath.Base(name), limit, tailOf(errb.String()))
	}
	if err != nil {
		return out.String(), fmt.Errorf("%s: %v: %s", filepath.Base(name), err, tailOf(errb.String()))
	}
	return out.String(), nil
}

func tailOf(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}

// origin serves the same handler over plain HTTP and HTTPS and records
// who asked for what: every request must come from a fleet exit, i.e.
// through the gateway.
type origin struct {
	plain, tls *httptest.Server
	fleet      *fleet.Fleet
	mu         sync.Mutex
	hits       map[string]int // path → requests from fleet exits
	strangers  []string       // requests that did not come through the fleet
}

func (o *origin) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	o.mu.Lock()
	if o.fleet.ByExitIP(ip) == nil {
		o.strangers = append(o.strangers, ip+" "+r.URL.Path)
	} else {
		o.hits[r.URL.Path]++
	}
	o.mu.Unlock()
	switch p := r.URL.Path; {
	case p == "/ip":
		io.WriteString(rw, ip)
	case p == "/sum":
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(rw, "reading the body: "+err.Error(), 400)
			return
		}
		fmt.Fprintf(rw, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
	case p == "/page":
		rw.Header().Set("Content-Type", "text/html; charset=utf-8")
		rw.Header().Set("Cache-Control", "no-store")
		var b strings.Builder
		b.WriteString("<!doctype html><html><head><title>clients</title></head><body>\n")
		for i := 0; i < nImages; i++ {
			fmt.Fprintf(&b, "<img src=\"/img/%d.svg\" width=8 height=8>\n", i)
		}
		for i := 0; i < nScripts; i++ {
			fmt.Fprintf(&b, "<script src=\"/js/%d.js\"></script>\n", i)
		}
		// once everything loaded, write a marker that counts what did
		b.WriteString(`<div id="marker">pending</div><script>
window.addEventListener('load', function () {
  var imgs = 0;
  for (var i = 0; i < document.images.length; i++) {
    if (document.images[i].complete && document.images[i].naturalWidth > 0) imgs++;
  }
  document.getElementById('marker').textContent = 'LOADED images=' + imgs + ' scripts=' + (window.scriptsRan || 0);
});
</script></body></html>`)
		io.WriteString(rw, b.String())
	case strings.HasPrefix(p, "/img/"):
		rw.Header().Set("Content-Type", "image/svg+xml")
		rw.Header().Set("Cache-Control", "no-store")
		io.WriteString(rw, `<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8" fill="#396"/></svg>`)
	case strings.HasPrefix(p, "/js/"):
		rw.Header().Set("Content-Type", "text/javascript")
		rw.Header().Set("Cache-Control", "no-store")
		io.WriteString(rw, "window.scriptsRan = (window.scriptsRan || 0) + 1;\n")
	default:
		http.NotFound(rw, r)
	}
}

// count is the requests for paths with prefix that came through the fleet.
func (o *origin) count(prefix string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for p, c := range o.hits {
		if strings.HasPrefix(p, prefix) {
			n += c
		}
	}
	return n
}

func (o *origin) reset() {
	o.mu.Lock()
	o.hits = map[string]int{}
	o.strangers = nil
	o.mu.Unlock()
}

func (o *origin) checkStrangers(t *testing.T) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.strangers) > 0 {
		t.Errorf("the origin served %d requests that bypassed the gateway: %v", len(o.strangers), o.strangers)
	}
}

func startOrigin(t *testing.T, f *fleet.Fleet) *origin {
	o := &origin{fleet: f, hits: map[string]int{}}
	for _, tlsOn := range []bool{false, true} {
		ln, err := net.Listen("tcp", host+":0")
		if err != nil {
			t.Fatal(err)
		}
		s := httptest.NewUnstartedServer(o)
		s.Listener.Close()
		s.Listener = ln
		if tlsOn {
			s.StartTLS()
			o.tls = s
		} else {
			s.Start()
			o.plain = s
		}
		t.Cleanup(s.Close)
	}
	return o
}

// startDaemon builds and starts `proxypoold run` with the fleet as its one
// source and waits until the gateway carries a request.
func startDaemon(t *testing.T, f *fleet.Fleet, judge string) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "proxypoold")
	build := exec.Command("go", "build", "-o", bin, "github.com/proxypool/proxypool/cmd/proxypoold")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building proxypoold: %v\n%s", err, out)
	}
	cfgPath := f.WriteConfigT(t, dir, judge, 2*time.Second, fmt.Sprintf(`gateway:
  listen: %s
metrics:
  listen: %s
  gateway-listen: ""
log: {level: info, format: text}
`, gwAddr, metricAddr))
	logPath := filepath.Join(dir, "proxypoold.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfgPath, "run")
	// no session bus: `run` wires its parts in process
	cmd.Env = testtool.WithoutBus(os.Environ())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("proxypoold log (tail):\n%s", tailOf(string(b)))
		}
	})
	// ready when every good member is healthy: a request through the
	// gateway reaches the judge
	deadline := time.Now().Add(60 * time.Second)
	for {
		c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
			Proxy: http.ProxyURL(mustURL("http://" + gwAddr)), DisableKeepAlives: true,
		}}
		resp, err := c.Get(judge + "/ip")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 && healthy(filepath.Join(dir, "pp.db")) == len(f.Members()) {
				return
			}
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("proxypoold exited early: %v\n%s", err, tailOf(string(b)))
		case <-time.After(300 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not carry a request within 60 s (last: %v)", err)
		}
	}
}

// healthy is how many upstreams the store holds healthy (read-only, as
// proxypoolctl --db reads it).
func healthy(db string) int {
	if _, err := os.Stat(db); err != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := store.OpenReadOnly(ctx, db)
	if err != nil {
		return 0
	}
	defer st.Close()
	recs, err := st.Healthy(ctx)
	if err != nil {
		return 0
	}
	return len(recs)
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestRealClients(t *testing.T) {
	start := time.Now()
	judge := fleet.StartJudgeT(t)
	// plain upstreams of each kind the gateway tunnels through
	f := fleet.StartT(t, fleet.Spec{Members: []fleet.MemberSpec{
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "US"},
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "DE"},
		{Kind: fleet.HTTP, Behavior: fleet.Good, Country: "NL"},
	}})
	o := startOrigin(t, f)
	startDaemon(t, f, judge.URL)
	t.Logf("stack up in %.1fs", time.Since(start).Seconds())

	t.Run("curl", func(t *testing.T) { testCurl(t, o) })
	t.Run("chromium", func(t *testing.T) { testChromium(t, o) })
	t.Run("proxychains4", func(t *testing.T) { testProxychains(t, o) })
	t.Run("python-requests", func(t *testing.T) { testRequests(t, o) })
	t.Logf("all clients in %.1fs", time.Since(start).Seconds())
}

func testCurl(t *testing.T, o *origin) {
	curl := need(t, "curl")
	// 50 MB: curl sends Expect: 100-continue (bodies over 1 MB) and waits
	// for the 100 before it sends the body
	body := make([]byte, 50<<20)
	for i := range body {
		body[i] = byte(i*31 + i>>13)
	}
	file := filepath.Join(t.TempDir(), "upload")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	body = nil
	upload := fmt.Sprintf("%d %s", 50<<20, hex.EncodeToString(sum[:]))
	tests := []struct {
		name string
		args []string
		want func(string) bool
	}{
		{"socks5h GET https", []string{"-k", "-x", "socks5h://" + gwAddr, o.tls.URL + "/ip"}, o.isExit},
		{"socks5 GET https", []string{"-k", "-x", "socks5://" + gwAddr, o.tls.URL + "/ip"}, o.isExit},
		{"http GET plain", []string{"-x", "http://" + gwAddr, o.plain.URL + "/ip"}, o.isExit},
		{"http CONNECT GET https", []string{"-k", "-x", "http://" + gwAddr, o.tls.URL + "/ip"}, o.isExit},
		{"http POST 50 MB with Expect", []string{"-x", "http://" + gwAddr, "--data-binary", "@" + file, o.plain.URL + "/sum"},
			func(s string) bool { return s == upload }},
		{"http CONNECT POST 50 MB", []string{"-k", "-x", "http://" + gwAddr, "--data-binary", "@" + file, o.tls.URL + "/sum"},
			func(s string) bool { return s == upload }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, 60*time.Second, curl, append([]string{"-sS", "--fail-with-body"}, tt.args...)...)
			if err != nil || !tt.want(out) {
				t.Fatalf("curl %s: %v: got %q", strings.Join(tt.args, " "), err, out)
			}
		})
	}
	o.checkStrangers(t)
}

// isExit: the origin saw a fleet member's address, so the request went
// through the gateway and an upstream.
func (o *origin) isExit(s string) bool { return o.fleet.ByExitIP(strings.TrimSpace(s)) != nil }

func testChromium(t *testing.T, o *origin) {
	chromium := need(t, "chromium")
	for _, proxy := range []string{"socks5://" + gwAddr, "http://" + gwAddr} {
		t.Run(proxy[:strings.Index(proxy, ":")], func(t *testing.T) {
			o.reset()
			out, err := run(t, 120*time.Second, chromium,
				"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
				"--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--disable-dev-shm-usage",
				"--user-data-dir="+t.TempDir(),
				"--proxy-server="+proxy,
				// loopback targets are bypassed by default; take that rule away
				"--proxy-bypass-list=<-loopback>",
				"--ignore-certificate-errors",
				"--dump-dom", o.tls.URL+"/page")
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("LOADED images=%d scripts=%d", nImages, nScripts)
			if !strings.Contains(out, want) {
				i := strings.Index(out, `id="marker"`)
				t.Fatalf("the page did not finish loading through %s: want %q, DOM marker: %.120s", proxy, want, out[max(i, 0):])
			}
			if n := o.count("/img/"); n < nImages {
				t.Errorf("origin served %d images through the gateway, want %d", n, nImages)
			}
			if n := o.count("/js/"); n < nScripts {
				t.Errorf("origin served %d scripts through the gateway, want %d", n, nScripts)
			}
			if o.count("/page") < 1 {
				t.Error("the page itself did not come through the gateway")
			}
			o.checkStrangers(t)
		})
	}
}

func testProxychains(t *testing.T, o *origin) {
	pc := need(t, "proxychains4")
	curl := need(t, "curl")
	gwHost, gwPort, _ := net.SplitHostPort(gwAddr)
	tests := []struct{ name, conf string }{
		// proxy_dns: names go to the proxy; the targets here are
		// addresses, so it only has to keep out of the way
		{"socks5 proxy_dns", "strict_chain\nproxy_dns\ntcp_read_time_out 15000\ntcp_connect_time_out 8000\n[ProxyList]\nsocks5 " + gwHost + " " + gwPort + "\n"},
		{"http", "strict_chain\ntcp_read_time_out 15000\ntcp_connect_time_out 8000\n[ProxyList]\nhttp " + gwHost + " " + gwPort + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := filepath.Join(t.TempDir(), "proxychains.conf")
			if err := os.WriteFile(conf, []byte(tt.conf), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, u := range []string{o.plain.URL + "/ip", o.tls.URL + "/ip"} {
				out, err := run(t, 60*time.Second, pc, "-q", "-f", conf, curl, "-sS", "-k", "--noproxy", "*", u)
				if err != nil || !o.isExit(out) {
					t.Fatalf("proxychains4 (%s) curl %s: %v: got %q", tt.name, u, err, out)
				}
			}
		})
	}
	o.checkStrangers(t)
}

// requestsScript does a GET and a POST through the proxy given in argv
// and prints the two answers; verify=False for the self-signed origin.
const requestsScript = `
import sys, requests, urllib3
urllib3.disable_warnings()
proxy, get_url, post_url = sys.argv[1:4]
s = requests.Session()
s.proxies = {"http": proxy, "https": proxy}
r = s.get(get_url, verify=False, timeout=30)
r.raise_for_status()
print(r.text)
body = bytes(range(256)) * 4096
r = s.post(post_url, data=body, verify=False, timeout=30)
r.raise_for_status()
print(r.text)
`

func testRequests(t *testing.T, o *origin) {
	// Debian's python3 (python3-requests, python3-socks), not another one
	// that may be first on PATH
	py := need(t, "/usr/bin/python3")
	if out, err := run(t, 30*time.Second, py, "-c", "import requests, socks"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-requests / python3-socks missing: %v %s", err, out)
		}
		t.Skipf("python3-requests / python3-socks missing (apt-get install them): %v", err)
	}
	body := bytes.Repeat(func() []byte {
		b := make([]byte, 256)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}(), 4096)
	sum := sha256.Sum256(body)
	wantPost := fmt.Sprintf("%d %s", len(body), hex.EncodeToString(sum[:]))
	tests := []struct{ proxy, get, post string }{
		{"socks5h://" + gwAddr, o.tls.URL + "/ip", o.tls.URL + "/sum"},
		{"socks5://" + gwAddr, o.plain.URL + "/ip", o.plain.URL + "/sum"},
		{"http://" + gwAddr, o.plain.URL + "/ip", o.plain.URL + "/sum"},
		{"http://" + gwAddr, o.tls.URL + "/ip", o.tls.URL + "/sum"},
	}
	for _, tt := range tests {
		t.Run(tt.proxy[:strings.Index(tt.proxy, ":")]+" "+tt.get[:strings.Index(tt.get, ":")], func(t *testing.T) {
			out, err := run(t, 60*time.Second, py, "-c", requestsScript, tt.proxy, tt.get, tt.post)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if err != nil || len(lines) != 2 || !o.isExit(lines[0]) || lines[1] != wantPost {
				t.Fatalf("requests via %s: %v: got %q, want an exit and %q", tt.proxy, err, out, wantPost)
			}
		})
	}
	o.checkStrangers(t)
}
