package upstream

import (
	"fmt"
	"net/http"
)

// Cause is why a dial or a check failed, from a fixed vocabulary. Its text
// form (String, MarshalText) is stored, shown to users and used as a
// metric label, so a name never changes once released. The zero value
// CauseNone means no failure.
type Cause uint8

// Causes. The comment says what each one blames.
const (
	CauseNone        Cause = iota
	CauseOther             // a failure none of the others names
	CauseRefused           // TCP RST on connect, or the upstream's ruleset refused us
	CauseTimeout           // deadline hit in connect or handshake (black hole)
	CauseReset             // connection reset mid-handshake
	CauseHandshake         // the upstream answered something that is not its protocol
	CauseCertificate       // its TLS certificate did not verify (unknown authority, name, expiry, pin)
	CauseAuth              // credentials wanted or rejected
	CauseUnreachable       // no route to the upstream
	CauseDNS               // the upstream's own server name did not resolve
	CauseClosed            // EOF mid-handshake, cancelled, or the pool is closed

	// CauseLocal: this host ran short of something (file descriptors,
	// local ports, buffers, memory). It says nothing against the
	// upstream: the gateway tries another but neither reports nor ejects.
	CauseLocal

	// Target causes: the upstream worked and answered that it could not
	// reach the target (SOCKS5 replies 3-6, HTTP 502/503/504 to CONNECT).
	// The gateway answers the client with them and neither retries nor
	// counts a failure.
	CauseTargetRefused     // the target refused the upstream's connection
	CauseTargetUnreachable // the upstream has no route to the target (or its name did not resolve there)
	CauseTargetTimeout     // the upstream's connection to the target timed out

	// Causes only an active check finds: the upstream carried the
	// judge's request, but what came back disqualifies it.
	CauseRoutesLocally // its exit is in our own network: it is us, or a loop back to us
	CauseTransparent   // the judge saw our real address
	CauseTamper        // the judge's answer or our request was rewritten in transit
	CauseTargetCheck   // the configured target check failed through it

	// CauseTargetDenied: the upstream worked and refused this request by
	// its own rules (SOCKS5 reply 2 "not allowed by ruleset" or 8
	// "address type not supported", HTTP 400/403/451 to CONNECT), or the
	// gateway refused a target that can never be reached (port 0, an
	// unspecified or multicast address). It blames the request, not the
	// upstream: nothing is counted, but another upstream, with other
	// rules, may carry it (IsPolicy).
	CauseTargetDenied

	// CauseExitCountry: an upstream made for a group (a tor instance of
	// nonus) left through an exit whose country that group does not take
	// (the US): it is served neither there nor, by its country, elsewhere.
	CauseExitCountry

	numCauses
)

// causeInfo is the one table of what a cause means: its stored name, and
// the HTTP status and RFC 9209 Proxy-Status error type the gateway answers
// a client with when the last try failed for it.
var causeInfo = [numCauses]struct {
	name        string
	status      int
	proxyStatus string
}{
	CauseNone:              {"", http.StatusOK, ""},
	CauseOther:             {"other", http.StatusBadGateway, "destination_unavailable"},
	CauseRefused:           {"refused", http.StatusBadGateway, "connection_refused"},
	CauseTimeout:           {"timeout", http.StatusGatewayTimeout, "connection_timeout"},
	CauseReset:             {"reset", http.StatusBadGateway, "connection_terminated"},
	CauseHandshake:         {"handshake", http.StatusBadGateway, "destination_unavailable"},
	CauseCertificate:       {"certificate", http.StatusBadGateway, "tls_certificate_error"},
	CauseAuth:              {"auth", http.StatusBadGateway, "destination_unavailable"},
	CauseUnreachable:       {"unreachable", http.StatusBadGateway, "destination_unavailable"},
	CauseDNS:               {"dns", http.StatusBadGateway, "dns_error"},
	CauseClosed:            {"closed", http.StatusBadGateway, "connection_terminated"},
	CauseLocal:             {"local", http.StatusServiceUnavailable, "proxy_internal_error"},
	CauseTargetRefused:     {"target_refused", http.StatusBadGateway, "connection_refused"},
	CauseTargetUnreachable: {"target_unreachable", http.StatusBadGateway, "destination_unavailable"},
	CauseTargetTimeout:     {"target_timeout", http.StatusGatewayTimeout, "connection_timeout"},
	CauseRoutesLocally:     {"routes_locally", http.StatusBadGateway, "destination_unavailable"},
	CauseTransparent:       {"transparent", http.StatusBadGateway, "destination_unavailable"},
	CauseTamper:            {"tamper", http.StatusBadGateway, "destination_unavailable"},
	CauseTargetCheck:       {"target", http.StatusBadGateway, "destination_unavailable"},
	CauseTargetDenied:      {"target_denied", http.StatusForbidden, "http_request_denied"},
	CauseExitCountry:       {"exit_country", http.StatusBadGateway, "destination_unavailable"},
}

