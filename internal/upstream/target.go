package upstream

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// TargetError is a request's target that no upstream can ever reach: the
// gateway answers it at once (HTTP 400, a SOCKS5 reply) without spending
// a dial, and charges no upstream for it.
type TargetError struct {
	Addr   string
	Reason string
	// Denied: a well-formed address the gateway refuses by rule (port 0,
	// an unspecified, multicast or broadcast address), answered with
	// SOCKS5 reply 2 "not allowed by ruleset"; otherwise it is not an
	// address at all, answered with reply 8 "address type not supported".
	Denied bool
}

func (e *TargetError) Error() string {
	return "target " + strconv.Quote(truncate(e.Addr, 80)) + ": " + e.Reason
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// CheckTarget returns a *TargetError when addr ("host:port", "[v6]:port")
// can never be reached through any upstream, the way HAProxy and
// commercial gateways refuse such requests before connecting: an empty
// or over-long host, a name with bytes no resolver takes, a number that
// is not a dotted-quad IPv4 address ("127.1", "0x7f000001", "1.1.1.256":
// inet_aton forms, also used to slip past filters), an IPv6 zone (it names
// one of this host's interfaces), the unspecified, "this network"
// (0.0.0.0/8), multicast or broadcast addresses, and ports that are not a
// number in 1-65535. Names are not resolved: the upstream does that.
func CheckTarget(addr string) error {
	bad := func(reason string) error { return &TargetError{Addr: addr, Reason: reason} }
	denied := func(reason string) error { return &TargetError{Addr: addr, Reason: reason, Denied: true} }
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return bad("no port")
	}
	host, port := addr[:i], addr[i+1:]
	if port == "" {
		return bad("empty port")
	}
	p := 0
	for j := 0; j < len(port); j++ {
		c := port[j]
		if c < '0' || c > '9' {
			return bad("port " + strconv.Quote(truncate(port, 16)) + " is not a number")
		}
		if p = p*10 + int(c-'0'); p > 65535 {
			return bad("port " + truncate(port, 16) + " is above 65535")
		}
	}
	if p == 0 {
		return denied("port 0 is never served")
	}
	if strings.HasPrefix(host, "[") {
		if !strings.HasSuffix(host, "]") {
			return bad("unclosed '[' in the host")
		}
		ip, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !ip.Is6() {
			return bad("not an IPv6 address in brackets")
		}
		return checkIP(ip, bad, denied)
	}
	if host == "" {
		return bad("empty host")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Is6() {
			return bad("an IPv6 address needs brackets")
		}
		return checkIP(ip, bad, denied)
	}
	return checkName(host, bad)
}

func checkIP(ip netip.Addr, bad, denied func(string) error) error {
	if ip.Zone() != "" {
		return bad("an IPv6 zone names an interface of this host")
	}
	ip = ip.Unmap()
	switch {
	case ip.IsUnspecified():
		return denied("the unspecified address")
	case ip.Is4() && ip.As4()[0] == 0:
		return denied("0.0.0.0/8 is no destination (RFC 1122)")
	case ip.IsMulticast():
		return denied("a multicast address")
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return denied("the broadcast address")
	}
	return nil
}

// nameDelims are URI delimiters and unsafe bytes (RFC 3986 gen-delims,
// RFC 1738 unsafe): no host name has them, and a URL's host cannot carry
// them.
const nameDelims = "\"#%/:<>?@[\\]^`{|}"

// checkName refuses what no resolver answers: it is deliberately looser
// than RFC 1123 (underscores, which real names carry, and UTF-8 names an
// upstream may convert to IDNA pass).
func checkName(host string, bad func(string) error) error {
	name := strings.TrimSuffix(host, ".")
	switch {
	case len(name) > 253:
		return bad("host name longer than 253 bytes")
	case name == "":
		return bad("empty host name")
	case !utf8.ValidString(name):
		return bad("host name is not UTF-8")
	}
	start := 0
	for j := 0; j <= len(name); j++ {
		if j < len(name) && name[j] != '.' {
			if c := name[j]; c <= ' ' || c == 0x7f || strings.IndexByte(nameDelims, c) >= 0 {
				return bad("byte " + strconv.QuoteRune(rune(c)) + " in a host name")
			}
			continue
		}
		switch l := j - start; {
		case l == 0:
			return bad("empty label in the host name")
		case l > 63:
			return bad("label longer than 63 bytes")
		}
		start = j + 1
	}
	if last := name[strings.LastIndexByte(name, '.')+1:]; numeric(last) {
		// WHATWG URL's "ends in a number": an IPv4 address or nothing
		return bad("a number that is not a dotted-quad IPv4 address")
	}
	return nil
}

// numeric reports a decimal or 0x-hexadecimal number.
func numeric(s string) bool {
	if len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") {
		for j := 2; j < len(s); j++ {
			if !strings.ContainsRune("0123456789abcdefABCDEF", rune(s[j])) {
				return false
			}
		}
		return true
	}
	for j := 0; j < len(s); j++ {
		if s[j] < '0' || s[j] > '9' {
			return false
		}
	}
	return s != ""
}
