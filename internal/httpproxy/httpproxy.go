package httpproxy

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrHeaderTooLarge is returned by ReadRequest when the request head
// exceeds the cap; answer it with 431.
var ErrHeaderTooLarge = errors.New("request header too large")

// ErrNotProxyRequest is returned for origin-form requests ("GET / HTTP/1.1")
// and schemes other than http; answer it with 400.
var ErrNotProxyRequest = errors.New("not a proxy request")

// CapReader limits how many bytes a request head may take. Wrap the
// connection in it, put a bufio.Reader on top, and call Limit before each
// head and Unlimit after it.
type CapReader struct {
	R io.Reader
	n int64
}

// Limit allows n more bytes.
func (c *CapReader) Limit(n int64) { c.n = n }

// Unlimit lifts the cap (bodies and tunnels).
func (c *CapReader) Unlimit() { c.n = 1 << 62 }

func (c *CapReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, ErrHeaderTooLarge
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.R.Read(p)
	c.n -= int64(n)
	return n, err
}

// ReadRequest reads one proxy request head. It returns the request and the
// target "host:port" (port 80 by default for absolute-URI requests; CONNECT
// needs an explicit port).
func ReadRequest(br *bufio.Reader) (*http.Request, string, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		var ue *url.Error
		switch {
		case errors.Is(err, ErrHeaderTooLarge):
			return nil, "", ErrHeaderTooLarge
		case errors.As(err, &ue): // a net.Error, but the request's fault
			return nil, "", fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return nil, "", err
	}
	target, err := Target(req)
	return req, target, err
}

// ParseRequest parses the complete head ReadHead left at the front of br:
// every error wraps ErrMalformed or ErrNotProxyRequest (both a 400).
func ParseRequest(br *bufio.Reader) (*http.Request, string, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	target, err := Target(req)
	return req, target, err
}

// Target is the "host:port" a proxy request is for.
func Target(req *http.Request) (string, error) {
	if req.Method == http.MethodConnect {
		host, port, err := net.SplitHostPort(req.RequestURI)
		if err != nil || host == "" || port == "" {
			return "", fmt.Errorf("%w: CONNECT target %q is not host:port", ErrNotProxyRequest, req.RequestURI)
		}
		return req.RequestURI, nil
	}
	if req.URL == nil || req.URL.Host == "" {
		return "", fmt.Errorf("%w: %s %s is not an absolute URI", ErrNotProxyRequest, req.Method, req.RequestURI)
	}
	if !strings.EqualFold(req.URL.Scheme, "http") {
		return "", fmt.Errorf("%w: scheme %q (use CONNECT for https)", ErrNotProxyRequest, req.URL.Scheme)
	}
	host := req.URL.Hostname()
	if host == "" {
		return "", fmt.Errorf("%w: %s %s has no host", ErrNotProxyRequest, req.Method, req.RequestURI)
	}
	port := req.URL.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(host, port), nil
}

// Credentials returns the Basic Proxy-Authorization of req.
func Credentials(req *http.Request) (user, pass string, ok bool) {
	h := req.Header.Get("Proxy-Authorization")
	const prefix = "Basic "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", "", false
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[len(prefix):]))
	if err != nil {
		return "", "", false
	}
	user, pass, ok = strings.Cut(string(b), ":")
	return user, pass, ok
}

// hopHeaders are removed when forwarding (RFC 9110 §7.6.1) plus the proxy's
// own.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// RemoveHopHeaders deletes hop-by-hop headers and those named in Connection.
func RemoveHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// ProxyStatus renders an RFC 9209 Proxy-Status value naming this proxy,
// the error type (e.g. "connection_timeout"), an optional detail and the
// next hop (upstream) that failed.
func ProxyStatus(errType, details, nextHop string) string {
	var b strings.Builder
	b.WriteString("proxypool")
	if errType != "" {
		b.WriteString("; error=")
		b.WriteString(errType)
	}
	if nextHop != "" {
		b.WriteString("; next-hop=")
		b.WriteString(strconv.Quote(nextHop))
	}
	if details != "" {
		b.WriteString("; details=")
		b.WriteString(strconv.Quote(details))
	}
	return b.String()
}

