package fleet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// garbageReply is what Garbage members answer: neither SOCKS nor HTTP nor TLS.
var garbageReply = []byte("\x15\x03garbage from fleet\x00\xff\r\n\r\n")

const handshakeTimeout = 10 * time.Second

// serve handles one accepted connection according to the member's
// behaviour and kind.
func (m *Member) serve(c net.Conn) {
	b := m.Behavior()
	switch b {
	case Refuse: // accepted in the instant before the listener closed
		return
	case Blackhole:
		_, _ = io.Copy(io.Discard, c)
		return
	case Reset, Garbage:
		_ = c.SetReadDeadline(time.Now().Add(handshakeTimeout))
		buf := make([]byte, 512)
		if _, err := c.Read(buf); err != nil {
			return
		}
		if b == Garbage {
			_, _ = c.Write(garbageReply)
			return
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // Close sends RST
		}
		return
	}
	switch m.Spec.Kind {
	case SOCKS5:
		m.serveSOCKS5(c)
	case SOCKS4:
		m.serveSOCKS4(c)
	case HTTP:
		m.serveHTTP(c)
	case SS, VMess, Trojan:
		if m.f.sleep(m.Spec.Latency) {
			m.f.sealed.serve(m, c)
		}
	}
}

// dialExit connects to target from the member's exit address; the conn is
// tracked so Close ends it.
func (m *Member) dialExit(ctx context.Context, target string) (net.Conn, error) {
	d := &m.exit
	if host, _, _ := net.SplitHostPort(target); m.Spec.IPv6 && strings.Contains(host, ":") {
		d = &net.Dialer{Timeout: m.exit.Timeout}
	}
	out, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, err
	}
	if !m.f.track(out) {
		out.Close()
		return nil, net.ErrClosed
	}
	return out, nil
}

// relay copies both ways until either side ends. r is the client side's
// reader (it may hold buffered bytes). Transparent and Anonymous members
// rewrite HTTP requests flowing from the client.
func (m *Member) relay(c net.Conn, r io.Reader, out net.Conn) {
	defer m.f.untrack(out)
	defer out.Close()
	if m.breakStream(c, r) {
		return
	}
	_ = c.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if b := m.Behavior(); b.rewrites() {
			m.rewriteRequests(c, r, out, b)
		} else {
			copyPlain(out, r)
		}
		if tc, ok := out.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	switch {
	case m.Behavior() == BodyInject:
		injectResponses(c, out)
	case m.Spec.Rate > 0:
		copyRate(c, out, m.Spec.Rate)
	default:
		copyPlain(c, out)
	}
	c.Close()
	out.Close()
	<-done
}

// breakStream does what a Break behaviour does once the handshake is
// done; false for every other behaviour.
func (m *Member) breakStream(c net.Conn, r io.Reader) bool {
	switch m.Behavior() {
	case BreakClose:
		c.Close()
	case BreakReset:
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // Close sends RST
		}
		c.Close()
	case BreakGarbage:
		_ = c.SetReadDeadline(time.Now().Add(handshakeTimeout))
		var buf [512]byte
		if _, err := r.Read(buf[:]); err == nil {
			_, _ = c.Write(garbageReply)
		}
		c.Close()
	default:
		return false
	}
	return true
}

// copyRate is copyPlain held to rate bytes/s: after each read it sleeps
// until the bytes sent so far are due.
func copyRate(dst io.Writer, src io.Reader, rate int64) {
	buf := make([]byte, min(8<<10, max(rate/20, 512))) // ~20 writes a second
	start, sent := time.Now(), int64(0)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			sent += int64(n)
			if due := start.Add(time.Duration(sent * int64(time.Second) / rate)); time.Until(due) > 0 {
				time.Sleep(time.Until(due))
			}
		}
		if err != nil {
			return
		}
	}
}

// copyPlain copies src to dst with read and write through one 8 KiB
// buffer. io.Copy between TCP conns splices through a pipe pair per
// direction instead: four more fds a tunnel, so a fleet holding 10,000
// tunnels would need 60,000.
func copyPlain(dst io.Writer, src io.Reader) {
	buf := make([]byte, 8<<10)
	_, _ = io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf)
}

// rewriteRequests passes HTTP requests from r to out with proxy headers
// added; anything that is not HTTP is copied as is.
func (m *Member) rewriteRequests(c net.Conn, r io.Reader, out io.Writer, b Behavior) {
	br := bufio.NewReader(r)
	first, err := br.Peek(1)
	if err != nil {
		return
	}
	if first[0] < 'A' || first[0] > 'Z' {
		copyPlain(out, br)
		return
	}
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if b == FakeEcho {
			// the exit is never asked: the answer comes from here
			err = fakeEcho(req).Write(c)
		} else {
			m.addProxyHeaders(req, c, b)
			err = req.Write(out)
		}
		req.Body.Close()
		if err != nil {
			return
		}
	}
}

