package dashtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/gobwas/ws"
)

// OpenTunnel opens a CONNECT tunnel to an echo target through proxy and
// proves it carries bytes with one line there and back; limit bounds the
// connection's life.
func OpenTunnel(proxy, target string, limit time.Duration) (net.Conn, *bufio.Reader, error) {
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("dialing the proxy port %s: %w", proxy, err)
	}
	c.SetDeadline(time.Now().Add(limit))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %s", resp.Status)
	}
	if err == nil {
		io.WriteString(c, "ping\n")
		var line string
		if line, err = br.ReadString('\n'); err == nil && line != "ping\n" {
			err = fmt.Errorf("echo came back as %q", line)
		}
	}
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("CONNECT %s through %s: %w", target, proxy, err)
	}
	return c, br, nil
}

// WSDial dials a WebSocket. Bytes the server sent right behind its 101
// (a first frame) may sit in the handshake's reader: reads go through it.
func WSDial(ctx context.Context, u string) (net.Conn, error) {
	conn, br, _, err := ws.Dial(ctx, u)
	if err != nil || br == nil {
		return conn, err
	}
	return &bufferedConn{Conn: conn, r: br}, nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
