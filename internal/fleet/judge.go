package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Judge is an echo server in httpbin's shape, on loopback:
//
//	/ip      {"origin":"<client ip>"}
//	/headers {"headers":{"Name":"value",…}}
//	/get     {"origin":…,"headers":…,"url":…}
//	/plain   "<client ip>\n" (icanhazip's shape)
//
// Any other path answers 200 "ok\n", so it also serves as a plain target.
type Judge struct {
	URL  string // base, "http://127.0.0.1:port"
	Addr string // host:port

	srv      *http.Server
	requests atomic.Int64
}

// StartJudge serves a judge on addr ("" or ":0" ports pick a free port);
// it stops when ctx ends or on Close.
func StartJudge(ctx context.Context, addr string) (*Judge, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("judge: listening on %s: %w", addr, err)
	}
	j := &Judge{Addr: ln.Addr().String(), URL: "http://" + ln.Addr().String()}
	j.srv = &http.Server{Handler: j, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second}
	go j.srv.Serve(ln)
	context.AfterFunc(ctx, func() { j.srv.Close() })
	return j, nil
}

// StartJudgeT starts a judge on 127.0.0.1 for a test and closes it at cleanup.
func StartJudgeT(t testing.TB) *Judge {
	t.Helper()
	j, err := StartJudge(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// Requests is how many requests the judge has answered.
func (j *Judge) Requests() int64 { return j.requests.Load() }

// Close stops the judge.
func (j *Judge) Close() error { return j.srv.Close() }

func (j *Judge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	j.requests.Add(1)
	origin, _, _ := net.SplitHostPort(r.RemoteAddr)
	headers := map[string]string{"Host": r.Host}
	for k, v := range r.Header {
		headers[k] = strings.Join(v, ",")
	}
	var body any
	switch r.URL.Path {
	case "/ip":
		body = map[string]string{"origin": origin}
	case "/headers":
		body = map[string]any{"headers": headers}
	case "/get":
		body = map[string]any{"origin": origin, "headers": headers, "url": "http://" + r.Host + r.URL.RequestURI()}
	case "/plain":
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, origin)
		return
	default:
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(body)
}
