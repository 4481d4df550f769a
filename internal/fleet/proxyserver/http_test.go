package proxyserver

import (
	"bufio"
	"crypto/tls"
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
)

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
	curl := lookCurl(t)
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
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
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
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
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
