package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/api/apitest"
	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/manager"
	"github.com/proxypool/proxypool/internal/manager/managertest"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/store/storetest"
	"github.com/proxypool/proxypool/internal/upstream"
)

// testAPI is the server over the real manager on a real store, with a
// probe loop in miniature that finds every upstream healthy.
type testAPI struct {
	srv  *Server
	ts   *httptest.Server
	m    *manager.Manager
	jobs *Jobs
}

func startAPI(t *testing.T, o Options) *testAPI {
	t.Helper()
	st := storetest.Open(t, store.Options{FlushInterval: 5 * time.Millisecond})
	p := managertest.NewProbe(st, 100, func(_ int, u upstream.Upstream) upstream.CheckResult {
		return upstream.CheckResult{ID: u.ID, OK: true, TotalMS: 10, ExitIP: u.Server, Country: "US"}
	})
	jobs := NewJobs()
	m := manager.New(manager.Options{Store: st, Checker: p, CheckPoll: 10 * time.Millisecond, Emit: jobs.Emit})
	p.Progress = m
	ctx, cancel := context.WithCancel(context.Background())
	go p.Run(ctx)
	o.Manager, o.Jobs = m, jobs
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() { ts.Close(); cancel(); m.Close() })
	return &testAPI{srv: srv, ts: ts, m: m, jobs: jobs}
}

