package dial

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	mtls "github.com/metacubex/tls"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/parse"
	"github.com/proxypool/proxypool/internal/upstream"
)

// TestCertificateFlag: upstreams behind a self-signed certificate, reached
// from share links as a subscription writes them. Without the insecure flag
// the dial fails with a certificate cause and the x509 text; with it the
// tunnel works and the judge sees the upstream's exit.
func TestCertificateFlag(t *testing.T) {
	j := fleet.StartJudgeT(t)
	px := fleet.StartTLSConnectT(t, "127.63.0.1:0")
	f := fleet.StartT(t, fleet.Spec{Members: []fleet.MemberSpec{{Kind: fleet.Trojan, Behavior: fleet.Good}}})
	tr := f.Member(0)
	trojanStrict := strings.Replace(tr.URI(), "&allowInsecure=1", "", 1)
	if trojanStrict == tr.URI() {
		t.Fatalf("fleet trojan link has no allowInsecure=1 to remove: %s", tr.URI())
	}
	tests := []struct {
		name     string
		link     string
		exit     string // "" when the dial must fail
		wantText string // in the error
	}{
		{"https no flag", "https://" + px.Addr() + "#tls-proxy", "", "x509: certificate signed by unknown authority"},
		{"https allowInsecure=0", "https://" + px.Addr() + "?allowInsecure=0", "", "x509: certificate signed by unknown authority"},
		{"https wrong sni", "https://" + px.Addr() + "?sni=wrong.example", "", "x509: certificate is valid for " + fleet.TLSConnectName + ", not wrong.example"},
		{"https allowInsecure=1", "https://" + px.Addr() + "?allowInsecure=1", "127.63.0.1", ""},
		{"https insecure=1 wrong sni", "https://u:p@" + px.Addr() + "?insecure=1&sni=wrong.example", "127.63.0.1", ""},
		{"trojan no flag", trojanStrict, "", "x509: certificate signed by unknown authority"},
		{"trojan allowInsecure=1", tr.URI(), tr.ExitIP, ""},
		{"trojan insecure=1", strings.Replace(tr.URI(), "allowInsecure=1", "insecure=1", 1), tr.ExitIP, ""},
	}
	p := New(Options{})
	defer p.Close()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := parse.ParseURI(tc.link)
			if err != nil {
				t.Fatalf("parsing %s: %v", tc.link, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := p.DialContext(ctx, entry(t, u), j.Addr)
			if tc.exit == "" {
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded through an unverified certificate")
				}
				if got := Classify(err); got != upstream.CauseCertificate {
					t.Errorf("Classify = %q, want %q (%v)", got, upstream.CauseCertificate, err)
				}
				if !strings.Contains(err.Error(), tc.wantText) {
					t.Errorf("error %q lacks %q", err, tc.wantText)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			if got := fetchIP(t, c, j.Addr); got != tc.exit {
				t.Errorf("judge saw %s, want %s", got, tc.exit)
			}
		})
	}
}

// TestClassifyCertificate: certificate failures are one cause whether they
// arrive typed (Go's or mihomo's fork of crypto/tls, wrapped with %w) or
// as text (QUIC's CRYPTO_ERROR, mihomo's pin check).
func TestClassifyCertificate(t *testing.T) {
	ua := x509.UnknownAuthorityError{}
	tests := []struct {
		name string
		err  error
		want upstream.Cause
	}{
		{"x509 unknown authority", ua, upstream.CauseCertificate},
		{"x509 hostname", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "a.example"}, upstream.CauseCertificate},
		{"x509 expired", x509.CertificateInvalidError{Reason: x509.Expired}, upstream.CauseCertificate},
		{"mihomo tls fork wrapped", fmt.Errorf("1.2.3.4:443 connect error: %w", &mtls.CertificateVerificationError{Err: ua}), upstream.CauseCertificate},
		{"text: quic crypto error", errors.New("CRYPTO_ERROR 0x12a (local): tls: failed to verify certificate: x509: certificate signed by unknown authority"), upstream.CauseCertificate},
		{"text: x509 only", errors.New("dialing a:1 via tuic b:2: x509: certificate has expired or is not yet valid"), upstream.CauseCertificate},
		{"text: pin mismatch", errors.New("certificate fingerprints do not match"), upstream.CauseCertificate},
		{"tls record is a handshake", errors.New("127.10.17.1:38503 connect error: tls: oversized record received with length 24946"), upstream.CauseHandshake},
		{"tls alert is a handshake", errors.New("remote error: tls: handshake failure"), upstream.CauseHandshake},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Errorf("Classify(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}
