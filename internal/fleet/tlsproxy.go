package fleet

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TLSConnect is an HTTP CONNECT proxy behind TLS whose certificate (valid
// for its listen IP and "proxy.fleet.test") is signed by nobody: the
// https:// upstream of a free list, which a client reaches only when the
// link says allowInsecure=1. It dials targets from its listen IP, so a
// judge sees it as the exit.
type TLSConnect struct {
	ln   net.Listener
	exit net.IP
	cfg  *tls.Config

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// TLSConnectName is the DNS name in a TLSConnect's certificate.
const TLSConnectName = "proxy.fleet.test"

// StartTLSConnect listens on listen ("127.63.0.1:0") and serves until Close.
func StartTLSConnect(ctx context.Context, listen string) (*TLSConnect, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("tls connect proxy: bad listen address %q: %w", listen, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("tls connect proxy: %q is not a loopback IP", host)
	}
	_, _, cert, err := selfSignedFor(TLSConnectName, []net.IP{ip})
	if err != nil {
		return nil, fmt.Errorf("tls connect proxy: %w", err)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("tls connect proxy: %w", err)
	}
	p := &TLSConnect{ln: ln, exit: ip, cfg: &tls.Config{Certificates: []tls.Certificate{cert}}, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// StartTLSConnectT is StartTLSConnect for tests: it fails t on error and
// closes the proxy in t.Cleanup.
func StartTLSConnectT(t testing.TB, listen string) *TLSConnect {
	t.Helper()
	p, err := StartTLSConnect(context.Background(), listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Addr is the proxy's host:port.
func (p *TLSConnect) Addr() string { return p.ln.Addr().String() }

// Close stops the proxy and every tunnel, and waits for them.
func (p *TLSConnect) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *TLSConnect) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *TLSConnect) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *TLSConnect) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.serve(c)
		}()
	}
}

// serve runs one client: TLS handshake (a client that rejects the
// certificate ends it here), one CONNECT, then a relay.
func (p *TLSConnect) serve(raw net.Conn) {
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	c := tls.Server(raw, p.cfg)
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: p.exit}, Timeout: 5 * time.Second}
	up, err := d.Dial("tcp", req.Host)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	raw.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(up, br) // bytes the client sent after the request, then the rest
		if tc, ok := up.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	io.Copy(c, up)
	c.CloseWrite()
	<-done
}