// call sends one request and returns status, headers and body.
func (a *testAPI) call(t *testing.T, method, path string, hdr http.Header, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := a.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func bearer(s string) http.Header { return http.Header{"Authorization": {"Bearer " + s}} }

// TestAuth: with a secret, no path answers without it (ours and the
// fallback's), the 401 is Clash's shape, ?token= counts only on a
// WebSocket upgrade; without a secret every loopback caller gets in.
func TestAuth(t *testing.T) {
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"version":"x"}`) })
	locked := startAPI(t, Options{Secret: "s3cret", Fallback: fallback})
	open := startAPI(t, Options{Fallback: fallback})
	ws := http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}
	tests := []struct {
		name string
		api  *testAPI
		path string
		hdr  http.Header
		want int
	}{
		{"no header", locked, "/api/v1/status", nil, 401},
		{"wrong secret", locked, "/api/v1/status", bearer("s3cre"), 401},
		{"secret as a prefix", locked, "/api/v1/status", bearer("s3cretX"), 401},
		{"not bearer", locked, "/api/v1/status", http.Header{"Authorization": {"Basic czNjcmV0"}}, 401},
		{"right secret", locked, "/api/v1/status", bearer("s3cret"), 200},
		{"fallback without secret", locked, "/version", nil, 401},
		{"fallback with secret", locked, "/version", bearer("s3cret"), 200},
		{"token on a plain GET", locked, "/traffic?token=s3cret", nil, 401},
		{"token on a websocket", locked, "/traffic?token=s3cret", ws, 200},
		{"wrong token on a websocket", locked, "/traffic?token=nope", ws, 401},
		{"unknown path is 401 first", locked, "/api/v1/nope", nil, 401},
		{"open: no header", open, "/api/v1/status", nil, 200},
		{"open: fallback", open, "/version", nil, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := tt.api.call(t, "GET", tt.path, tt.hdr, "")
			if code != tt.want {
				t.Fatalf("GET %s: %d %s, want %d", tt.path, code, body, tt.want)
			}
			if code == 401 && (strings.TrimSpace(body) != `{"message":"Unauthorized"}` || h.Get("Content-Type") != "application/json") {
				t.Errorf("401 body %q (%s), want {\"message\":\"Unauthorized\"} as JSON", body, h.Get("Content-Type"))
			}
		})
	}
	// Without a secret, a name rebound to 127.0.0.1 must not reach in.
	req, _ := http.NewRequest("GET", open.ts.URL+"/api/v1/status", nil)
	req.Host = "evil.example:9090"
	resp, err := open.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("Host evil.example without a secret: %d, want 421", resp.StatusCode)
	}
}

// TestCORS: an allowed origin's preflight is answered with Authorization
// and Private Network Access; another origin is refused, even for a
// "simple" POST that needs no preflight; "*" only when configured.
func TestCORS(t *testing.T) {
	a := startAPI(t, Options{CORSOrigins: []string{"http://127.0.0.1:21080"}})
	star := startAPI(t, Options{CORSOrigins: []string{"*"}, Secret: "k"})
	pre := func(origin string) http.Header {
		return http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"GET"},
			"Access-Control-Request-Headers": {"authorization"}, "Access-Control-Request-Private-Network": {"true"}}
	}
	tests := []struct {
		name, method, path string
		api                *testAPI
		hdr                http.Header
		want               int
		wantAllow          string
	}{
		{"preflight allowed", "OPTIONS", "/proxies", a, pre("http://127.0.0.1:21080"), 204, "http://127.0.0.1:21080"},
		{"preflight other origin", "OPTIONS", "/proxies", a, pre("http://evil.example"), 403, ""},
		{"simple POST other origin", "POST", "/api/v1/import", a, http.Header{"Origin": {"http://evil.example"}, "Content-Type": {"text/plain"}}, 403, ""},
		{"GET allowed origin", "GET", "/api/v1/status", a, http.Header{"Origin": {"http://127.0.0.1:21080"}}, 200, "http://127.0.0.1:21080"},
		{"star preflight without secret", "OPTIONS", "/api/v1/status", star, pre("http://x.example"), 204, "*"},
		{"star GET still needs the secret", "GET", "/api/v1/status", star, http.Header{"Origin": {"http://x.example"}}, 401, "*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := tt.api.call(t, tt.method, tt.path, tt.hdr, "")
			if code != tt.want {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, code, body, tt.want)
			}
			if got := h.Get("Access-Control-Allow-Origin"); got != tt.wantAllow {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, tt.wantAllow)
			}
			if tt.method == "OPTIONS" && code == 204 {
				if !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") || h.Get("Access-Control-Allow-Private-Network") != "true" {
					t.Errorf("preflight headers %v: want Authorization allowed and the private network", h)
				}
			}
		})
	}
}

// TestSecretsOnlyWithTheSecret: an upstream's password is REDACTED for a
// caller without a secret and whole for one presenting it.
func TestSecretsOnlyWithTheSecret(t *testing.T) {
	for _, tt := range []struct {
		name   string
		secret string
		want   string
	}{{"no secret", "", upstream.RedactedValue}, {"secret", "k", "hunter2"}} {
		t.Run(tt.name, func(t *testing.T) {
			a := startAPI(t, Options{Secret: tt.secret})
			code, _, body := a.call(t, "POST", "/api/v1/upstreams", bearer(tt.secret), `{"uri":"socks5://bob:hunter2@127.0.0.9:1080"}`)
			if code != 201 {
				t.Fatalf("add: %d %s", code, body)
			}
			var r AddReply
			json.Unmarshal([]byte(body), &r)
			for _, path := range []string{"/api/v1/upstreams/" + r.ID, "/api/v1/upstreams"} {
				_, _, body := a.call(t, "GET", path, bearer(tt.secret), "")
				if !strings.Contains(body, `"password":"`+tt.want+`"`) || (tt.want != "hunter2" && strings.Contains(body, "hunter2")) {
					t.Errorf("GET %s: %s, want password %q", path, body, tt.want)
				}
			}
		})
	}
}

// TestErrors: bad input is a 400 naming the field, an unknown id a 404, in
// the {"message": …} shape.
func TestErrors(t *testing.T) {
	a := startAPI(t, Options{})
	tests := []struct {
		method, path, body string
		want               int
		wantMsg            string
	}{
		{"GET", "/api/v1/upstreams?min-score=abc", "", 400, "min-score"},
		{"GET", "/api/v1/upstreams?limit=-1", "", 400, "limit"},
		{"GET", "/api/v1/upstreams?state=sleepy", "", 400, "state"},
		{"GET", "/api/v1/upstreams?colour=red", "", 400, "colour: unknown parameter"},
		{"GET", "/api/v1/upstreams/nope", "", 404, "no upstream nope"},
		{"DELETE", "/api/v1/upstreams/nope", "", 404, "no upstream nope"},
		{"POST", "/api/v1/upstreams", `{"uri":""}`, 400, "uri: missing"},
		{"POST", "/api/v1/upstreams", `{"uri":"gopher://x"}`, 400, "invalid argument"},
		{"POST", "/api/v1/upstreams", `{"url":"x"}`, 400, "unknown field"},
		{"POST", "/api/v1/upstreams", `{`, 400, "reading the JSON body"},
		{"POST", "/api/v1/import", `{"url":"file:///etc/passwd"}`, 400, "url:"},
		{"GET", "/api/v1/export?format=xml", "", 400, "format"},
		{"POST", "/api/v1/tor/newnym", `{"port":70000}`, 400, "port"},
		{"GET", "/api/v1/jobs/check-0-0", "", 404, "no job"},
		{"GET", "/api/v1/nope", "", 404, "no such path"},
		{"POST", "/api/v1/refresh", "", 500, "refresh is not available"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			hdr := http.Header{}
			if strings.HasPrefix(tt.body, "{") {
				hdr.Set("Content-Type", "application/json")
			}
			code, _, body := a.call(t, tt.method, tt.path, hdr, tt.body)
			var e errorBody
			if code != tt.want || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Message, tt.wantMsg) {
				t.Errorf("%d %s, want %d with a message containing %q", code, body, tt.want, tt.wantMsg)
			}
		})
	}
}

// TestRoutesDocumented: every route the server registers is in
// docs/api/openapi.yaml, and every documented operation is a route.
func TestRoutesDocumented(t *testing.T) {
	spec, err := apitest.Load("../../docs/api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a := startAPI(t, Options{})
	routes := a.srv.Routes()
	slices.Sort(routes)
	if doc := spec.Operations(); !slices.Equal(routes, doc) {
		t.Errorf("routes and docs/api/openapi.yaml differ:\nserver: %v\ndoc:    %v", routes, doc)
	}
}

// TestClient: control.Manager over HTTP gives what the manager gives, its
// errors match control's sentinels, and a job's progress arrives from
// its first report to its last.
func TestClient(t *testing.T) {
	a := startAPI(t, Options{Secret: "k"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := NewClient(a.ts.URL, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	uri := "ss://YWVzLTI1Ni1nY206cGFzcw==@127.0.0.7:8388#x/y"
	id, created, err := cl.Add(ctx, uri)
	if err != nil || !created {
		t.Fatalf("Add: %q %v %v", id, created, err)
	}
	if _, created, _ := cl.Add(ctx, uri); created {
		t.Errorf("second Add created it again")
	}
	rep, err := cl.Import(ctx, "socks5://127.0.0.8:1080\n# note\nnope://\n")
	if err != nil || rep.OK != 1 || rep.New != 1 || rep.Failed != 1 || rep.Skipped != 1 {
		t.Fatalf("Import: %+v %v", rep, err)
	}
	events, err := cl.WatchProgress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	job, err := cl.Check(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for p := range events {
		if p.Job == job && p.Done >= p.Total {
			break
		}
	}
	if jb, ok := a.jobs.Get(job); !ok || !jb.Ended {
		t.Errorf("job %s after its last event: %+v", job, jb)
	}
	page, err := cl.List(ctx, control.ListQuery{State: upstream.Healthy})
	want, _ := a.m.List(control.WithCaller(ctx, control.Caller{Privileged: true}), control.ListQuery{State: upstream.Healthy})
	if err != nil || page.Total != 2 || len(page.Records) != len(want.Records) || page.Records[0].ID != want.Records[0].ID {
		t.Fatalf("List healthy: %+v %v, want %+v", page, err, want)
	}
	out, err := cl.Export(ctx, control.FormatTXT)
	if err != nil || !strings.Contains(string(out), "127.0.0.8:1080") {
		t.Errorf("Export txt: %q %v", out, err)
	}
	if n, err := cl.Remove(ctx, uri); err != nil || n != 1 { // a URI with "/" and "#" in the path
		t.Errorf("Remove by URI: %d %v", n, err)
	}
	for name, err := range map[string]error{
		"Remove unknown": func() error { _, err := cl.Remove(ctx, id); return err }(),
		"Get unknown":    func() error { _, err := cl.Get(ctx, id); return err }(),
	} {
		if !errors.Is(err, control.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	if _, _, err := cl.Add(ctx, "gopher://x"); !errors.Is(err, control.ErrInvalid) {
		t.Errorf("Add gopher: %v, want ErrInvalid", err)
	}
	bad, _ := NewClient(a.ts.URL, "wrong", nil)
	if _, err := bad.Status(ctx); !errors.Is(err, control.ErrAccessDenied) {
		t.Errorf("wrong secret: %v, want ErrAccessDenied", err)
	}
	gone, _ := NewClient("http://127.86.0.1:21001", "", nil)
	if _, err := gone.Status(ctx); !errors.Is(err, control.ErrNotRunning) {
		t.Errorf("nobody listening: %v, want ErrNotRunning", err)
	}
	if _, err := NewClient("ftp://x", "", nil); !errors.Is(err, control.ErrInvalid) {
		t.Errorf("ftp URL: %v", err)
	}
}

// TestServeLimits: Serve caps request headers (431, not memory) and stops
// when its context ends, open event streams included.
func TestServeLimits(t *testing.T) {
	a := startAPI(t, Options{})
	ln, err := net.Listen("tcp", "127.86.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.srv.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	req, _ := http.NewRequest("GET", base+"/api/v1/status", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 128<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("128 KiB header: %d, want 431", resp.StatusCode)
	}
	stream, err := http.Get(base + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of its context ending")
	}
	if _, err := io.ReadAll(stream.Body); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Logf("stream ended with %v", err)
	}
}
