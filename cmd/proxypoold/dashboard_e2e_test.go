package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
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

	judge := fleet.StartJudgeT(t)
	f := fleet.StartT(t, fleet.Spec{Members: []fleet.MemberSpec{
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "US"},
		{Kind: fleet.HTTP, Behavior: fleet.Good, Country: "US"},
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "DE"},
	}})
	dir := t.TempDir()
	list, geo := f.WriteFilesT(t, dir)
	ports := freePorts(t, 2)
	apiAddr := freeAPIAddr(t)
	gwAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cfgPath := filepath.Join(dir, "proxypool.yaml")
	cfg := fleetConfig(dir, list, judge.URL, geo, fmt.Sprintf(`gateway:
  listen: %s
groups:
  us: {countries: [US]}
metrics:
  listen: 127.0.0.1:%d
  gateway-listen: ""
api:
  listen: %s
  secret: %s
  cors-origins: [%s]
`, gwAddr, ports[1], apiAddr, apiSecret, page))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, dir, cfgPath, noBusEnv(dir)...)
	d := &apiDaemon{base: "http://" + apiAddr, hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}}

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
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}
