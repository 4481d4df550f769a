package dial

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
)

// Cause is a short, stable name for why a dial failed. The gateway maps it
// to a SOCKS reply code and an RFC 9209 Proxy-Status; the probe stores it.
type Cause string

// Causes.
const (
	RefusedCause     Cause = "refused"     // TCP RST on connect, or the upstream says the target refused
	TimeoutCause     Cause = "timeout"     // deadline hit in connect or handshake (black hole)
	ResetCause       Cause = "reset"       // connection reset mid-handshake
	HandshakeCause   Cause = "handshake"   // the upstream answered something that is not its protocol
	CertificateCause Cause = "certificate" // its TLS certificate did not verify (unknown authority, name, expiry, pin)
	AuthCause        Cause = "auth"        // credentials wanted or rejected
	UnreachableCause Cause = "unreachable" // no route, or the upstream cannot reach the target
	DNSCause         Cause = "dns"         // the upstream's own server name did not resolve
	ClosedCause      Cause = "closed"      // EOF mid-handshake, cancelled, or the pool is closed
	OtherCause       Cause = "other"
	// LocalCause: this host ran short of something (file descriptors,
	// local ports, buffers, memory). It says nothing against the
	// upstream: the gateway tries another but neither reports nor ejects.
	LocalCause Cause = "local"

	// Target causes: the upstream worked and answered that it could not
	// reach the target (SOCKS5 replies 3-6, HTTP 502/503/504 to CONNECT).
	// They say nothing against the upstream: the gateway answers the
	// client with them and neither retries nor counts a failure.
	TargetRefusedCause     Cause = "target_refused"     // the target refused the upstream's connection
	TargetUnreachableCause Cause = "target_unreachable" // the upstream has no route to the target (or its name did not resolve there)
	TargetTimeoutCause     Cause = "target_timeout"     // the upstream's connection to the target timed out
)

// Target reports whether c blames the target rather than the upstream.
func (c Cause) Target() bool {
	return c == TargetRefusedCause || c == TargetUnreachableCause || c == TargetTimeoutCause
}

// causeError is an error whose Cause is known where it is made.
type causeError struct {
	cause Cause
	text  string
}

func (e *causeError) Error() string { return e.text }

// Classify names the cause of a DialContext error ("" for nil).
func Classify(err error) Cause {
	if err == nil {
		return ""
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
		return CertificateCause
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return TimeoutCause
	case errors.Is(err, context.Canceled), errors.Is(err, ErrClosed), errors.Is(err, net.ErrClosed):
		return ClosedCause
	case errors.As(err, &dnsErr):
		return DNSCause
	case errors.As(err, &errno):
		switch errno {
		case syscall.ECONNREFUSED:
			return RefusedCause
		case syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNABORTED:
			return ResetCause
		case syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.ENETDOWN:
			return UnreachableCause
		case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EADDRINUSE, syscall.EADDRNOTAVAIL:
			// EADDRNOTAVAIL on connect: no local port left
			return LocalCause
		case syscall.ETIMEDOUT:
			return TimeoutCause
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ClosedCause
	case errors.As(err, &tlsRec):
		return HandshakeCause
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return TimeoutCause
	}
	// mihomo's adapters return plain-text errors; match the ones it has.
	msg := err.Error()
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
	return OtherCause
}

var mihomoMessages = []struct {
	text  string
	cause Cause
}{
	{"dns resolve failed", DNSCause},
	{"couldn't find ip", DNSCause},
	{"auth failed", AuthCause},                // transport/socks5.ErrAuth
	{"rejected username/password", AuthCause}, // socks5
	{"SOCKS need auth", AuthCause},
	{"HTTP need auth", AuthCause}, // http 407
	{"SOCKS version error", HandshakeCause},
	{"malformed HTTP", HandshakeCause}, // net/http ReadResponse
	{"CONNECT method not allowed", HandshakeCause},
	{"can not connect remote err code", RefusedCause}, // http 4xx other than 405/407
	// http CONNECT answered by the upstream with resp.Status: matched
	// only at the start of the message or after ": ", so a port ending in
	// 502/503 ("1.2.3.4:38503 connect error") does not count.
	{"502 ", TargetUnreachableCause},
	{"503 ", TargetUnreachableCause},
	{"504 ", TargetTimeoutCause},
	{"500 ", OtherCause},
	// certificate errors that reach us as text (QUIC's CRYPTO_ERROR,
	// mihomo's pin check); before "tls: ", which the first also holds
	{"tls: failed to verify certificate", CertificateCause},
	{"x509: ", CertificateCause},
	{"certificate fingerprints do not match", CertificateCause},
	{"tls: ", HandshakeCause},
	{"connection reset", ResetCause},
	{"connection refused", RefusedCause},
	{"use of closed network connection", ClosedCause},
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
