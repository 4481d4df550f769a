package proxyserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/socks"
)

// start serves srv on a fresh loopback port until the test ends.
func start(t *testing.T, srv interface {
	Serve(context.Context, net.Listener) error
}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// lookCurl finds curl; without it the test skips, except in CI
// (CI=true), where a missing tool is a failure.
func lookCurl(t *testing.T) string {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("curl not installed: %v", err)
		}
		t.Skip("curl not installed")
	}
	return curl
}

func target(t *testing.T) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func TestSOCKSClientServer(t *testing.T) {
	ts := target(t)
	tAddr := strings.TrimPrefix(ts.URL, "http://")
	auth := func(u, p string) error {
		if u == "alice" && p == "secret" {
			return nil
		}
		return errors.New("bad password")
	}
	tests := []struct {
		name    string
		srv     *SOCKS
		cl      socks.Client
		addr    string
		wantErr error
		wantRep byte
	}{
		{"no auth", &SOCKS{}, socks.Client{}, tAddr, nil, 0},
		{"no auth pipelined", &SOCKS{}, socks.Client{Pipeline: true}, tAddr, nil, 0},
		{"user/pass", &SOCKS{Auth: auth, RequireAuth: true}, socks.Client{User: "alice", Password: "secret"}, tAddr, nil, 0},
		{"user/pass pipelined", &SOCKS{Auth: auth, RequireAuth: true}, socks.Client{User: "alice", Password: "secret", Pipeline: true}, tAddr, nil, 0},
		{"wrong password", &SOCKS{Auth: auth, RequireAuth: true}, socks.Client{User: "alice", Password: "x"}, tAddr, socks.ErrAuth, 0},
		{"auth required", &SOCKS{Auth: auth, RequireAuth: true}, socks.Client{}, tAddr, socks.ErrAuth, 0},
		{"refused", &SOCKS{}, socks.Client{}, "127.0.0.1:1", nil, socks.ConnectionRefused},
		{"host name passed through", &SOCKS{Dialer: func(ctx context.Context, n, a string) (net.Conn, error) {
			if a != "target.example:80" {
				return nil, fmt.Errorf("got %q", a)
			}
			var d net.Dialer
			return d.DialContext(ctx, n, tAddr)
		}}, socks.Client{}, "target.example:80", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := start(t, tt.srv)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			err = tt.cl.Connect(c, tt.addr)
			var re *socks.ReplyError
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err %v, want %v", err, tt.wantErr)
				}
				return
			case tt.wantRep != 0:
				if !errors.As(err, &re) || re.Code != tt.wantRep {
					t.Fatalf("err %v, want reply %d", err, tt.wantRep)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			io.WriteString(c, "GET /x HTTP/1.0\r\nHost: t\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != "hello /x" {
				t.Fatalf("body %q", body)
			}
		})
	}
}

func TestSOCKSCurl(t *testing.T) {
	curl := lookCurl(t)
	ts := target(t)
	addr := start(t, &SOCKS{})
	for _, flag := range []string{"--socks4a", "--socks4", "--socks5-hostname", "--socks5"} {
		t.Run(flag, func(t *testing.T) {
			out, err := exec.Command(curl, "-sS", "--max-time", "5", flag, addr, ts.URL+"/c").CombinedOutput()
			if err != nil || string(out) != "hello /c" {
				t.Fatalf("curl %s: %v: %s", flag, err, out)
			}
		})
	}
}