// fakeEcho is a FakeEcho member's answer to req: what a judge would say,
// made up, without the headers it cannot guess.
func fakeEcho(req *http.Request) *http.Response {
	body := fmt.Sprintf(`{"origin":%q,"headers":{"Host":%q,"User-Agent":%q}}`, FakeEchoIP, req.Host, req.UserAgent())
	return &http.Response{StatusCode: http.StatusOK, ProtoMajor: 1, ProtoMinor: 1, Request: req,
		Header:        http.Header{"Content-Type": {"application/json"}},
		ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body))}
}

// injectedScript is what BodyInject members append to every body.
const injectedScript = `<script src="http://ads.fleet.test/x.js"></script>`

// injectResponses copies HTTP responses from out to c with injectedScript
// appended to each body; anything that is not HTTP is copied as is.
func injectResponses(c io.Writer, out io.Reader) {
	br := bufio.NewReader(out)
	if first, err := br.Peek(5); err != nil || string(first) != "HTTP/" {
		copyPlain(c, br)
		return
	}
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return
		}
		inject(resp)
		err = resp.Write(c)
		resp.Body.Close()
		if err != nil {
			return
		}
	}
}

// inject appends injectedScript to resp's body (read whole: a judge's
// answer is small).
func inject(resp *http.Response) {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	b = append(b, injectedScript...)
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	resp.TransferEncoding = nil
	resp.Header.Del("Content-Length")
}

func (m *Member) addProxyHeaders(req *http.Request, c net.Conn, b Behavior) {
	switch b {
	case NonceRewrite:
		if v := req.Header.Get("X-Proxypool-Nonce"); v != "" {
			req.Header.Set("X-Proxypool-Nonce", "rewritten-"+v)
		}
		return
	case BodyInject:
		return
	}
	req.Header.Add("Via", "1.1 fleet-"+strconv.Itoa(m.Index))
	if b == Transparent {
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		req.Header.Add("X-Forwarded-For", host)
	}
}

func (m *Member) handshakeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), handshakeTimeout)
}

