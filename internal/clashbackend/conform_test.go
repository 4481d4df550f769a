package clashbackend_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/proxypool/proxypool/internal/dashtest"
)

// controller is an external controller under test (real mihomo, or our
// handler) and what it serves: the conformance check below asks the same
// of both.
type controller struct {
	Base   string // http://host:port
	Secret string
	Group  string // a load-balance group with members that answer
	// DelayURL answers through every member; Blackhole accepts and never
	// answers; Refused has nothing listening.
	DelayURL, Blackhole, Refused string
	// Proxy is the controller's proxy port (mihomo's mixed-port, our
	// gateway) and Target an address to open a tunnel to through it.
	Proxy, Target string
	// Retries repeats a delay test that must pass when it answers 503:
	// real mihomo fails one now and then while its provider's own health
	// check runs (seen twice in make test). Ours gets none.
	Retries int
}

// passingDelay is getJSON(…, 200) for a delay test, repeated up to
// c.Retries times while it fails (not 200, or a delay that is not
// positive: {"delay": n} and a group's {name: n} alike).
func (c *controller) passingDelay(t *testing.T, path string) map[string]any {
	t.Helper()
	for range c.Retries {
		if code, b := c.do(t, "GET", path, nil, true); code == http.StatusOK && allPositive(b) {
			var m map[string]any
			json.Unmarshal(b, &m) // allPositive decoded it
			return m
		}
		time.Sleep(300 * time.Millisecond)
	}
	return c.getJSON(t, "GET", path, nil, 200)
}

func allPositive(b []byte) bool {
	var m map[string]any
	if json.Unmarshal(b, &m) != nil || len(m) == 0 {
		return false
	}
	for _, v := range m {
		if d, ok := v.(float64); !ok || d <= 0 {
			return false
		}
	}
	return true
}

