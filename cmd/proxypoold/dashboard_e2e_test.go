package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/dashtest"
	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/testtool"
)

// TestDashboardE2E opens the metacubexd build in headless Chromium
// against `proxypoold run` as `make run` starts it: the page on an origin
// of its own that api.cors-origins lets in, the daemon's API behind a
// secret. The proxies page lists the pool's groups and upstreams, a delay
// test from the page returns numbers, and the connections page lists the
// tunnels a loop keeps open through the gateway. A tap in front of the
// API (a plain reverse proxy on a third origin) only reads the delay
// answers; CORS, auth and every answer are the daemon's.
func TestDashboardE2E(t *testing.T) {
	ui := dashtest.VendorUI(t)
	testtool.Need(t, "chromium", "apt-get install chromium, or scripts/deps.sh")
	page := dashtest.ServeUI(t, "127.86.1.1", ui, nil)

	d := startAPIDaemonWith(t, []fleet.MemberSpec{
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "US"},
		{Kind: fleet.HTTP, Behavior: fleet.Good, Country: "US"},
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "DE"},
	}, fmt.Sprintf("  cors-origins: [%s]\ngroups:\n  us: {countries: [US]}\n", page))
	f, gwAddr := d.fleet, d.gw

	// every member healthy, as the page is to list them
	var members []string
	for _, m := range f.Members() {
		members = append(members, m.Upstream.ID)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, b := d.do(t, "GET", "/proxies", apiSecret, "", "")
		var got struct {
			Proxies map[string]struct{ Alive bool }
		}
		alive := 0
		if code == 200 && json.Unmarshal(b, &got) == nil {
			for _, id := range members {
				if got.Proxies[id].Alive {
					alive++
				}
			}
		}
		if alive == len(members) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /proxies: %d, %d of %d members alive after 30s: %.500s", code, alive, len(members), b)
		}
		time.Sleep(200 * time.Millisecond)
	}

	target, _ := url.Parse(d.base)
	rc := &dashtest.Recorder{Next: httputil.NewSingleHostReverseProxy(target)}
	tap := dashtest.ServeUI(t, "127.86.1.2", t.TempDir(), rc)
	dashtest.Drive(t, dashtest.Dashboard{Base: page, API: tap, Secret: apiSecret, Groups: []string{"us", gwAddr, "GLOBAL"},
		Members: members, Proxy: gwAddr, Target: echoServer(t, "127.86.1.3"), Shots: dashtest.ShotsDir(t, "daemon"), Delays: rc.Answered})
}

// echoServer echoes every line back, on host, until the test ends.
func echoServer(t *testing.T, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	testtool.Serve(ln, func(c net.Conn) { io.Copy(c, c) })
	return ln.Addr().String()
}
