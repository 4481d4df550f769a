package socks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func startServer(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

func target(t *testing.T) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func TestClientServer(t *testing.T) {
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
		srv     *Server
		cl      Client
		addr    string
		wantErr error
		wantRep byte
	}{
		{"no auth", &Server{}, Client{}, tAddr, nil, 0},
		{"no auth pipelined", &Server{}, Client{Pipeline: true}, tAddr, nil, 0},
		{"user/pass", &Server{Auth: auth, RequireAuth: true}, Client{User: "alice", Password: "secret"}, tAddr, nil, 0},
		{"user/pass pipelined", &Server{Auth: auth, RequireAuth: true}, Client{User: "alice", Password: "secret", Pipeline: true}, tAddr, nil, 0},
		{"wrong password", &Server{Auth: auth, RequireAuth: true}, Client{User: "alice", Password: "x"}, tAddr, ErrAuth, 0},
		{"auth required", &Server{Auth: auth, RequireAuth: true}, Client{}, tAddr, ErrAuth, 0},
		{"refused", &Server{}, Client{}, "127.0.0.1:1", nil, ConnectionRefused},
		{"host name passed through", &Server{Dialer: func(ctx context.Context, n, a string) (net.Conn, error) {
			if a != "target.example:80" {
				return nil, fmt.Errorf("got %q", a)
			}
			var d net.Dialer
			return d.DialContext(ctx, n, tAddr)
		}}, Client{}, "target.example:80", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startServer(t, tt.srv)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			err = tt.cl.Connect(c, tt.addr)
			var re *ReplyError
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

func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	ts := target(t)
	addr := startServer(t, &Server{})
	for _, flag := range []string{"--socks4a", "--socks4", "--socks5-hostname", "--socks5"} {
		t.Run(flag, func(t *testing.T) {
			out, err := exec.Command(curl, "-sS", "--max-time", "5", flag, addr, ts.URL+"/c").CombinedOutput()
			if err != nil || string(out) != "hello /c" {
				t.Fatalf("curl %s: %v: %s", flag, err, out)
			}
		})
	}
}

func TestMalformedInputIsAnErrorNotAPanic(t *testing.T) {
	inputs := []string{"", "\x05", "\x05\x01", "\x05\x01\x00\x05\x01\x00\x09", "\x04\x01\x00", "\x06", "\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50"}
	for _, in := range inputs {
		_, err := ServerHandshake(bufio.NewReader(strings.NewReader(in)), io.Discard, nil, false)
		if err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func FuzzServerHandshake(f *testing.F) {
	f.Add([]byte("\x05\x01\x00\x05\x01\x00\x03\x04host\x00\x50"))
	f.Add([]byte("\x04\x01\x00\x50\x00\x00\x00\x01user\x00host\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ServerHandshake(bufio.NewReader(strings.NewReader(string(b))), io.Discard, nil, false)
	})
}
