package dial

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/proxypool/proxypool/internal/upstream"
)

// causeError is an error whose Cause is known where it is made.
type causeError struct {
	cause upstream.Cause
	text  string
}

func (e *causeError) Error() string { return e.text }

// Classify names the cause of a DialContext error (CauseNone for nil).
func Classify(err error) upstream.Cause {
	if err == nil {
		return upstream.CauseNone
	}
	var ce *causeError
	if errors.As(err, &ce) {
		return ce.cause
	}
	var dnsErr *net.DNSError
	var tlsRec tls.RecordHeaderError
	var errno syscall.Errno
	switch {
	case isCertificate(err):
		return upstream.CauseCertificate
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return upstream.CauseTimeout
	case errors.Is(err, context.Canceled), errors.Is(err, ErrClosed), errors.Is(err, net.ErrClosed):
		return upstream.CauseClosed
	case errors.As(err, &dnsErr):
		return upstream.CauseDNS
	case errors.As(err, &errno):
		switch errno {
		case syscall.ECONNREFUSED:
			return upstream.CauseRefused
		case syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNABORTED:
			return upstream.CauseReset
		case syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.ENETDOWN:
			return upstream.CauseUnreachable
		case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EADDRINUSE, syscall.EADDRNOTAVAIL:
			// EADDRNOTAVAIL on connect: no local port left
			return upstream.CauseLocal
		case syscall.ETIMEDOUT:
			return upstream.CauseTimeout
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return upstream.CauseClosed
	case errors.As(err, &tlsRec):
		return upstream.CauseHandshake
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return upstream.CauseTimeout
	}
	// mihomo's adapters return plain-text errors; match the ones it has.
	msg := err.Error()
	if c, ok := httpRefusal(msg); ok {
		return c
	}
	for _, m := range mihomoMessages {
		if m.text[0] >= '0' && m.text[0] <= '9' {
			if strings.HasPrefix(msg, m.text) || strings.Contains(msg, ": "+m.text) {
				return m.cause
			}
			continue
		}
		if strings.Contains(msg, m.text) {
			return m.cause
		}
	}
	return upstream.CauseOther
}

var mihomoMessages = []struct {
	text  string
	cause upstream.Cause
}{
	{"dns resolve failed", upstream.CauseDNS},
	{"couldn't find ip", upstream.CauseDNS},
	{"auth failed", upstream.CauseAuth},                // transport/socks5.ErrAuth
	{"rejected username/password", upstream.CauseAuth}, // socks5
	{"SOCKS need auth", upstream.CauseAuth},
	{"HTTP need auth", upstream.CauseAuth}, // http 407
	{"SOCKS version error", upstream.CauseHandshake},
	{"malformed HTTP", upstream.CauseHandshake}, // net/http ReadResponse
	{"CONNECT method not allowed", upstream.CauseHandshake},
	{"can not connect remote err code", upstream.CauseRefused}, // http 4xx other than 405/407 that httpRefusal does not read
	// http CONNECT answered by the upstream with resp.Status: matched
	// only at the start of the message or after ": ", so a port ending in
	// 502/503 ("1.2.3.4:38503 connect error") does not count.
	{"502 ", upstream.CauseOfHTTPStatus(502)},
	{"503 ", upstream.CauseOfHTTPStatus(503)},
	{"504 ", upstream.CauseOfHTTPStatus(504)},
	{"500 ", upstream.CauseOther},
	// certificate errors that reach us as text (QUIC's CRYPTO_ERROR,
	// mihomo's pin check); before "tls: ", which the first also holds
	{"tls: failed to verify certificate", upstream.CauseCertificate},
	{"x509: ", upstream.CauseCertificate},
	{"certificate fingerprints do not match", upstream.CauseCertificate},
	{"tls: ", upstream.CauseHandshake},
	{"connection reset", upstream.CauseReset},
	{"connection refused", upstream.CauseRefused},
	{"use of closed network connection", upstream.CauseClosed},
}

// isCertificate reports a certificate verification failure by type: Go's,
// and mihomo's forks of crypto/tls, whose CertificateVerificationError
// unwraps to the same crypto/x509 errors.
func isCertificate(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci)
}

// httpRefusal reads the status of mihomo's "can not connect remote err
// code: 403" (an HTTP upstream's 4xx to CONNECT other than 405 and 407):
// 400/403/451 are its rules refusing this request and 404 an unknown
// name (upstream.CauseOfHTTPStatus), not failures of the upstream.
func httpRefusal(msg string) (upstream.Cause, bool) {
	const prefix = "can not connect remote err code: "
	i := strings.Index(msg, prefix)
	if i < 0 {
		return 0, false
	}
	rest := msg[i+len(prefix):]
	n := 0
	for n < len(rest) && n < 3 && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	status, err := strconv.Atoi(rest[:n])
	if n != 3 || err != nil || len(rest) > 3 && rest[3] >= '0' && rest[3] <= '9' {
		return 0, false
	}
	if c := upstream.CauseOfHTTPStatus(status); c.IsTarget() {
		return c, true
	}
	return 0, false
}
