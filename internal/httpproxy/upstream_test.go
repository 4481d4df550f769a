package httpproxy

import (
	"bufio"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// nextProxy is the next proxy: a real listener that records the head of
// one request (nil if it could not read one) and answers it with answer.
// up is the gateway's connection to it.
func nextProxy(t *testing.T, answer string) (up net.Conn, got <-chan *http.Request) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	heads := make(chan *http.Request, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		req, err := http.ReadRequest(bufio.NewReader(conn))
		if err != nil {
			heads <- nil
			return
		}
		heads <- req
		io.WriteString(conn, answer)
	}()
	up, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	return up, heads
}

// TestForwardToUpstreamProxy: with Exchange.Proxy the request reaches the
// next proxy in absolute form (no userinfo), carrying that proxy's
// credentials and not the client's, and its answer reaches the client.
func TestForwardToUpstreamProxy(t *testing.T) {
	cases := []struct {
		name     string
		proxy    *UpstreamProxy
		wantAuth string
	}{
		{"with credentials", &UpstreamProxy{User: "up", Pass: "s3cret"}, "Basic " + base64.StdEncoding.EncodeToString([]byte("up:s3cret"))},
		{"without", &UpstreamProxy{}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up, got := nextProxy(t, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
			client, us := net.Pipe()
			defer client.Close()
			raw := "GET http://user:pw@origin.test:8080/p?q=1 HTTP/1.1\r\nHost: origin.test:8080\r\n" +
				"Proxy-Authorization: Basic Y2xpZW50OmdhdGV3YXk=\r\nX-Keep: yes\r\n\r\n"
			req, _, err := ReadRequest(bufio.NewReader(strings.NewReader(raw)))
			if err != nil {
				t.Fatal(err)
			}
			answer := make(chan string, 1)
			go func() {
				b, _ := io.ReadAll(client)
				answer <- string(b)
			}()
			res, err := Forward(req, Exchange{Client: us, ClientBr: bufio.NewReader(us), Up: up,
				UpBr: bufio.NewReader(nil), Idle: 5 * time.Second, Proxy: c.proxy})
			us.Close()
			if err != nil || !res.Started {
				t.Fatalf("Forward: %+v, %v", res, err)
			}
			r := <-got
			if r == nil {
				t.Fatal("the next proxy could not read the request")
			}
			if r.RequestURI != "http://origin.test:8080/p?q=1" {
				t.Errorf("request-target %q, want the absolute URI without userinfo", r.RequestURI)
			}
			if a := r.Header.Get("Proxy-Authorization"); a != c.wantAuth {
				t.Errorf("Proxy-Authorization %q, want %q (the upstream's, never the client's)", a, c.wantAuth)
			}
			if r.Host != "origin.test:8080" || r.Header.Get("X-Keep") != "yes" {
				t.Errorf("host %q, headers %v", r.Host, r.Header)
			}
			if a := <-answer; !strings.HasPrefix(a, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(a, "hello") {
				t.Errorf("client got %q", a)
			}
		})
	}
}

// TestUpstreamProxy407IsAnError: an upstream proxy's 407 is not relayed
// (the client would take it for the gateway's own challenge): Forward
// fails before any byte reached the client, so the gateway answers 502.
func TestUpstreamProxy407IsAnError(t *testing.T) {
	up, _ := nextProxy(t, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n")
	client, us := net.Pipe()
	defer client.Close()
	defer us.Close()
	req, _, err := ReadRequest(bufio.NewReader(strings.NewReader("GET http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\n\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Forward(req, Exchange{Client: us, ClientBr: bufio.NewReader(us), Up: up, UpBr: bufio.NewReader(nil),
		Idle: 5 * time.Second, Proxy: &UpstreamProxy{User: "old", Pass: "creds"}})
	if !errors.Is(err, errUpstreamAuth) || res.Started {
		t.Fatalf("Forward = %+v, %v; want %v before anything reached the client", res, err, errUpstreamAuth)
	}
}
