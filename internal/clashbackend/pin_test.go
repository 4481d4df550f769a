package clashbackend_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/clashbackend"
	"github.com/proxypool/proxypool/internal/dashtest"
)

// TestPinGroup: PUT /proxies/{group} sends the group's port to one member
// until DELETE, as a user sees it in the tunnels the gateway opens.
func TestPinGroup(t *testing.T) {
	tg := startTargets(t)
	w := newWorld(t, 6, tg.delayURL)
	c := &controller{Base: w.api.URL}
	us := c.getJSON(t, "GET", "/proxies/us", nil, 200)
	var members []string
	for _, a := range us["all"].([]any) {
		members = append(members, a.(string))
	}
	if len(members) < 2 {
		t.Fatalf("group us has %d members, want at least 2", len(members))
	}
	pick := members[len(members)-1] // not the one it would list first
	tests := []struct {
		name   string
		group  string
		body   any
		status int
	}{
		{"a member", "us", map[string]string{"name": pick}, 204},
		{"not a member", "us", map[string]string{"name": "no-such-upstream"}, 400},
		{"no name", "us", map[string]string{}, 400},
		{"an upstream is no group", members[0], map[string]string{"name": pick}, 400},
		{"unknown group", "nope", map[string]string{"name": pick}, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, b := c.do(t, "PUT", "/proxies/"+url.PathEscape(tt.group), tt.body, false)
			if code != tt.status {
				t.Fatalf("PUT /proxies/%s %v: %d %s, want %d", tt.group, tt.body, code, b, tt.status)
			}
		})
	}
	if now := c.getJSON(t, "GET", "/proxies/us", nil, 200)["now"]; now != pick {
		t.Fatalf("group us shows now=%v after the pin, want %s", now, pick)
	}
	for i := range 4 {
		if got := tunnelUpstream(t, w, w.usAddr, tg.echo); got != pick {
			t.Fatalf("tunnel %d through the us port went through %s, want the pinned %s", i, got, pick)
		}
	}
	c.getJSON(t, "DELETE", "/proxies/us", nil, 204)
	seen := map[string]bool{}
	for range 6 {
		seen[tunnelUpstream(t, w, w.usAddr, tg.echo)] = true
	}
	if len(seen) < 2 {
		t.Fatalf("after DELETE the us port still uses only %v", seen)
	}
}

// tunnelUpstream opens a CONNECT tunnel through addr and returns the
// upstream /connections names for it.
func tunnelUpstream(t *testing.T, w *world, addr, target string) string {
	t.Helper()
	conn, _, err := dashtest.OpenTunnel(addr, target, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := w.tunnels.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	local := conn.LocalAddr().String()
	for _, c := range st.Conns {
		if c.Client == local {
			return c.Upstream
		}
	}
	t.Fatalf("the gateway lists no tunnel from %s among %d", local, len(st.Conns))
	return ""
}

// TestSetPorts: a config reload's listeners replace the ones the API
// lists and pins by: a removed port is unknown, an added one lists its
// group's members and takes a pin.
func TestSetPorts(t *testing.T) {
	w := newWorld(t, 6, "")
	c := &controller{Base: w.api.URL}
	const deAddr = "127.87.0.1:21998" // listed only: the API does not dial it
	c.getJSON(t, "GET", "/proxies/"+url.PathEscape(w.usAddr), nil, 200)
	w.backend.SetPorts([]clashbackend.Port{{Listen: w.gwAddr}, {Listen: deAddr, Group: "de"}})
	tests := []struct {
		name, group string
		status      int
	}{
		{"the removed port", w.usAddr, 404},
		{"the added port", deAddr, 200},
		{"the mixed port", w.gwAddr, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, b := c.do(t, "GET", "/proxies/"+url.PathEscape(tt.group), nil, false); code != tt.status {
				t.Fatalf("GET /proxies/%s: %d %s, want %d", tt.group, code, b, tt.status)
			}
		})
	}
	de := c.getJSON(t, "GET", "/proxies/"+url.PathEscape(deAddr), nil, 200)
	all := de["all"].([]any)
	if len(all) != 3 {
		t.Fatalf("the added port lists %d members, want group de's 3", len(all))
	}
	pick := all[len(all)-1].(string)
	if code, b := c.do(t, "PUT", "/proxies/"+url.PathEscape(deAddr), map[string]string{"name": pick}, false); code != 204 {
		t.Fatalf("pinning the added port: %d %s", code, b)
	}
	if id, _ := w.pool.Pinned("de"); id != pick {
		t.Fatalf("group de pinned to %q after pinning the added port, want %s", id, pick)
	}
}