// String is the cause's stored name ("" for CauseNone).
func (c Cause) String() string {
	if c < numCauses {
		return causeInfo[c].name
	}
	return fmt.Sprintf("cause(%d)", uint8(c))
}

// IsTarget reports whether c blames the target (or the request) rather
// than the upstream: passive ejection never counts it.
func (c Cause) IsTarget() bool {
	return c == CauseTargetRefused || c == CauseTargetUnreachable || c == CauseTargetTimeout || c == CauseTargetDenied
}

// IsPolicy reports whether c is a refusal by one upstream's own rules:
// not its failure, and unlike a dead target one that another upstream
// may not share, so failover goes on.
func (c Cause) IsPolicy() bool { return c == CauseTargetDenied }

// IsLocal reports whether c is this host running short, not the upstream.
func (c Cause) IsLocal() bool { return c == CauseLocal }

// HTTP is the status and Proxy-Status error type a proxy answers a client
// with when its last try failed for c.
func (c Cause) HTTP() (status int, proxyStatus string) {
	if c >= numCauses {
		c = CauseOther
	}
	return causeInfo[c].status, causeInfo[c].proxyStatus
}

// MarshalText is the stored name; a value outside the vocabulary is an
// error rather than a name no reader knows.
func (c Cause) MarshalText() ([]byte, error) {
	if c >= numCauses {
		return nil, fmt.Errorf("marshalling cause: %d is not a known cause", uint8(c))
	}
	return []byte(causeInfo[c].name), nil
}

// UnmarshalText accepts the stored names only.
func (c *Cause) UnmarshalText(b []byte) error {
	v, err := ParseCause(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// ParseCause returns the cause named s ("" is CauseNone). An unknown name
// is an error naming it, so a row written by a newer build reads as a
// clear failure the caller may map to CauseOther.
func ParseCause(s string) (Cause, error) {
	for c := range numCauses {
		if causeInfo[c].name == s {
			return c, nil
		}
	}
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return CauseOther, fmt.Errorf("unknown failure cause %q", s)
}

// CauseOfHTTPStatus is what an upstream proxy's answer to CONNECT says:
// 502 and 503 that it could not reach the target, 404 that the name is
// unknown there, 504 that the target timed out, 407 that it wants
// credentials; 400, 403 and 451 that its rules refuse this request
// (squid answers CONNECT to a port outside its SSL_ports with 403), which
// is the request's doing. Any other error status is CauseOther.
func CauseOfHTTPStatus(status int) Cause {
	switch {
	case status >= 200 && status < 300:
		return CauseNone
	case status == http.StatusBadGateway, status == http.StatusServiceUnavailable, status == http.StatusNotFound:
		return CauseTargetUnreachable
	case status == http.StatusGatewayTimeout:
		return CauseTargetTimeout
	case status == http.StatusProxyAuthRequired:
		return CauseAuth
	case status == http.StatusBadRequest, status == http.StatusForbidden, status == http.StatusUnavailableForLegalReasons:
		return CauseTargetDenied
	}
	return CauseOther
}

// Failure is a cause with what happened in words, for users: "cause:
// detail", the cause alone, or (a row stored before causes were typed)
// the old free text alone.
func Failure(c Cause, detail string) string {
	switch {
	case c == CauseNone:
		return detail
	case detail == "":
		return c.String()
	}
	return c.String() + ": " + detail
}