// WriteError answers with status, a Proxy-Status header (when proxyStatus
// is not empty), extra headers and a one-line text body, and asks the client
// to close the connection.
func WriteError(w io.Writer, status int, proxyStatus, body string, extra http.Header) error {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	if proxyStatus != "" {
		b.WriteString("Proxy-Status: " + proxyStatus + "\r\n")
	}
	if status == http.StatusProxyAuthRequired {
		b.WriteString("Proxy-Authenticate: Basic realm=\"proxypool\"\r\n")
	}
	for k, vs := range extra {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	body = strings.TrimRight(body, "\n") + "\n"
	fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	_, err := io.WriteString(w, b.String())
	return err
}

var connectOK = []byte("HTTP/1.1 200 Connection established\r\n\r\n")

// WriteConnectOK answers a CONNECT with 200 and optional extra headers.
func WriteConnectOK(w io.Writer, extra http.Header) error {
	if len(extra) == 0 {
		_, err := w.Write(connectOK)
		return err
	}
	var b strings.Builder
	b.WriteString("HTTP/1.1 200 Connection established\r\n")
	for k, vs := range extra {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Exchange is one absolute-URI request forwarded over a tunnel to its
// origin.
type Exchange struct {
	// Client is the client connection and ClientBr the reader the request
	// head was read from (it may hold bytes the client sent past the
	// head: the body, or an upgraded protocol's first frames).
	Client   net.Conn
	ClientBr *bufio.Reader
	// Up is the tunnel to the origin and UpBr a fresh reader on it.
	Up   net.Conn
	UpBr *bufio.Reader
	// Extra headers are added to the final response.
	Extra http.Header
	// Idle cuts the exchange when no byte moved either way for that long
	// (default 5m). Every read and write pushes it: a download or an
	// upload longer than Idle goes on while it moves.
	Idle time.Duration
	// Proxy, when set, says Up is a forward proxy, not a tunnel: the
	// request goes to it in absolute form with its credentials
	// (upstream.go).
	Proxy *UpstreamProxy
}

// Result is what a forwarded exchange left the client connection in.
type Result struct {
	// KeepAlive: the client connection may carry another request.
	KeepAlive bool
	// Started: some response bytes (an interim 1xx counts) reached the
	// client, so an error can no longer be answered with a status.
	Started bool
	// Upgraded: the origin answered 101 to an Upgrade request and the
	// response head was relayed; UpBr may hold the origin's first bytes
	// of the new protocol. The caller relays both ways from here.
	Upgraded bool
}

// Forward sends the absolute-URI request req to its origin over x.Up and
// relays the response to x.Client: interim 1xx responses as they come
// (100 Continue for a client that sent Expect: 100-continue, which then
// sends its body), then the final one with x.Extra added. The request goes
// as the client wrote it, minus hop-by-hop headers: no header is added but
// Connection (close, or upgrade when the client asked for an Upgrade) and
// the body's framing. The upstream connection is not reused.
func Forward(req *http.Request, x Exchange) (Result, error) {
	var res Result
	idle := x.Idle
	if idle <= 0 {
		idle = 5 * time.Minute
	}
	act := &activity{idle: idle}
	act.touch()
	up := &idleConn{Conn: x.Up, act: act}
	cl := &idleConn{Conn: x.Client, act: act}
	x.UpBr.Reset(up)
	// the caller goes on with plain conns: leave them without the
	// deadlines set here
	defer x.Client.SetWriteDeadline(time.Time{})
	defer x.Up.SetDeadline(time.Time{})

	clientClose := req.Close
	upgrade := ""
	if hasToken(req.Header["Connection"], "upgrade") {
		upgrade = req.Header.Get("Upgrade")
	}
	RemoveHopHeaders(req.Header)
	target, auth := req.URL.RequestURI(), ""
	if x.Proxy != nil {
		target, auth = x.Proxy.target(req), x.Proxy.authorization()
	}
	if err := writeHead(up, req, target, auth, upgrade); err != nil {
		return res, fmt.Errorf("writing request to origin: %w", err)
	}

	// The body goes up on its own goroutine while the response is read:
	// a client that sent Expect: 100-continue holds its body until it
	// sees the origin's 100 (or its own timer fires), and an origin may
	// answer before it read the whole body.
	bodyDone := make(chan error, 1)
	bodyRunning := false
	if req.Body != nil && req.Body != http.NoBody {
		bodyRunning = true
		go func() { bodyDone <- writeBody(up, req, act) }()
	}
	// waitBody stops the body copy (if the final answer came first) and
	// waits for it, so no goroutine is left reading the client's reader.
	waitBody := func(final bool) error {
		if !bodyRunning {
			return nil
		}
		bodyRunning = false
		if final {
			select {
			case err := <-bodyDone:
				return err
			default:
			}
			x.Client.SetReadDeadline(time.Now())
			x.Up.SetWriteDeadline(time.Now())
			<-bodyDone
			x.Client.SetReadDeadline(time.Time{})
			return errBodyCut
		}
		return <-bodyDone
	}
	defer waitBody(true)

	for {
		resp, err := http.ReadResponse(x.UpBr, req)
		if err != nil {
			if bodyRunning {
				select {
				case berr := <-bodyDone:
					bodyRunning = false
					if berr != nil {
						err = fmt.Errorf("%w (sending the request body: %v)", err, berr)
					}
				default:
				}
			}
			return res, fmt.Errorf("%w: %w", ErrNoResponse, err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			if upgrade == "" {
				resp.Body.Close()
				return res, errors.New("reading origin response: 101 Switching Protocols to a request without Upgrade")
			}
			// An upgrade request has no body (or a tiny one already
			// sent): wait for it so the tunnel starts on a quiet conn.
			if err := waitBody(false); err != nil {
				return res, fmt.Errorf("sending the request body: %w", err)
			}
			res.Started = true
			if err := writeInterim(cl, resp); err != nil {
				return res, fmt.Errorf("writing response to client: %w", err)
			}
			res.Upgraded = true
			return res, nil
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			// Interim responses are for HTTP/1.1 clients only (RFC 9110
			// §15.2); an HTTP/1.0 client never sent Expect.
			if req.ProtoAtLeast(1, 1) {
				res.Started = true
				if err := writeInterim(cl, resp); err != nil {
					return res, fmt.Errorf("writing response to client: %w", err)
				}
			}
			continue
		}
		defer resp.Body.Close()
		if err := x.Proxy.refused(resp); err != nil {
			return res, err
		}
		RemoveHopHeaders(resp.Header)
		for k, vs := range x.Extra {
			resp.Header[k] = vs
		}
		if req.ProtoAtLeast(1, 1) {
			resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
		}
		resp.Close = clientClose
		// Response.Write closes (HTTP/1.0 style) a response of unknown
		// length that is not chunked; mirror its rule so we close too.
		chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"
		if resp.ContentLength == -1 && resp.ProtoAtLeast(1, 1) && !chunked && !resp.Uncompressed {
			resp.Close = true
		}
		res.Started = true
		bw := bufio.NewWriterSize(cl, 16<<10)
		if err := resp.Write(bw); err != nil {
			return res, fmt.Errorf("writing response to client: %w", err)
		}
		if err := bw.Flush(); err != nil {
			return res, fmt.Errorf("writing response to client: %w", err)
		}
		// A body the client did not finish sending (the origin answered
		// early) leaves the connection mid-request: close it.
		if err := waitBody(true); err != nil {
			return res, nil
		}
		res.KeepAlive = !resp.Close
		return res, nil
	}
}

var errBodyCut = errors.New("request body cut: the origin answered first")

// ErrNoResponse is wrapped by Forward when the upstream side gave no
// readable response head (closed, reset, or sent something else): the
// upstream's failure, where the client's own errors are not.
var ErrNoResponse = errors.New("reading origin response")

// writeHead writes the request line (with target: the origin form, or
// the absolute form for an upstream proxy), the headers and auth (a
// Proxy-Authorization line for an upstream proxy, or ""). Go's
// Request.Write would add a User-Agent the client never sent.
func writeHead(w io.Writer, req *http.Request, target, auth, upgrade string) error {
	var b strings.Builder
	host := req.Host
	if req.URL.Host != "" {
		host = req.URL.Host // RFC 9112 §3.2.2: the URI's authority wins
	}
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", req.Method, target, host)
	h := req.Header
	delete(h, "Host")
	// ReadRequest keeps the client's Content-Length and drops it for a
	// chunked body, whose Transfer-Encoding (hop-by-hop) we write again.
	if err := h.Write(&b); err != nil {
		return err
	}
	if isChunked(req) {
		b.WriteString("Transfer-Encoding: chunked\r\n")
	}
	b.WriteString(auth)
	if upgrade != "" {
		b.WriteString("Connection: Upgrade\r\nUpgrade: " + upgrade + "\r\n\r\n")
	} else {
		b.WriteString("Connection: close\r\n\r\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func isChunked(req *http.Request) bool {
	return len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked"
}

// writeBody copies the request body up, chunked again if the client
// chunked it (ReadRequest hands it over decoded).
func writeBody(up io.Writer, req *http.Request, act *activity) error {
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	if !isChunked(req) {
		_, err := io.CopyBuffer(struct{ io.Writer }{up}, req.Body, *bp)
		return err
	}
	cw := httputil.NewChunkedWriter(up)
	if _, err := io.CopyBuffer(struct{ io.Writer }{cw}, req.Body, *bp); err != nil {
		return err
	}
	if err := cw.Close(); err != nil {
		return err
	}
	_, err := io.WriteString(up, "\r\n") // no trailers
	return err
}

var bodyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// writeInterim relays a 1xx response head (it has no body).
func writeInterim(w io.Writer, resp *http.Response) error {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %s\r\n", resp.Status)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		RemoveHopHeaders(resp.Header)
	}
	if err := resp.Header.Write(&b); err != nil {
		return err
	}
	b.WriteString("\r\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func hasToken(vs []string, tok string) bool {
	for _, v := range vs {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), tok) {
				return true
			}
		}
	}
	return false
}

// activity is when a byte last moved either way in one exchange.
type activity struct {
	last atomic.Int64 // UnixNano
	idle time.Duration
}

func (a *activity) touch() { a.last.Store(time.Now().UnixNano()) }

// idleConn pushes its deadlines while bytes move: a read that times out
// while the other direction moved within idle waits on, and each write
// gets idle to complete.
type idleConn struct {
	net.Conn
	act *activity
}

func (c *idleConn) Read(p []byte) (int, error) {
	a := c.act
	c.Conn.SetReadDeadline(time.Unix(0, a.last.Load()).Add(a.idle))
	for {
		n, err := c.Conn.Read(p)
		if n > 0 {
			a.touch()
		}
		if err != nil && n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			l := time.Unix(0, a.last.Load())
			if time.Since(l) < a.idle {
				c.Conn.SetReadDeadline(l.Add(a.idle))
				continue
			}
		}
		return n, err
	}
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.act.idle))
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.act.touch()
	}
	return n, err
}
