package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/testtool"
)

// tunnelTable is a gateway.Tunnels that keeps what it heard.
type tunnelTable struct {
	mu     sync.Mutex
	open   []gateway.Tunnel
	closed []int64 // up+down of each ended tunnel
}

func (tt *tunnelTable) Opened(t gateway.Tunnel) func(up, down int64) {
	tt.mu.Lock()
	tt.open = append(tt.open, t)
	tt.mu.Unlock()
	return func(up, down int64) {
		tt.mu.Lock()
		tt.closed = append(tt.closed, up+down)
		tt.mu.Unlock()
	}
}

// TestTunnelsReported: a tunnel is reported while it is open, on the
// event loops (SOCKS5 over plain SOCKS5 upstreams) as on the goroutine
// path (HTTP CONNECT), with its target, protocol and upstream, and ends
// with the bytes it carried. Only the goroutine path's can be closed.
func TestTunnelsReported(t *testing.T) {
	echo := testtool.ServeTCP(t, func(c net.Conn) { io.Copy(c, c) })
	tests := []struct {
		proto     string
		open      func(t *testing.T, addr string) net.Conn
		wantClose bool
	}{
		{"socks5", func(t *testing.T, addr string) net.Conn {
			c := dialGW(t, addr)
			c.Write(socks5Msgs(t, echo))
			readReplies(t, c)
			return c
		}, !loopsOn()},
		{"http", func(t *testing.T, addr string) net.Conn {
			c := dialGW(t, addr)
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", echo, echo)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT %s: %v %v", echo, resp, err)
			}
			return c
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.proto, func(t *testing.T) {
			tab := &tunnelTable{}
			w := newWorld(t, worldOpts{spec: fleet.Uniform(2, fleet.SOCKS5, fleet.Good), gw: gateway.Options{Tunnels: tab}})
			c := tt.open(t, w.addr)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "ping\n")
			if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "ping\n" {
				t.Fatalf("echo through the tunnel: %q %v", line, err)
			}
			tab.mu.Lock()
			open := append([]gateway.Tunnel(nil), tab.open...)
			tab.mu.Unlock()
			if len(open) != 1 || open[0].Target != echo || open[0].Proto != tt.proto || open[0].Upstream == "" || open[0].Listener == "" {
				t.Fatalf("reported %+v, want one %s tunnel to %s through an upstream", open, tt.proto, echo)
			}
			if (open[0].Close != nil) != tt.wantClose {
				t.Errorf("Close set: %v, want %v", open[0].Close != nil, tt.wantClose)
			}
			c.Close()
			deadline := time.Now().Add(5 * time.Second)
			for {
				tab.mu.Lock()
				closed := append([]int64(nil), tab.closed...)
				tab.mu.Unlock()
				if len(closed) == 1 {
					if closed[0] < 10 {
						t.Errorf("ended with %d bytes, want the 5 each way at least", closed[0])
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the tunnel's end was not reported (%v)", closed)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
