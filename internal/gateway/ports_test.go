package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/pool"
)

// TestSetPorts is a config reload's port changes: a port added answers at
// once and is pinned to its group, a port removed refuses new connections
// while a tunnel opened through it goes on, and the mixed port serves
// throughout. Addresses are in this package's reserved loopback block.
func TestSetPorts(t *testing.T) {
	spec := fleet.Spec{}
	for i := range 4 {
		spec.Members = append(spec.Members, fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: []string{"US", "DE"}[i%2]})
	}
	w := newWorld(t, worldOpts{spec: spec, pool: pool.Options{Groups: []pool.Group{{Name: "us", Countries: []string{"US"}}}}})
	country := func(ip string) string { return w.fleet.ByExitIP(ip).Spec.Country }
	ctx := context.Background()
	main := gateway.Port{Name: "gateway", Addr: w.addr}
	const addUS, addAll = "127.84.0.1:20001", "127.84.0.1:20002"

	steps := []struct {
		name    string
		ports   []gateway.Port
		answer  map[string]string // address → the country its exits must be in ("" any)
		refused []string
	}{
		{"add two ports", []gateway.Port{main, {Name: "port-us", Group: "us", Addr: addUS}, {Name: "port-20002", Addr: addAll}},
			map[string]string{w.addr: "", addUS: "US", addAll: ""}, nil},
		{"remove one", []gateway.Port{main, {Name: "port-us", Group: "us", Addr: addUS}},
			map[string]string{w.addr: "", addUS: "US"}, []string{addAll}},
		{"same address, other group", []gateway.Port{main, {Name: "port-us", Addr: addUS}},
			map[string]string{w.addr: "", addUS: ""}, []string{addAll}},
		{"back to the mixed port alone", []gateway.Port{main},
			map[string]string{w.addr: ""}, []string{addUS, addAll}},
	}
	var tunnel *bufio.ReadWriter
	for i, st := range steps {
		if err := w.gw.SetPorts(ctx, st.ports); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		for addr, want := range st.answer {
			for range 4 {
				ip, err := get(client("socks5://"+addr, false), w.judge)
				if err != nil {
					t.Fatalf("%s: through %s: %v", st.name, addr, err)
				}
				if want != "" && country(ip) != want {
					t.Fatalf("%s: through %s left by %s (%s), want %s", st.name, addr, ip, country(ip), want)
				}
			}
		}
		for _, addr := range st.refused {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Fatalf("%s: %s still accepts connections", st.name, addr)
			}
		}
		if i == 0 {
			tunnel = connectTunnel(t, addAll, w.judge)
		}
		if i == 1 { // addAll was removed: its tunnel still works
			if _, err := tunnelGet(tunnel, w.judge); err != nil {
				t.Fatalf("the tunnel opened through the removed port: %v", err)
			}
		}
	}
}

// connectTunnel opens an HTTP CONNECT tunnel to target's host through
// the proxy at addr and leaves it open.
func connectTunnel(t *testing.T, addr, target string) *bufio.ReadWriter {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	rw := bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c))
	fmt.Fprintf(rw, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.Host, u.Host)
	rw.Flush()
	resp, err := http.ReadResponse(rw.Reader, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT through %s: %v %v", addr, resp, err)
	}
	if _, err := tunnelGet(rw, target); err != nil {
		t.Fatalf("GET through the new tunnel: %v", err)
	}
	return rw
}

// tunnelGet sends a GET for target down an open tunnel and returns the body.
func tunnelGet(rw *bufio.ReadWriter, target string) (string, error) {
	u, _ := url.Parse(target)
	fmt.Fprintf(rw, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", u.Host)
	if err := rw.Flush(); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(rw.Reader, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

// TestRemovedPortDrainTimeout: a tunnel of a removed port goes on for the
// drain timeout, then is closed, while one of a port still served stays.
func TestRemovedPortDrainTimeout(t *testing.T) {
	const drain = 400 * time.Millisecond
	w := newWorld(t, worldOpts{spec: fleet.Spec{Members: []fleet.MemberSpec{{Kind: fleet.SOCKS5, Behavior: fleet.Good}, {Kind: fleet.SOCKS5, Behavior: fleet.Good}}}, gw: gateway.Options{DrainTimeout: drain}})
	ctx := context.Background()
	main := gateway.Port{Name: "gateway", Addr: w.addr}
	const extra = "127.84.0.1:20003"
	if err := w.gw.SetPorts(ctx, []gateway.Port{main, {Name: "port-20003", Addr: extra}}); err != nil {
		t.Fatal(err)
	}
	removed, kept := connectTunnel(t, extra, w.judge), connectTunnel(t, w.addr, w.judge)
	if err := w.gw.SetPorts(ctx, []gateway.Port{main}); err != nil {
		t.Fatal(err)
	}
	if _, err := tunnelGet(removed, w.judge); err != nil {
		t.Fatalf("within the drain timeout, the removed port's tunnel: %v", err)
	}
	time.Sleep(drain + 300*time.Millisecond)
	if _, err := tunnelGet(removed, w.judge); err == nil {
		t.Fatalf("the removed port's tunnel still works %s after its drain timeout", drain+300*time.Millisecond)
	}
	if _, err := tunnelGet(kept, w.judge); err != nil {
		t.Fatalf("the mixed port's tunnel after another port's drain: %v", err)
	}
}
