package gateway_test

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/metrics"
	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/socks"
	"github.com/proxypool/proxypool/internal/upstream"
)

// The Prometheus recorder is the gateway's observer in cmd.
var _ gateway.Observer = (*metrics.GatewayMetrics)(nil)

// recorder is an Observer that keeps what it was told.
type recorder struct {
	mu       sync.Mutex
	opened   []string // listener/proto
	done     []string // listener/proto/outcome
	tunnels  int
	maxTun   int
	dials    []string
	retries  int
	up, down int64
	auth     []string
	delayed  int
	limited  int
}

func (r *recorder) ConnOpened(l, p string) {
	r.mu.Lock()
	r.opened = append(r.opened, l+"/"+p)
	r.mu.Unlock()
}

func (r *recorder) ConnDone(l, p, o string, d time.Duration) {
	r.mu.Lock()
	r.done = append(r.done, l+"/"+p+"/"+o)
	r.mu.Unlock()
}

func (r *recorder) ActiveTunnels(d int) {
	r.mu.Lock()
	r.tunnels += d
	r.maxTun = max(r.maxTun, r.tunnels)
	r.mu.Unlock()
}

func (r *recorder) DialLatency(c string, d time.Duration) {
	r.mu.Lock()
	r.dials = append(r.dials, c)
	r.mu.Unlock()
}

func (r *recorder) Retry() { r.mu.Lock(); r.retries++; r.mu.Unlock() }

func (r *recorder) Bytes(up, down int64) {
	r.mu.Lock()
	r.up += up
	r.down += down
	r.mu.Unlock()
}

func (r *recorder) AuthRejected(l string) {
	r.mu.Lock()
	r.auth = append(r.auth, l)
	r.mu.Unlock()
}

func (r *recorder) AuthDelayed(l string)   { r.mu.Lock(); r.delayed++; r.mu.Unlock() }
func (r *recorder) ClientLimited(l string) { r.mu.Lock(); r.limited++; r.mu.Unlock() }

// waitDone waits until n connections were reported done.
func (r *recorder) waitDone(t *testing.T, n int) []string {
	t.Helper()
	for i := 0; i < 200; i++ {
		r.mu.Lock()
		if len(r.done) >= n {
			d := append([]string(nil), r.done...)
			r.mu.Unlock()
			return d
		}
		r.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Fatalf("%d connections done, want %d: %v", len(r.done), n, r.done)
	return nil
}

func TestObserverSeesEachOutcome(t *testing.T) {
	rec := &recorder{}
	w := newWorld(t, worldOpts{
		spec: fleet.Uniform(2, fleet.SOCKS5, fleet.Good),
		gw:   gateway.Options{Observer: rec, Users: map[string]string{"u": "p"}},
		pool: pool.Options{EjectAfter: 1},
	})
	steps := []struct {
		name    string
		do      func(t *testing.T)
		outcome string
	}{
		{"socks5 tunnel", func(t *testing.T) {
			if _, err := get(client("socks5://u:p@"+w.addr, false), w.judge); err != nil {
				t.Fatal(err)
			}
		}, "gateway/socks5/ok"},
		{"http forward", func(t *testing.T) {
			if _, err := get(client("http://u:p@"+w.addr, false), w.judge); err != nil {
				t.Fatal(err)
			}
		}, "gateway/http/ok"},
		{"wrong password", func(t *testing.T) {
			if _, err := get(client("http://u:x@"+w.addr, false), w.judge); err == nil || !strings.HasPrefix(err.Error(), "407") {
				t.Fatalf("got %v, want 407", err)
			}
		}, "gateway/http/auth_rejected"},
		{"client leaves at once", func(t *testing.T) {
			c, err := net.Dial("tcp", w.addr)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}, "gateway/unknown/client_closed"},
		{"target refuses", func(t *testing.T) {
			c, err := net.Dial("tcp", w.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = socks.Client{User: "u", Password: "p"}.Connect(c, closedPort(t))
			var re *socks.ReplyError
			if !errors.As(err, &re) || re.Code != socks.ConnectionRefused {
				t.Fatalf("got %v, want reply connection refused", err)
			}
		}, "gateway/socks5/target_refused"},
	}
	for i, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.do(t)
			if got := rec.waitDone(t, i+1)[i]; got != s.outcome {
				t.Errorf("ConnDone %q, want %q", got, s.outcome)
			}
		})
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.opened) != len(steps) {
		t.Errorf("ConnOpened %d times for %d connections: %v", len(rec.opened), len(steps), rec.opened)
	}
	if rec.tunnels != 0 || rec.maxTun != 1 {
		t.Errorf("tunnel gauge ends at %d (max %d), want 0 (max 1)", rec.tunnels, rec.maxTun)
	}
	if rec.up == 0 || rec.down == 0 {
		t.Errorf("bytes up %d down %d, want both > 0", rec.up, rec.down)
	}
	if len(rec.auth) != 1 || rec.auth[0] != "gateway" {
		t.Errorf("AuthRejected %v, want [gateway]", rec.auth)
	}
	if want := "ok ok target_refused"; strings.Join(rec.dials, " ") != want || rec.retries != 0 {
		t.Errorf("dials %v retries %d, want %q and no retry (a dead target is not failed over)", rec.dials, rec.retries, want)
	}
}

