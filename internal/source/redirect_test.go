package source

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/proxypool/proxypool/internal/upstream"
)

// serveOn starts an HTTP server on addr (a loopback address of this
// test's block) and counts its requests.
func serveOn(t *testing.T, addr string, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestRedirectToNearerAddress: a source on a public host may not redirect
// the refresh to loopback or private addresses (the metrics endpoint, a
// router's page), while redirects between public hosts and a loopback
// source's redirects within loopback still work. Every server is on
// loopback here: 127.76.0.0/24 stands for public hosts.
func TestRedirectToNearerAddress(t *testing.T) {
	public := netip.MustParsePrefix("127.76.0.0/24")
	classify := func(a netip.Addr) reach {
		if public.Contains(a) {
			return reachPublic
		}
		return addrReach(a)
	}
	metrics, metricsHits := serveOn(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("socks5://1.2.3.4:1080\n")) // what a leak would parse
	})
	mirror, _ := serveOn(t, "127.76.0.2:0", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("1.2.3.4:80\n"))
	})
	to := map[string]string{
		"/to-metrics":   metrics.URL + "/metrics",
		"/to-localhost": strings.Replace(metrics.URL, "127.0.0.1", "localhost", 1) + "/metrics",
		"/to-lan":       "http://10.1.2.3:80/admin",
		"/to-v6":        "http://[::1]:9/x",
		"/to-mirror":    mirror.URL + "/list.txt",
		"/hop-to-lan":   "/to-lan",
	}
	remote, _ := serveOn(t, "127.76.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, to[r.URL.Path], http.StatusFound)
	})
	local, _ := serveOn(t, "127.0.0.1:0", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/to-metrics" {
			http.Redirect(w, r, metrics.URL+"/metrics", http.StatusFound)
		}
	})
	tests := []struct {
		name, url, body, err string
	}{
		{"public to loopback", remote.URL + "/to-metrics", "", "leads to a loopback address from a public source"},
		{"public to localhost", remote.URL + "/to-localhost", "", "leads to a loopback address from a public source"},
		{"public to private", remote.URL + "/to-lan", "", "to http://10.1.2.3:80/admin: it leads to a private address from a public source"},
		{"public to v6 loopback", remote.URL + "/to-v6", "", "leads to a loopback address"},
		{"public to public to private", remote.URL + "/hop-to-lan", "", "leads to a private address from a public source"},
		{"public to public", remote.URL + "/to-mirror", "1.2.3.4:80\n", ""},
		{"loopback source to loopback", local.URL + "/to-metrics", "socks5://1.2.3.4:1080\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &Fetcher{classify: classify}
			before := metricsHits.Load()
			got, err := f.Fetch(context.Background(), Source{Name: "r", URL: tc.url}, upstream.SourceMeta{})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), "refusing the redirect") || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want an error containing %q", got.Body, err, tc.err)
				}
				if n := metricsHits.Load() - before; n != 0 {
					t.Errorf("the loopback server was asked %d times", n)
				}
				return
			}
			if err != nil || string(got.Body) != tc.body {
				t.Fatalf("got %q, %v; want %q", got.Body, err, tc.body)
			}
		})
	}
}
