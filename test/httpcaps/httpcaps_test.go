// Package httpcaps proves, against real HTTP proxies nobody here wrote
// (Debian's squid and tinyproxy, configured the way free-list operators
// run them), that the probe learns what an HTTP upstream can do and that
// the gateway uses it only for that: a GET-only proxy never for CONNECT
// or SOCKS clients, a CONNECT-only one never for forwarding.
package httpcaps

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/socks"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/upstream"
	"github.com/proxypool/proxypool/test/squidtest"
)

// This helper's loopback block and ports: the judge and the gateway on
// 127.65.0.1, each proxy on an address of its own that is also its exit
// (the judge sees it), so a reply names the upstream that carried it.
const (
	judgeAddr = "127.65.0.1:25000"
	gwAddr    = "127.65.0.1:25001"
	gwUser    = "u"
	gwPass    = "p"
)

// need returns the path of a server program. Missing, it skips on a
// developer's machine and fails in CI, where scripts/deps.sh installs it.
func need(t *testing.T, name string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name, "/usr/bin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (scripts/deps.sh installs it)", name)
	}
	t.Skipf("%s is not installed (apt-get install %s, or run scripts/deps.sh)", name, name)
	return ""
}

// proxy is one real HTTP proxy of the world.
type proxy struct {
	name       string
	ip         string
	port       int
	user, pass string
	start      func(t *testing.T, dir string, p *proxy)
	want       upstream.Caps // what the probe must find
}

func (p *proxy) upstream() upstream.Upstream {
	m := map[string]any{"type": "http", "server": p.ip, "port": p.port}
	if p.user != "" {
		m["username"], m["password"] = p.user, p.pass
	}
	return upstream.MustNew(m)
}