func (c *controller) do(t *testing.T, method, path string, body any, auth bool) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.Base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth && c.Secret != "" {
		req.Header.Set("Authorization", "Bearer "+c.Secret)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// getJSON asks and decodes, failing t unless the status is want.
func (c *controller) getJSON(t *testing.T, method, path string, body any, want int) map[string]any {
	t.Helper()
	code, b := c.do(t, method, path, body, true)
	if code != want {
		t.Fatalf("%s %s: status %d, want %d: %.300s", method, path, code, want, b)
	}
	if want == http.StatusNoContent {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: not a JSON object: %v: %.300s", method, path, err, b)
	}
	return m
}

// field checks that m[key] exists with the JSON kind want ("string",
// "number", "bool", "array", "object") and returns it.
func field(t *testing.T, where string, m map[string]any, key, want string) any {
	t.Helper()
	v, ok := m[key]
	if !ok {
		t.Fatalf("%s: no %q in %s", where, key, brief(m))
	}
	got := "null"
	switch v.(type) {
	case string:
		got = "string"
	case float64:
		got = "number"
	case bool:
		got = "bool"
	case []any:
		got = "array"
	case map[string]any:
		got = "object"
	}
	if got != want {
		t.Fatalf("%s: %q is %s (%v), want %s", where, key, got, v, want)
	}
	return v
}

func brief(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

func wantMessage(t *testing.T, where string, m map[string]any, msg string) {
	t.Helper()
	got := field(t, where, m, "message", "string").(string)
	if msg != "" && got != msg {
		t.Fatalf("%s: message %q, want %q", where, got, msg)
	}
}

// checkProxy is adapter.Proxy's JSON: what metacubexd reads of a proxy.
func checkProxy(t *testing.T, where string, p map[string]any) {
	t.Helper()
	field(t, where, p, "name", "string")
	field(t, where, p, "type", "string")
	field(t, where, p, "udp", "bool")
	field(t, where, p, "alive", "bool")
	field(t, where, p, "extra", "object")
	for i, h := range field(t, where, p, "history", "array").([]any) {
		hm, ok := h.(map[string]any)
		if !ok {
			t.Fatalf("%s: history[%d] is %v, want an object", where, i, h)
		}
		ts := field(t, where+" history", hm, "time", "string").(string)
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Fatalf("%s: history[%d].time %q: %v", where, i, ts, err)
		}
		field(t, where+" history", hm, "delay", "number")
	}
}

// conform checks every endpoint a dashboard uses, as mihomo answers it.
func conform(t *testing.T, c *controller) {
	var members []string
	var proxies map[string]any
	t.Run("version", func(t *testing.T) {
		m := c.getJSON(t, "GET", "/version", nil, 200)
		if v := field(t, "version", m, "version", "string"); v == "" {
			t.Fatal("empty version")
		}
		if meta := field(t, "version", m, "meta", "bool"); meta != true {
			t.Fatal("meta is not true: metacubexd needs a Meta core")
		}
	})
	t.Run("configs", func(t *testing.T) {
		m := c.getJSON(t, "GET", "/configs", nil, 200)
		field(t, "configs", m, "mode", "string")
		field(t, "configs", m, "mixed-port", "number")
		field(t, "configs", m, "allow-lan", "bool")
		field(t, "configs", m, "log-level", "string")
		field(t, "configs", m, "tun", "object")
		c.getJSON(t, "PATCH", "/configs", map[string]any{"log-level": "info"}, 204)
	})
	t.Run("proxies", func(t *testing.T) {
		m := c.getJSON(t, "GET", "/proxies", nil, 200)
		proxies = field(t, "proxies", m, "proxies", "object").(map[string]any)
		global, ok := proxies["GLOBAL"].(map[string]any)
		if !ok {
			t.Fatalf("no GLOBAL among %d proxies", len(proxies))
		}
		if ty := field(t, "GLOBAL", global, "type", "string"); ty != "Selector" {
			t.Fatalf("GLOBAL is %v, want Selector", ty)
		}
		field(t, "GLOBAL", global, "all", "array")
		field(t, "GLOBAL", global, "now", "string")
		g, ok := proxies[c.Group].(map[string]any)
		if !ok {
			t.Fatalf("no group %q among the proxies", c.Group)
		}
		checkProxy(t, "group "+c.Group, g)
		if ty := field(t, c.Group, g, "type", "string"); ty != "LoadBalance" {
			t.Fatalf("group %s is %v, want LoadBalance", c.Group, ty)
		}
		for _, a := range field(t, c.Group, g, "all", "array").([]any) {
			name, _ := a.(string)
			if _, ok := proxies[name]; !ok {
				t.Fatalf("group %s lists %q, which /proxies does not have", c.Group, a)
			}
			members = append(members, name)
		}
		if len(members) < 2 {
			t.Fatalf("group %s lists %d members, want at least 2", c.Group, len(members))
		}
		for name, v := range proxies {
			p, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("proxy %q is %v, want an object", name, v)
			}
			checkProxy(t, "proxy "+name, p)
			if p["name"] != name {
				t.Fatalf("proxy under %q is named %v", name, p["name"])
			}
		}
	})
	if len(members) == 0 {
		t.Fatal("no members to go on with")
	}
	member := members[0]
	esc := url.PathEscape
	t.Run("proxy", func(t *testing.T) {
		p := c.getJSON(t, "GET", "/proxies/"+esc(member), nil, 200)
		checkProxy(t, member, p)
		if p["name"] != member {
			t.Fatalf("GET /proxies/%s named %v", member, p["name"])
		}
		wantMessage(t, "unknown proxy", c.getJSON(t, "GET", "/proxies/no-such-proxy-x", nil, 404), "Resource not found")
	})
	delay := func(name, u string, timeout int) string {
		q := url.Values{"url": {u}}
		if timeout > 0 {
			q.Set("timeout", fmt.Sprint(timeout))
		}
		return "/proxies/" + esc(name) + "/delay?" + q.Encode()
	}
	t.Run("delay", func(t *testing.T) {
		m := c.passingDelay(t, delay(member, c.DelayURL, 5000))
		if d := field(t, "delay", m, "delay", "number").(float64); d <= 0 || d > 5000 {
			t.Fatalf("delay %v ms, want within (0, 5000]", d)
		}
		wantMessage(t, "no timeout", c.getJSON(t, "GET", delay(member, c.DelayURL, 0), nil, 400), "Body invalid")
		wantMessage(t, "blackhole", c.getJSON(t, "GET", delay(member, c.Blackhole, 400), nil, 504), "Timeout")
		wantMessage(t, "refused", c.getJSON(t, "GET", delay(member, c.Refused, 3000), nil, 503), "")
		wantMessage(t, "unknown proxy", c.getJSON(t, "GET", delay("no-such-proxy-x", c.DelayURL, 3000), nil, 404), "Resource not found")
	})
	t.Run("group delay", func(t *testing.T) {
		q := url.Values{"url": {c.DelayURL}, "timeout": {"5000"}}
		m := c.passingDelay(t, "/group/"+esc(c.Group)+"/delay?"+q.Encode())
		if len(m) == 0 {
			t.Fatalf("no member of %s answered the group delay test", c.Group)
		}
		for name, v := range m {
			if _, ok := proxies[name]; !ok {
				t.Fatalf("group delay names %q, not a proxy", name)
			}
			if d, ok := v.(float64); !ok || d <= 0 {
				t.Fatalf("group delay of %s is %v, want a positive number", name, v)
			}
		}
		wantMessage(t, "unknown group", c.getJSON(t, "GET", "/group/no-such-group-x/delay?"+q.Encode(), nil, 404), "Resource not found")
	})
	t.Run("providers", func(t *testing.T) {
		m := c.getJSON(t, "GET", "/providers/proxies", nil, 200)
		for name, v := range field(t, "providers", m, "providers", "object").(map[string]any) {
			p := v.(map[string]any)
			field(t, "provider "+name, p, "name", "string")
			field(t, "provider "+name, p, "type", "string")
			field(t, "provider "+name, p, "vehicleType", "string")
			for _, x := range field(t, "provider "+name, p, "proxies", "array").([]any) {
				checkProxy(t, "provider "+name, x.(map[string]any))
			}
		}
		c.getJSON(t, "GET", "/providers/rules", nil, 200)
		wantMessage(t, "unknown provider", c.getJSON(t, "GET", "/providers/proxies/no-such-provider-x", nil, 404), "Resource not found")
	})
	t.Run("rules", func(t *testing.T) {
		field(t, "rules", c.getJSON(t, "GET", "/rules", nil, 200), "rules", "array")
	})
	t.Run("connections", func(t *testing.T) { c.checkConnections(t, proxies) })
	t.Run("streams", func(t *testing.T) {
		checks := []struct {
			path string
			keys []string
		}{
			{"/traffic", []string{"up", "down"}},
			{"/memory", []string{"inuse", "oslimit"}},
			{"/connections", []string{"downloadTotal", "uploadTotal"}},
		}
		for _, ck := range checks {
			m := c.wsFirst(t, ck.path)
			for _, k := range ck.keys {
				field(t, "ws "+ck.path, m, k, "number")
			}
			if ck.path != "/connections" {
				m = c.plainFirst(t, ck.path)
				for _, k := range ck.keys {
					field(t, "plain "+ck.path, m, k, "number")
				}
			}
		}
		c.wsOpen(t, "/logs?level=info")
		if code, _ := c.do(t, "GET", "/logs?level=nonsense", nil, true); code != 400 {
			t.Fatalf("GET /logs?level=nonsense: %d, want 400", code)
		}
	})
	if c.Secret != "" {
		t.Run("secret", func(t *testing.T) {
			for _, p := range []string{"/version", "/proxies", "/configs", "/connections"} {
				code, b := c.do(t, "GET", p, nil, false)
				if code != 401 {
					t.Fatalf("GET %s without the secret: %d, want 401", p, code)
				}
				var m map[string]any
				json.Unmarshal(b, &m)
				wantMessage(t, p, m, "Unauthorized")
			}
		})
	}
}

