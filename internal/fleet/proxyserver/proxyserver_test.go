package proxyserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/socks"
	"github.com/proxypool/proxypool/internal/testtool"
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

// dialT connects to addr with a deadline that ends a stuck test; the
// connection closes when the test does.
func dialT(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
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
			c := dialT(t, addr)
			err := tt.cl.Connect(c, tt.addr)
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
	curl := testtool.Need(t, "curl", "apt-get install -y curl")
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

func handler(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Proxy-Authorization") != "" || r.Header.Get("Proxy-Connection") != "" {
		http.Error(w, "proxy header leaked", 500)
		return
	}
	fmt.Fprintf(w, "hello %s", r.URL.Path)
}

func TestHTTPGoClient(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(handler))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(handler))
	defer tlsSrv.Close()
	addr := start(t, &HTTP{})
	pu, _ := url.Parse("http://" + addr)
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy:           http.ProxyURL(pu),
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	defer cl.CloseIdleConnections()
	for _, u := range []string{plain.URL + "/a", plain.URL + "/b", tlsSrv.URL + "/c"} {
		resp, err := cl.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "hello " + u[strings.LastIndex(u, "/"):]; string(b) != want {
			t.Fatalf("%s: %q, want %q", u, b, want)
		}
	}
}

func TestHTTPCurl(t *testing.T) {
	curl := testtool.Need(t, "curl", "apt-get install -y curl")
	plain := httptest.NewServer(http.HandlerFunc(handler))
	defer plain.Close()
	addr := start(t, &HTTP{})
	for _, args := range [][]string{{"-x", "http://" + addr}, {"-p", "-x", "http://" + addr}} {
		out, err := exec.Command(curl, append([]string{"-sS", "--max-time", "5"}, append(args, plain.URL+"/x")...)...).CombinedOutput()
		if err != nil || string(out) != "hello /x" {
			t.Fatalf("curl %v: %v: %s", args, err, out)
		}
	}
}

func TestHTTPErrors(t *testing.T) {
	addr := start(t, &HTTP{})
	tests := []struct {
		name, req  string
		wantStatus int
		wantPS     string
	}{
		{"origin form", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "http_request_error"},
		{"huge header", "GET http://x/ HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 70000) + "\r\n\r\n", 431, "http_request_error"},
		{"refused", "CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n", 502, "connection_refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialT(t, addr)
			go io.WriteString(c, tt.req)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus || !strings.Contains(resp.Header.Get("Proxy-Status"), "error="+tt.wantPS) {
				t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Proxy-Status"))
			}
		})
	}
}

// The fleet's HTTP proxies forward with the same Forward as the gateway:
// what a client sends is what the origin sees, interim responses pass, an
// Upgrade becomes a tunnel.
func TestHTTPForwardsAsTheClientWrote(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upgrade":
			c, brw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			line, _ := brw.ReadString('\n')
			brw.WriteString("echo " + line)
			brw.Flush()
		default:
			b, _ := io.ReadAll(r.Body)
			var names []string
			for k := range r.Header {
				names = append(names, k)
			}
			sort.Strings(names)
			fmt.Fprintf(w, "%s %s", strings.Join(names, ","), b)
		}
	}))
	defer origin.Close()
	addr := start(t, &HTTP{})
	tests := []struct {
		name, head, send string
		statuses         []int  // responses in order, interim ones first
		want             string // the final body, or the echo after 101
	}{
		{"no header added", "GET " + origin.URL + "/ HTTP/1.1\r\nHost: x\r\n\r\n", "",
			[]int{200}, "Connection "},
		{"expect: 100 first, then the answer", "POST " + origin.URL + "/ HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n", "hi",
			[]int{100, 200}, "Connection,Content-Length,Expect hi"},
		{"upgrade", "GET " + origin.URL + "/upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", "ping\n",
			[]int{101}, "echo ping\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialT(t, addr)
			io.WriteString(c, tt.head)
			br := bufio.NewReader(c)
			var got string
			for i, want := range tt.statuses {
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != want {
					t.Fatalf("response %d: %v %v, want %d", i, resp, err, want)
				}
				if want < 200 && tt.send != "" {
					io.WriteString(c, tt.send)
				}
				if want == 101 {
					got, err = br.ReadString('\n')
				} else if want >= 200 {
					b, _ := io.ReadAll(resp.Body)
					got = string(b)
				}
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