// run starts a server in the foreground, in its own process group, and
// stops the group at cleanup; it waits until addr accepts connections.
func run(t *testing.T, name, addr, log string, argv ...string) {
	t.Helper()
	lf, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group we started: squid's helpers too
		<-exited
		lf.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(log)
			t.Fatalf("%s exited before listening on %s:\n%s", name, addr, b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log)
			t.Fatalf("%s is not listening on %s after 20s:\n%s", name, addr, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeConf writes a config readable by servers that drop privileges.
func writeConf(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// tinyproxy runs Debian's tinyproxy; connectPort0 refuses every CONNECT
// (tinyproxy.conf(5): "a single ConnectPort line with a value of 0").
func tinyproxy(connectPort0 bool) func(t *testing.T, dir string, p *proxy) {
	return func(t *testing.T, dir string, p *proxy) {
		bin := need(t, "tinyproxy")
		extra := ""
		if connectPort0 {
			extra += "ConnectPort 0\n"
		}
		if p.user != "" {
			extra += fmt.Sprintf("BasicAuth %s %s\n", p.user, p.pass)
		}
		conf := writeConf(t, filepath.Join(dir, p.name+".conf"), fmt.Sprintf(`User nobody
Group nogroup
Port %[2]d
Listen %[1]s
Bind %[1]s
Timeout 60
LogLevel Info
MaxClients 32
DisableViaHeader Yes
PidFile "%[3]s/%[4]s.pid"
%[5]s`, p.ip, p.port, dir, p.name, extra))
		run(t, p.name, fmt.Sprintf("%s:%d", p.ip, p.port), filepath.Join(dir, p.name+".log"), bin, "-d", "-c", conf)
	}
}

// squid runs Debian's squid with one access rule about CONNECT: "deny
// CONNECT" (a GET-only proxy) or "deny !CONNECT" (CONNECT-only). No Via,
// no X-Forwarded-For, as free-list operators run it.
func squid(rule string) func(t *testing.T, dir string, p *proxy) {
	return func(t *testing.T, dir string, p *proxy) {
		bin := need(t, "squid")
		sd := filepath.Join(dir, p.name)
		if err := os.MkdirAll(sd, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(sd, 0o777) // squid writes its logs as the proxy user
		conf := writeConf(t, filepath.Join(sd, "squid.conf"), squidtest.Conf(p.ip, p.port, "acl CONNECT method CONNECT\nhttp_access "+rule+"\nhttp_access allow all\n", sd))
		run(t, p.name, fmt.Sprintf("%s:%d", p.ip, p.port), filepath.Join(sd, "stdout.log"), bin, "-N", "-d", "1", "-f", conf)
	}
}

// world is the proxies, probed into a real store, served by a real pool
// and gateway with one group per scenario.
type world struct {
	proxies map[string]*proxy
	st      *store.Store
	judge   *fleet.Judge
}

func startWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	// servers that drop privileges read their configs from here
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	judge, err := fleet.StartJudge(ctx, judgeAddr)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{judge: judge, proxies: map[string]*proxy{}}
	for _, p := range []*proxy{
		{name: "tinyproxy-get", ip: "127.65.1.2", port: 25010, user: "tp", pass: "tp-secret", start: tinyproxy(true), want: upstream.CapForward},
		{name: "squid-get", ip: "127.65.1.3", port: 25011, start: squid("deny CONNECT"), want: upstream.CapForward},
		{name: "squid-connect", ip: "127.65.1.4", port: 25012, start: squid("deny !CONNECT"), want: upstream.CapConnect},
		{name: "tinyproxy-both", ip: "127.65.1.5", port: 25013, start: tinyproxy(false), want: upstream.CapConnect | upstream.CapForward},
	} {
		p.start(t, dir, p)
		w.proxies[p.name] = p
	}
	w.st, err = store.Open(ctx, filepath.Join(dir, "proxypool.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.st.Close() })
	var ups []upstream.Upstream
	for _, p := range w.proxies {
		ups = append(ups, p.upstream())
	}
	if _, err := w.st.Add(ctx, "manual", ups...); err != nil {
		t.Fatal(err)
	}
	return w
}

// probeAll runs one real probe pass over every upstream into the store.
func (w *world) probeAll(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	d := dial.New(dial.Options{})
	defer d.Close()
	pr, err := probe.New(d, probe.Options{
		Judges:   []string{w.judge.URL + "/get"},
		Timeout:  10 * time.Second,
		Classify: dial.Classify,
	})
	if err != nil {
		t.Fatal(err)
	}
	due, err := w.st.Due(ctx, time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var ups []upstream.Upstream
	for _, r := range due {
		ups = append(ups, r.Upstream)
	}
	if _, err := pr.Pass(ctx, ups, w.st); err != nil {
		t.Fatalf("probe pass: %v", err)
	}
	if err := w.st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// serve starts the gateway over a pool of the store with the given
// groups (name → proxies), as proxypoold's gateway wires them.
func (w *world) serve(t *testing.T, groups map[string][]string) {
	t.Helper()
	var gs []pool.Group
	for name, members := range groups {
		g := pool.Group{Name: name}
		for _, m := range members {
			g.IDs = append(g.IDs, w.proxies[m].upstream().ID)
		}
		gs = append(gs, g)
	}
	p, err := pool.New(pool.Options{Loader: w.st, Groups: gs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := p.Load(ctx); err != nil {
		t.Fatal(err)
	}
	d := dial.New(dial.Options{})
	ready := make(chan struct{})
	gw, err := gateway.New(gateway.Options{
		Picker: p, Dialer: d, Users: map[string]string{gwUser: gwPass},
		Classify: dial.Classify,
		MaxTries: 3, TotalTimeout: 10 * time.Second, OnReady: func() { close(ready) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", gwAddr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx, map[string][]net.Listener{"gateway": {ln}}) }()
	t.Cleanup(func() { cancel(); <-done; d.Close() })
	<-ready
}

// user is the gateway username that pins a request to a group.
func user(group string) string { return gwUser + "-group-" + group }

// echoed is the judge's /get answer: who connected to it.
type echoed struct {
	Origin string `json:"origin"`
}

func readEcho(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var e echoed
	if err := json.Unmarshal(b, &e); err != nil {
		return "", fmt.Errorf("judge answer %q: %v", b, err)
	}
	return e.Origin, nil
}

// viaGET fetches the judge through the gateway with an absolute-URI GET
// (what a browser does for http://) and returns the exit the judge saw.
func viaGET(group string) (string, error) {
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", User: url.UserPassword(user(group), gwPass), Host: gwAddr}),
		DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	resp, err := c.Get("http://" + judgeAddr + "/get")
	if err != nil {
		return "", err
	}
	return readEcho(resp)
}

// viaCONNECT opens a CONNECT tunnel through the gateway to the judge and
// asks it over the tunnel; a refused CONNECT returns the status line.
func viaCONNECT(group string) (string, int, error) {
	c, err := net.DialTimeout("tcp", gwAddr, 5*time.Second)
	if err != nil {
		return "", 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	auth := base64.StdEncoding.EncodeToString([]byte(user(group) + ":" + gwPass))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n", judgeAddr, judgeAddr, auth)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return "", 0, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return "", resp.StatusCode, fmt.Errorf("CONNECT answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	exit, err := getOver(c, br)
	return exit, resp.StatusCode, err
}

// viaSOCKS5 asks the judge through the gateway's SOCKS5 side.
func viaSOCKS5(group string) (string, error) {
	c, err := net.DialTimeout("tcp", gwAddr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if err := (socks.Client{User: user(group), Password: gwPass}).Connect(c, judgeAddr); err != nil {
		return "", err
	}
	return getOver(c, bufio.NewReader(c))
}

// getOver sends GET /get in origin form over a tunnel to the judge.
func getOver(c net.Conn, br *bufio.Reader) (string, error) {
	fmt.Fprintf(c, "GET /get HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", judgeAddr)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	return readEcho(resp)
}

// TestHTTPUpstreamsUsedForWhatTheyProved is the level: one probe pass
// over real proxies, then the gateway's three ways of using an HTTP
// upstream (absolute-URI GET, CONNECT, SOCKS5) through pools of each.
func TestHTTPUpstreamsUsedForWhatTheyProved(t *testing.T) {
	w := startWorld(t)
	w.probeAll(t)

	// what the probe learned, as `proxypoolctl list` shows it
	for _, p := range w.proxies {
		r, err := w.st.Get(context.Background(), p.upstream().ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != upstream.Healthy || r.Caps != p.want || r.ExitIP != p.ip {
			t.Errorf("%s: %s, caps %q, exit %q (last error %q); want healthy, caps %q, exit %s",
				p.name, r.State, r.Caps, r.ExitIP, r.LastError, p.want, p.ip)
		}
	}

	w.serve(t, map[string][]string{
		"getonly":     {"tinyproxy-get"},
		"squidget":    {"squid-get"},
		"connectonly": {"squid-connect"},
		// a GET-only proxy next to a CONNECT-only one: each request must
		// go to the one that can serve it, every time
		"mixed": {"tinyproxy-get", "squid-connect"},
		"both":  {"tinyproxy-both"},
	})
	ip := func(name string) string { return w.proxies[name].ip }
	const rounds = 8
	cases := []struct {
		group, how string
		want       string // exit the judge must see ("" any of the group)
		refused    bool   // the gateway must answer "no upstream"
	}{
		{"getonly", "GET", ip("tinyproxy-get"), false}, // forwarded, with tinyproxy's BasicAuth
		{"getonly", "CONNECT", "", true},
		{"getonly", "SOCKS5", "", true},
		{"squidget", "GET", ip("squid-get"), false},
		{"squidget", "CONNECT", "", true},
		{"squidget", "SOCKS5", "", true},
		{"connectonly", "GET", ip("squid-connect"), false}, // tunnelled: squid would refuse to forward it
		{"connectonly", "CONNECT", ip("squid-connect"), false},
		{"connectonly", "SOCKS5", ip("squid-connect"), false},
		{"mixed", "CONNECT", ip("squid-connect"), false},
		{"mixed", "SOCKS5", ip("squid-connect"), false},
		{"mixed", "GET", "", false}, // either: forwarded by tinyproxy or tunnelled by squid
		{"both", "GET", ip("tinyproxy-both"), false},
		{"both", "CONNECT", ip("tinyproxy-both"), false},
	}
	for _, c := range cases {
		t.Run(c.group+"/"+c.how, func(t *testing.T) {
			seen := map[string]int{}
			for round := range rounds {
				var exit string
				var status int
				var err error
				switch c.how {
				case "GET":
					exit, err = viaGET(c.group)
				case "CONNECT":
					exit, status, err = viaCONNECT(c.group)
				case "SOCKS5":
					exit, err = viaSOCKS5(c.group)
				}
				if c.refused {
					// 503 / SOCKS "network unreachable": no upstream of
					// the group can tunnel, and none was tried
					var re *socks.ReplyError
					switch {
					case c.how == "CONNECT" && status == http.StatusServiceUnavailable && strings.Contains(err.Error(), "tunnel"):
					case c.how == "SOCKS5" && errorsAs(err, &re) && re.Code == socks.NetworkUnreachable:
					default:
						t.Fatalf("round %d: exit %q, status %d, %v; want no upstream that can tunnel", round, exit, status, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				if c.want != "" && exit != c.want {
					t.Fatalf("round %d: went out through %s, want %s", round, exit, c.want)
				}
				seen[exit]++
			}
			if c.group == "mixed" && c.how == "GET" && len(seen) != 2 {
				t.Errorf("plain GETs in the mixed group went out through %v; want both upstreams used", seen)
			}
		})
	}
}

func errorsAs(err error, target any) bool { return err != nil && errors.As(err, target) }
