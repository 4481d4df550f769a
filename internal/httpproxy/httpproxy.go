package httpproxy

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
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
		if errors.Is(err, ErrHeaderTooLarge) {
			return nil, "", ErrHeaderTooLarge
		}
		return nil, "", err
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

// Forward sends the absolute-URI request req to its origin over up (a
// tunnel to the target, read through upBr), and copies the response to
// client with extra headers added. The upstream connection is not reused
// (the request asks the origin to close). keepAlive reports whether the
// client connection may carry another request; err is set when the origin
// failed before any byte reached the client (respStarted false) or during
// the copy.
func Forward(req *http.Request, up io.Writer, upBr *bufio.Reader, client io.Writer, extra http.Header) (keepAlive, respStarted bool, err error) {
	clientClose := req.Close
	RemoveHopHeaders(req.Header)
	req.Close = true
	if err := req.Write(up); err != nil {
		return false, false, fmt.Errorf("writing request to origin: %w", err)
	}
	resp, err := http.ReadResponse(upBr, req)
	if err != nil {
		return false, false, fmt.Errorf("reading origin response: %w", err)
	}
	defer resp.Body.Close()
	RemoveHopHeaders(resp.Header)
	for k, vs := range extra {
		resp.Header[k] = vs
	}
	if req.ProtoAtLeast(1, 1) {
		resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
	}
	resp.Close = clientClose
	// Response.Write closes (HTTP/1.0 style) a response of unknown length
	// that is not chunked; mirror its rule so we close too.
	chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"
	if resp.ContentLength == -1 && resp.ProtoAtLeast(1, 1) && !chunked && !resp.Uncompressed {
		resp.Close = true
	}
	if err := resp.Write(client); err != nil {
		return false, true, fmt.Errorf("writing response to client: %w", err)
	}
	return !resp.Close, true, nil
}