// checkConnections opens a tunnel through the proxy port and finds it in
// GET /connections, then closes it with DELETE /connections/{id}.
func (c *controller) checkConnections(t *testing.T, proxies map[string]any) {
	tun, br, err := dashtest.OpenTunnel(c.Proxy, c.Target, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	var id string
	deadline := time.Now().Add(5 * time.Second)
	for id == "" && time.Now().Before(deadline) {
		m := c.getJSON(t, "GET", "/connections", nil, 200)
		field(t, "connections", m, "downloadTotal", "number")
		field(t, "connections", m, "uploadTotal", "number")
		for _, x := range field(t, "connections", m, "connections", "array").([]any) {
			cm := x.(map[string]any)
			md := field(t, "connection", cm, "metadata", "object").(map[string]any)
			_, port, _ := net.SplitHostPort(c.Target)
			if md["destinationPort"] != port {
				continue
			}
			field(t, "connection", cm, "id", "string")
			field(t, "connection", cm, "start", "string")
			field(t, "connection", cm, "upload", "number")
			field(t, "connection", cm, "download", "number")
			chains := field(t, "connection", cm, "chains", "array").([]any)
			if len(chains) == 0 {
				t.Fatalf("connection has no chain: %s", brief(cm))
			}
			if _, ok := proxies[chains[0].(string)]; !ok {
				t.Fatalf("connection's chain starts with %v, not a proxy", chains[0])
			}
			id = cm["id"].(string)
		}
		if id == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if id == "" {
		t.Fatalf("GET /connections never listed the tunnel to %s", c.Target)
	}
	c.getJSON(t, "DELETE", "/connections/"+id, nil, 204)
	tun.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the tunnel still carries bytes after DELETE /connections/{id}")
	}
	c.getJSON(t, "DELETE", "/connections", nil, 204)
}

func (c *controller) wsURL(path string) string {
	u := "ws" + strings.TrimPrefix(c.Base, "http") + path
	if c.Secret != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		u += sep + "token=" + url.QueryEscape(c.Secret)
	}
	return u
}

func (c *controller) wsOpen(t *testing.T, path string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := dashtest.WSDial(ctx, c.wsURL(path))
	if err != nil {
		t.Fatalf("WebSocket %s: %v", path, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// wsFirst reads the first message of a WebSocket stream.
func (c *controller) wsFirst(t *testing.T, path string) map[string]any {
	t.Helper()
	conn := c.wsOpen(t, path)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := wsutil.ReadServerText(conn)
	if err != nil {
		t.Fatalf("WebSocket %s: reading: %v", path, err)
	}
	ws.WriteFrame(conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("WebSocket %s: %v: %.200s", path, err, b)
	}
	return m
}

// plainFirst reads the first line of a plain HTTP stream.
func (c *controller) plainFirst(t *testing.T, path string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", c.Base+path, nil)
	if c.Secret != "" {
		req.Header.Set("Authorization", "Bearer "+c.Secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
	if err != nil {
		t.Fatalf("GET %s: reading the first line: %v", path, err)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("GET %s: %v: %.200s", path, err, line)
	}
	return m
}
