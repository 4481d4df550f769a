package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/gateway/failover"
	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/upstream"
)

// memStore is the pool's Loader and the gateway's Reporter over memory.
type memStore struct {
	mu     sync.Mutex
	recs   []upstream.Record
	ver    atomic.Uint64
	passes []upstream.CheckResult
}

func (m *memStore) Healthy(context.Context) ([]upstream.Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]upstream.Record(nil), m.recs...), nil
}

func (m *memStore) Version(context.Context) (uint64, error) { return m.ver.Load(), nil }

func (m *memStore) Submit(r upstream.CheckResult) {
	m.mu.Lock()
	m.passes = append(m.passes, r)
	m.mu.Unlock()
}

func (m *memStore) set(recs []upstream.Record) {
	m.mu.Lock()
	m.recs = recs
	m.mu.Unlock()
	m.ver.Add(1)
}

func records(members []*fleet.Member) []upstream.Record {
	var out []upstream.Record
	for _, m := range members {
		out = append(out, upstream.Record{Upstream: m.Upstream, Status: upstream.Status{
			State: upstream.Healthy, ExitIP: m.ExitIP, Country: m.Spec.Country, LatencyMS: 5, OKs: 1, Checks: 1,
		}})
	}
	return out
}

// goroutinesEnv, when set, makes every test world serve its clients on
// goroutines only. TestGoroutinePath re-runs the package so, and every
// test covers both the event loops and the goroutine path.
const goroutinesEnv = "PROXYPOOL_TEST_GOROUTINES"

func TestGoroutinePath(t *testing.T) {
	if os.Getenv(goroutinesEnv) != "" {
		t.Skip("this is the goroutine-path run")
	}
	cmd := exec.Command(os.Args[0], "-test.count=1", "-test.skip=^(TestGoroutinePath|Fuzz.*)$")
	cmd.Env = append(os.Environ(), goroutinesEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the package's tests on the goroutine path: %v\n%s", err, out)
	}
}

// world is a fleet, a judge that echoes the exit address, a pool and a
// gateway with a mixed port plus pinned ports.
type world struct {
	t      testing.TB
	fleet  *fleet.Fleet
	store  *memStore
	pool   *pool.Pool
	gw     *gateway.Gateway
	judge  string // http://127.0.0.1:port
	addr   string // the mixed port
	pinned map[string]string
	cancel context.CancelFunc
	done   chan error
}

type worldOpts struct {
	spec   fleet.Spec
	gw     gateway.Options
	pool   pool.Options
	pinned map[string]string // listener name → group
	// strategies give pinned listeners a picker of their own (listener
	// name → strategy, with the pool's rotation)
	strategies map[string]string
	// recs are upstreams served by other programs (danted), in the pool
	// besides the fleet's members
	recs []upstream.Record
	// dialer, when set, wraps the dial package's pool as the gateway's
	// Dialer (the wrapper has no PlainSOCKS5: the loops hand every
	// connection to the goroutine path, which dials through it)
	dialer func(*dial.Pool) gateway.Dialer
	// status, when set, adjusts each member's status as the probe would
	// have found it (exit quality, latency)
	status func(m *fleet.Member, s *upstream.Status)
}

func newWorld(t testing.TB, o worldOpts) *world {
	t.Helper()
	w := &world{t: t, store: &memStore{}, pinned: map[string]string{}, done: make(chan error, 1)}
	w.fleet = fleet.StartT(t, o.spec)
	recs := records(w.fleet.Members())
	if o.status != nil {
		for i, m := range w.fleet.Members() {
			o.status(m, &recs[i].Status)
		}
	}
	w.store.set(append(recs, o.recs...))
	judge := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		io.WriteString(rw, host)
	}))
	t.Cleanup(judge.Close)
	w.judge = judge.URL
	o.pool.Loader = w.store
	o.pool.PollInterval = 20 * time.Millisecond
	p, err := pool.New(o.pool)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.pool = p
	o.gw.Pickers = map[string]failover.Picker{}
	for name, strategy := range o.strategies {
		pk, err := p.NewPicker(strategy, o.pool.Rotate)
		if err != nil {
			t.Fatal(err)
		}
		o.gw.Pickers[name] = pk
	}
	d := dial.New(dial.Options{})
	t.Cleanup(func() { d.Close() })
	o.gw.Picker, o.gw.Dialer, o.gw.Reporter = p, d, w.store
	if o.dialer != nil {
		o.gw.Dialer = o.dialer(d)
	}
	o.gw.Classify = dial.Classify
	if os.Getenv(goroutinesEnv) != "" {
		o.gw.GoroutinesOnly = true
	}
	if o.gw.MinDialTimeout == 0 {
		o.gw.MinDialTimeout = 300 * time.Millisecond
	}
	lns := map[string][]net.Listener{}
	listen := func(name string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[name] = []net.Listener{ln}
		return ln.Addr().String()
	}
	w.addr = listen("gateway")
	o.gw.Ports = map[string]string{}
	for name, group := range o.pinned {
		w.pinned[name] = listen(name)
		o.gw.Ports[name] = group
	}
	ready := make(chan struct{})
	o.gw.OnReady = func() { close(ready) }
	gw, err := gateway.New(o.gw)
	if err != nil {
		t.Fatal(err)
	}
	w.gw = gw
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go p.Run(ctx)
	go func() { w.done <- gw.Run(ctx, lns) }()
	t.Cleanup(w.stop)
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("gateway not ready")
	}
	return w
}

func (w *world) stop() {
	w.cancel()
	select {
	case <-w.done:
	case <-time.After(15 * time.Second):
		w.t.Error("gateway did not stop")
	}
}

// client is an http.Client through the gateway; proxy is a URL such as
// socks5://host:port or http://user:pass@host:port.
func client(proxy string, keepAlive bool) *http.Client {
	pu, err := url.Parse(proxy)
	if err != nil {
		panic(err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: !keepAlive}}
}

// get returns the exit IP the judge saw, or an error with status and body.
func get(c *http.Client, u string) (string, error) {
	resp, err := c.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%d %s: %s", resp.StatusCode, resp.Header.Get("Proxy-Status"), b)
	}
	return string(b), nil
}

func curl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed (apt-get install curl)")
	}
	out, err := exec.Command(path, append([]string{"-sS", "--max-time", "10"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