// serveSOCKS5: no-auth or username/password, CONNECT to IPv4, IPv6 or a
// domain name (resolved here, socks5h).
func (m *Member) serveSOCKS5(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	br := bufio.NewReader(c)
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil || hdr[0] != 5 {
		return
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return
	}
	if !m.f.sleep(m.Spec.Latency) {
		return
	}
	want := byte(0)
	if m.Spec.Username != "" {
		want = 2
	}
	if !containsByte(methods, want) {
		_, _ = c.Write([]byte{5, 0xff})
		return
	}
	if _, err := c.Write([]byte{5, want}); err != nil {
		return
	}
	if want == 2 {
		var v [2]byte
		if _, err := io.ReadFull(br, v[:]); err != nil {
			return
		}
		user := make([]byte, v[1])
		if _, err := io.ReadFull(br, user); err != nil {
			return
		}
		if _, err := io.ReadFull(br, v[:1]); err != nil {
			return
		}
		pass := make([]byte, v[0])
		if _, err := io.ReadFull(br, pass); err != nil {
			return
		}
		if string(user) != m.Spec.Username || string(pass) != m.Spec.Password {
			_, _ = c.Write([]byte{1, 1})
			return
		}
		if _, err := c.Write([]byte{1, 0}); err != nil {
			return
		}
	}
	var req [4]byte
	if _, err := io.ReadFull(br, req[:]); err != nil || req[0] != 5 {
		return
	}
	var host string
	switch req[3] {
	case 1, 4:
		ip := make([]byte, 4)
		if req[3] == 4 {
			ip = make([]byte, 16)
		}
		if _, err := io.ReadFull(br, ip); err != nil {
			return
		}
		host = net.IP(ip).String()
	case 3:
		n, err := br.ReadByte()
		if err != nil {
			return
		}
		name := make([]byte, n)
		if _, err := io.ReadFull(br, name); err != nil {
			return
		}
		host = string(name)
	default:
		_, _ = c.Write([]byte{5, 8, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	var pb [2]byte
	if _, err := io.ReadFull(br, pb[:]); err != nil {
		return
	}
	if req[1] != 1 {
		_, _ = c.Write([]byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	target := net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(pb[:]))))
	ctx, cancel := m.handshakeCtx()
	out, err := m.dialExit(ctx, target)
	cancel()
	if err != nil {
		code := byte(5)
		if _, ok := err.(*net.DNSError); ok || isTimeout(err) {
			code = 4
		}
		_, _ = c.Write([]byte{5, code, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	la := out.LocalAddr().(*net.TCPAddr)
	rep := []byte{5, 0, 0, 1}
	if v4 := la.IP.To4(); v4 != nil {
		rep = append(rep, v4...)
	} else {
		rep[3] = 4 // an IPv6 exit's bound address
		rep = append(rep, la.IP.To16()...)
	}
	rep = binary.BigEndian.AppendUint16(rep, uint16(la.Port))
	if _, err := c.Write(rep); err != nil {
		m.f.untrack(out)
		out.Close()
		return
	}
	m.relay(c, br, out)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func containsByte(b []byte, x byte) bool {
	for _, y := range b {
		if y == x {
			return true
		}
	}
	return false
}

// serveSOCKS4: SOCKS4 and 4a CONNECT; a set Username must match the user id.
func (m *Member) serveSOCKS4(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	br := bufio.NewReader(c)
	var req [8]byte
	if _, err := io.ReadFull(br, req[:]); err != nil || req[0] != 4 {
		return
	}
	user, err := br.ReadString(0)
	if err != nil {
		return
	}
	user = strings.TrimSuffix(user, "\x00")
	host := net.IP(req[4:8]).String()
	if req[4] == 0 && req[5] == 0 && req[6] == 0 && req[7] != 0 { // 4a
		name, err := br.ReadString(0)
		if err != nil {
			return
		}
		host = strings.TrimSuffix(name, "\x00")
	}
	if !m.f.sleep(m.Spec.Latency) {
		return
	}
	reply := func(code byte) error {
		_, err := c.Write([]byte{0, code, 0, 0, 0, 0, 0, 0})
		return err
	}
	if m.Spec.Username != "" && user != m.Spec.Username {
		_ = reply(93)
		return
	}
	if req[1] != 1 {
		_ = reply(91)
		return
	}
	ctx, cancel := m.handshakeCtx()
	out, err := m.dialExit(ctx, net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(req[2:4])))))
	cancel()
	if err != nil {
		_ = reply(91)
		return
	}
	if err := reply(90); err != nil {
		m.f.untrack(out)
		out.Close()
		return
	}
	m.relay(c, br, out)
}

// serveHTTP: CONNECT, and absolute-URI requests forwarded with keep-alive.
func (m *Member) serveHTTP(c net.Conn) {
	br := bufio.NewReader(c)
	first := true
	var up net.Conn
	var upR *bufio.Reader
	var upHost string
	defer func() {
		if up != nil {
			m.f.untrack(up)
			up.Close()
		}
	}()
	for {
		_ = c.SetReadDeadline(time.Now().Add(2 * handshakeTimeout))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if first {
			first = false
			if !m.f.sleep(m.Spec.Latency) {
				return
			}
		}
		if m.Spec.Username != "" && !m.basicOK(req.Header.Get("Proxy-Authorization")) {
			_, _ = io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"fleet\"\r\nContent-Length: 0\r\n\r\n")
			req.Body.Close()
			continue
		}
		if b := m.Behavior(); (b == ForwardOnly) == (req.Method == http.MethodConnect) && (b == ForwardOnly || b == ConnectOnly) {
			// squid-like ACLs: CONNECT denied, or only CONNECT allowed
			_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		if req.Method == http.MethodConnect {
			ctx, cancel := m.handshakeCtx()
			out, err := m.dialExit(ctx, req.Host)
			cancel()
			if err != nil {
				fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
				m.f.untrack(out)
				out.Close()
				return
			}
			m.relay(c, br, out)
			return
		}
		if !req.URL.IsAbs() || req.URL.Scheme != "http" {
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		host := req.URL.Host
		if req.URL.Port() == "" {
			host = net.JoinHostPort(req.URL.Hostname(), "80")
		}
		if up == nil || upHost != host {
			if up != nil {
				m.f.untrack(up)
				up.Close()
			}
			ctx, cancel := m.handshakeCtx()
			up, err = m.dialExit(ctx, host)
			cancel()
			if err != nil {
				up = nil
				_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				return
			}
			upR, upHost = bufio.NewReader(up), host
		}
		switch m.Behavior() {
		case BreakClose, BreakReset, BreakGarbage:
			if m.Behavior() == BreakGarbage {
				_, _ = c.Write(garbageReply)
			} else if tc, ok := c.(*net.TCPConn); ok && m.Behavior() == BreakReset {
				_ = tc.SetLinger(0)
			}
			return
		}
		req.Header.Del("Proxy-Authorization")
		req.Header.Del("Proxy-Connection")
		b := m.Behavior()
		if b == FakeEcho {
			err := fakeEcho(req).Write(c)
			req.Body.Close()
			if err != nil || req.Close {
				return
			}
			continue
		}
		if b.rewrites() {
			m.addProxyHeaders(req, c, b)
		}
		_ = up.SetDeadline(time.Now().Add(2 * handshakeTimeout))
		if err := req.Write(up); err != nil {
			return
		}
		resp, err := http.ReadResponse(upR, req)
		if err != nil {
			_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		if b == BodyInject {
			inject(resp)
		}
		err = resp.Write(c)
		resp.Body.Close()
		if err != nil || req.Close || resp.Close {
			return
		}
	}
}

func (m *Member) basicOK(h string) bool {
	const prefix = "Basic "
	if !strings.HasPrefix(h, prefix) {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(h[len(prefix):])
	if err != nil {
		return false
	}
	return string(raw) == m.Spec.Username+":"+m.Spec.Password
}
