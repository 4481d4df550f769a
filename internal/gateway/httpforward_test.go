package gateway_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/gateway"
)

// origin is a real HTTP server on loopback that answers what it received:
// /headers the header names, /sum the body's length and sha256, /slow a
// stream of n chunks one every gap, /upgrade an echo protocol after 101.
func origin(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/headers":
			var names []string
			for k := range r.Header {
				names = append(names, k)
			}
			sort.Strings(names)
			io.WriteString(rw, strings.Join(names, ","))
		case "/sum":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(rw, err.Error(), 500)
				return
			}
			fmt.Fprintf(rw, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
		case "/slow":
			fl := rw.(http.Flusher)
			for i := 0; i < 12; i++ {
				fmt.Fprintf(rw, "chunk %02d\n", i)
				fl.Flush()
				time.Sleep(100 * time.Millisecond)
			}
		case "/upgrade":
			if r.Header.Get("Upgrade") != "echo" || !strings.EqualFold(r.Header.Get("Connection"), "upgrade") {
				http.Error(rw, "no upgrade asked: Connection="+r.Header.Get("Connection"), 400)
				return
			}
			c, brw, err := rw.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			// the first frame rides with the 101, as WebSocket servers do
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello\n")
			brw.Flush()
			for {
				line, err := brw.ReadString('\n')
				if err != nil {
					return
				}
				brw.WriteString("echo " + line)
				brw.Flush()
			}
		case "/early":
			// answers before the body, as an origin refusing an upload does
			http.Error(rw, "too large", http.StatusRequestEntityTooLarge)
		case "/bad101":
			c, brw, err := rw.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n\r\n")
			brw.Flush()
		default:
			http.NotFound(rw, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// rawRequest sends head (and body) to the gateway as a client that writes
// its own bytes would, and returns the conn and a reader on it.
func rawRequest(t *testing.T, gw, head string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", gw, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

func TestHTTPForwardAddsNoHeader(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(2, fleet.SOCKS5, fleet.Good)})
	o := origin(t)
	host := strings.TrimPrefix(o.URL, "http://")
	tests := []struct {
		name, extra, want string
	}{
		{"bare GET", "", "Connection"},
		{"client headers pass, proxy ones do not", "Accept: */*\r\nX-Mine: 1\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\n", "Accept,Connection,X-Mine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, br := rawRequest(t, w.addr, "GET "+o.URL+"/headers HTTP/1.1\r\nHost: "+host+"\r\n"+tt.extra+"\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if string(b) != tt.want {
				t.Fatalf("origin saw headers %q, want %q (a header the client did not send is a fingerprint)", b, tt.want)
			}
		})
	}
}

func TestHTTPForwardExpectContinue(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(2, fleet.SOCKS5, fleet.Good)})
	o := origin(t)
	// curl sends Expect: 100-continue for bodies over 1 MB and waits for
	// the 100 (1 s) before the body
	body := make([]byte, 3<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	f := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(f, body, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	want := fmt.Sprintf("%d %s", len(body), hex.EncodeToString(sum[:]))
	for _, args := range [][]string{
		{"-x", "http://" + w.addr, "--data-binary", "@" + f, o.URL + "/sum"},
		{"-x", "http://" + w.addr, "-H", "Transfer-Encoding: chunked", "--data-binary", "@" + f, o.URL + "/sum"},
	} {
		got, err := curl(t, args...)
		if err != nil || got != want {
			t.Fatalf("curl %v: %v: got %q, want %q", args[2:len(args)-1], err, got, want)
		}
	}
	// the interim response reaches the client before the body is sent
	c, br := rawRequest(t, w.addr, fmt.Sprintf("POST %s/sum HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", o.URL))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 100 {
		t.Fatalf("first response %v %v, want 100 Continue", resp, err)
	}
	io.WriteString(c, "hello")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if sum := sha256.Sum256([]byte("hello")); string(b) != "5 "+hex.EncodeToString(sum[:]) {
		t.Fatalf("final response %d %q", resp.StatusCode, b)
	}
}

func TestHTTPForwardUpgrade(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(2, fleet.SOCKS5, fleet.Good)})
	o := origin(t)
	c, br := rawRequest(t, w.addr, "GET "+o.URL+"/upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "echo" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("got %s %v %q, want 101 with Upgrade: echo", resp.Status, resp.Header, b)
	}
	for _, want := range []string{"hello\n", "echo ping\n", "echo pong\n"} {
		if want != "hello\n" {
			io.WriteString(c, strings.TrimPrefix(want, "echo "))
		}
		line, err := br.ReadString('\n')
		if err != nil || line != want {
			t.Fatalf("after 101: %q %v, want %q", line, err, want)
		}
	}
}

// A response that keeps moving must outlive the idle timeout, on every
// path; the timeout is for silence.
func TestStreamingOutlivesIdleTimeout(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(2, fleet.SOCKS5, fleet.Good), gw: gateway.Options{IdleTimeout: 400 * time.Millisecond}})
	o := origin(t)
	var want strings.Builder
	for i := 0; i < 12; i++ {
		fmt.Fprintf(&want, "chunk %02d\n", i)
	}
	for _, args := range [][]string{
		{"-x", "http://" + w.addr},
		{"-p", "-x", "http://" + w.addr},
		{"-x", "socks5h://" + w.addr},
	} {
		got, err := curl(t, append(args, o.URL+"/slow")...)
		if err != nil || got+"\n" != want.String() {
			t.Fatalf("curl %v: %v: got %q (1.2 s of stream, idle timeout 0.4 s)", args, err, got)
		}
	}
}

// An origin that misbehaves or answers early gets the client a clear
// answer and a closed connection, never a hang.
func TestHTTPForwardOriginAnswersOddly(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(2, fleet.SOCKS5, fleet.Good)})
	o := origin(t)
	tests := []struct {
		name, head string
		status     int
	}{
		// the client announced 10 MB and sent none of it
		{"final answer before the body", "POST " + o.URL + "/early HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n", http.StatusRequestEntityTooLarge},
		{"101 to a request without Upgrade", "GET " + o.URL + "/bad101 HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, br := rawRequest(t, w.addr, tt.head)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, resp.Header.Get("Proxy-Status"), tt.status)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("after the answer: %v, want the gateway to close the connection", err)
			}
		})
	}
}