// TestDeadTargetKeepsUpstreams: a target that refuses is answered with
// that precise error and does not eject or report the healthy upstreams.
func TestDeadTargetKeepsUpstreams(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(3, fleet.SOCKS5, fleet.Good), pool: pool.Options{EjectAfter: 1}})
	dead := closedPort(t)
	for i := 0; i < 6; i++ {
		resp, err := client("http://"+w.addr, false).Get("http://" + dead + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(resp.Header.Get("Proxy-Status"), "error=connection_refused") || !strings.Contains(resp.Header.Get("Proxy-Status"), "after 1 try") {
			t.Fatalf("request %d: %d %q, want 502 connection_refused after 1 try", i, resp.StatusCode, resp.Header.Get("Proxy-Status"))
		}
	}
	if n := w.pool.Len(); n != 3 {
		t.Errorf("pool holds %d upstreams after a dead target, want all 3", n)
	}
	w.store.mu.Lock()
	defer w.store.mu.Unlock()
	for _, r := range w.store.passes {
		if !r.OK {
			t.Errorf("upstream %s reported failed (%s) for a dead target", r.ID, r.Cause)
		}
	}
}

// closedPort is a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// TestCertificateProxyStatus: an upstream whose TLS certificate does not
// verify is answered with RFC 9209's tls_certificate_error, so a client
// sees why, and reported against the upstream as a certificate failure.
func TestCertificateProxyStatus(t *testing.T) {
	px := fleet.StartTLSConnectT(t, "127.73.2.1:0")
	host, port, _ := net.SplitHostPort(px.Addr())
	u := upstream.MustNew(map[string]any{"type": "http", "server": host, "port": port, "tls": true})
	w := newWorld(t, worldOpts{spec: fleet.Uniform(1, fleet.SOCKS5, fleet.Good)})
	recs := records(nil)
	recs = append(recs, upstream.Record{Upstream: u, Status: upstream.Status{State: upstream.Healthy, LatencyMS: 5, OKs: 1, Checks: 1}})
	w.store.set(recs)
	deadline := time.Now().Add(5 * time.Second)
	for w.pool.Len() != 1 || func() bool { ch, err := w.pool.Pick(&upstream.Selector{}); return err != nil || ch.ID != u.ID }() {
		if time.Now().After(deadline) {
			t.Fatal("pool did not reload to the https upstream")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := client("http://"+w.addr, false).Get(w.judge + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ps := resp.Header.Get("Proxy-Status"); resp.StatusCode != http.StatusBadGateway || !strings.Contains(ps, "error=tls_certificate_error") {
		t.Fatalf("%d %q, want 502 with error=tls_certificate_error", resp.StatusCode, ps)
	}
	w.store.mu.Lock()
	defer w.store.mu.Unlock()
	var causes []upstream.Cause
	for _, r := range w.store.passes {
		if r.ID == u.ID {
			causes = append(causes, r.Cause)
		}
	}
	if len(causes) == 0 || causes[0] != upstream.CauseCertificate {
		t.Errorf("reported for the upstream: %v, want a certificate failure", causes)
	}
}
