package upstream

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCauseText: every cause's stored name reads back as that cause, and
// the names users and dashboards already know are unchanged.
func TestCauseText(t *testing.T) {
	fixed := map[Cause]string{
		CauseNone: "", CauseOther: "other", CauseRefused: "refused", CauseTimeout: "timeout",
		CauseReset: "reset", CauseHandshake: "handshake", CauseCertificate: "certificate", CauseAuth: "auth",
		CauseUnreachable: "unreachable", CauseDNS: "dns", CauseClosed: "closed", CauseLocal: "local",
		CauseTargetRefused: "target_refused", CauseTargetUnreachable: "target_unreachable",
		CauseTargetTimeout: "target_timeout", CauseRoutesLocally: "routes_locally",
		CauseTransparent: "transparent", CauseTamper: "tamper", CauseTargetCheck: "target",
		CauseTargetDenied: "target_denied", CauseExitCountry: "exit_country",
	}
	if len(fixed) != int(numCauses) {
		t.Fatalf("%d causes named here, %d in the vocabulary", len(fixed), numCauses)
	}
	for c, name := range fixed {
		b, err := c.MarshalText()
		if err != nil || string(b) != name || c.String() != name {
			t.Errorf("cause %d: text %q (%v), String %q; want %q", c, b, err, c.String(), name)
		}
		var back Cause
		if err := back.UnmarshalText(b); err != nil || back != c {
			t.Errorf("%q reads back as %v (%v)", name, back, err)
		}
	}
	if CauseRoutesLocally.IsLocal() || !CauseLocal.IsLocal() {
		t.Error("routes locally must not count as this host running short")
	}
	for c := range numCauses {
		if got, want := c.IsTarget(), strings.HasPrefix(c.String(), "target_"); got != want {
			t.Errorf("%s: IsTarget %v, want %v", c, got, want)
		}
	}
}

// TestCauseHostileText: names no build wrote are an error naming them,
// never a panic nor a silent cause.
func TestCauseHostileText(t *testing.T) {
	for _, in := range []string{"REFUSED", " refused", "refused ", "target_", "routes locally: exit 1.2.3.4",
		"\x00", "\xff\xfe", strings.Repeat("x", 1<<16), "cause(200)"} {
		var c Cause
		err := c.UnmarshalText([]byte(in))
		if err == nil {
			t.Errorf("%.20q decoded as %v, want an error", in, c)
			continue
		}
		if !strings.Contains(err.Error(), "unknown failure cause") || len(err.Error()) > 120 {
			t.Errorf("%.20q: error %.200q, want a short one naming the text", in, err)
		}
		if c != CauseNone {
			t.Errorf("%.20q: a failed decode changed the value to %v", in, c)
		}
	}
	if _, err := Cause(200).MarshalText(); err == nil {
		t.Error("marshalling an out-of-range cause: no error")
	}
	if s, ps := Cause(200).HTTP(); s != 502 || ps != "destination_unavailable" {
		t.Errorf("out-of-range cause answers %d %s, want 502 destination_unavailable", s, ps)
	}
	var r struct{ C Cause }
	if err := json.Unmarshal([]byte(`{"C":"bogus"}`), &r); err == nil {
		t.Error("JSON with an unknown cause decoded without error")
	}
}

// TestCauseHTTP: what the gateway answers a client for each cause.
func TestCauseHTTP(t *testing.T) {
	for _, tt := range []struct {
		c      Cause
		status int
		ps     string
	}{
		{CauseTimeout, 504, "connection_timeout"},
		{CauseTargetTimeout, 504, "connection_timeout"},
		{CauseRefused, 502, "connection_refused"},
		{CauseTargetRefused, 502, "connection_refused"},
		{CauseReset, 502, "connection_terminated"},
		{CauseClosed, 502, "connection_terminated"},
		{CauseDNS, 502, "dns_error"},
		{CauseCertificate, 502, "tls_certificate_error"},
		{CauseLocal, 503, "proxy_internal_error"},
		{CauseHandshake, 502, "destination_unavailable"},
		{CauseTargetUnreachable, 502, "destination_unavailable"},
	} {
		if s, ps := tt.c.HTTP(); s != tt.status || ps != tt.ps {
			t.Errorf("%s: %d %s, want %d %s", tt.c, s, ps, tt.status, tt.ps)
		}
	}
}

func TestFailureText(t *testing.T) {
	for _, tt := range []struct {
		c      Cause
		detail string
		want   string
	}{
		{CauseCertificate, "x509: certificate signed by unknown authority", "certificate: x509: certificate signed by unknown authority"},
		{CauseRefused, "", "refused"},
		{CauseNone, "routes locally: exit 1.2.3.4 is in our own network", "routes locally: exit 1.2.3.4 is in our own network"}, // a row from before causes
		{CauseNone, "", ""},
	} {
		if got := Failure(tt.c, tt.detail); got != tt.want {
			t.Errorf("Failure(%s, %q) = %q, want %q", tt.c, tt.detail, got, tt.want)
		}
	}
}

func FuzzParseCause(f *testing.F) {
	for c := range numCauses {
		f.Add(c.String())
	}
	f.Add("target_nothing")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCause(s)
		if err == nil && c.String() != s {
			t.Fatalf("%q parsed as %v, which prints %q", s, c, c.String())
		}
		if err != nil && c != CauseOther {
			t.Fatalf("%q: error with cause %v, want other", s, c)
		}
	})
}
