package socks

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/proxypool/proxypool/internal/upstream"
)

// The SOCKS5 codec: every SOCKS5 message of a CONNECT session, parsed from
// and appended to byte slices, with no I/O. The server handshake here, the
// dial client and the gateway's event loops all speak through it, so the
// wire format and the meaning of each reply code live in one place.
//
// Parse functions return the number of bytes the message took; ErrShort
// when b holds only a prefix of a valid message (read more and call again);
// any other error is a *ProtocolError naming what was wrong.

// ErrShort: b is a valid prefix of the message; more bytes are needed.
var ErrShort = errors.New("socks5: message incomplete")

// ProtocolError is a message that cannot be valid however many bytes follow.
type ProtocolError struct {
	What string // "greeting", "method choice", "auth", "auth reply", "request", "reply"
	Msg  string
}

func (e *ProtocolError) Error() string { return "socks5: " + e.What + ": " + e.Msg }

func protoErr(what, format string, a ...any) error {
	return &ProtocolError{What: what, Msg: fmt.Sprintf(format, a...)}
}

// SOCKS5 method numbers (RFC 1928 §3).
const (
	MethodNone     byte = 0x00
	MethodUserPass byte = 0x02
	MethodNoGood   byte = 0xff
)

// CmdConnect is the only command spoken here.
const CmdConnect byte = 0x01

// ReplyInfo is what a reply code says: its RFC 1928 text, and the cause a
// client should blame (the target causes do not count against the
// upstream).
type ReplyInfo struct {
	Text  string
	Cause upstream.Cause
}

// replies is the one reply-code table of the project (RFC 1928 §6).
// Codes 3-6 say the upstream works but could not reach the target; 2 and
// 8 that its rules or its build refuse this request (an ACL, an IPv6 or
// name target it does not take): the request's doing, so nothing is
// counted, but another upstream may carry it. 1 is ambiguous (microsocks
// answers it for connect errors it has no code for) and counts, within
// the per-client ejection budget; 7 is a breach, as only CONNECT is sent.
var replies = [...]ReplyInfo{
	Succeeded:          {"succeeded", upstream.CauseNone},
	GeneralFailure:     {"general failure", upstream.CauseOther},
	NotAllowed:         {"connection not allowed by ruleset", upstream.CauseTargetDenied},
	NetworkUnreachable: {"network unreachable", upstream.CauseTargetUnreachable},
	HostUnreachable:    {"host unreachable", upstream.CauseTargetUnreachable},
	ConnectionRefused:  {"connection refused", upstream.CauseTargetRefused},
	TTLExpired:         {"TTL expired", upstream.CauseTargetTimeout},
	CommandUnsupported: {"command not supported", upstream.CauseHandshake},
	AddressUnsupported: {"address type not supported", upstream.CauseTargetDenied},
}

// ReplyCode describes a reply code; unknown codes are a protocol breach
// (CauseHandshake).
func ReplyCode(code byte) ReplyInfo {
	if int(code) < len(replies) {
		return replies[code]
	}
	return ReplyInfo{"unknown reply code " + strconv.Itoa(int(code)), upstream.CauseHandshake}
}

// ReplyFor is the code a proxy answers its client with when the last try
// failed for c: the table above read backwards, a failure of the upstream
// itself answered like the same failure beyond it.
func ReplyFor(c upstream.Cause) byte {
	switch c {
	case upstream.CauseRefused, upstream.CauseTargetRefused:
		return ConnectionRefused
	case upstream.CauseTimeout, upstream.CauseTargetTimeout:
		return TTLExpired
	case upstream.CauseUnreachable, upstream.CauseDNS, upstream.CauseTargetUnreachable:
		return HostUnreachable
	case upstream.CauseTargetDenied:
		return NotAllowed
	}
	return GeneralFailure
}

// AppendGreeting appends a client greeting offering methods.
func AppendGreeting(b []byte, methods ...byte) []byte {
	b = append(b, Version5, byte(len(methods)))
	return append(b, methods...)
}

// ParseGreeting parses a client greeting (after which the server chooses a
// method). methods aliases b.
func ParseGreeting(b []byte) (methods []byte, n int, err error) {
	if len(b) < 2 {
		if len(b) == 1 && b[0] != Version5 {
			return nil, 0, protoErr("greeting", "version %d", b[0])
		}
		return nil, 0, ErrShort
	}
	if b[0] != Version5 {
		return nil, 0, protoErr("greeting", "version %d", b[0])
	}
	if b[1] == 0 {
		return nil, 0, protoErr("greeting", "no methods offered")
	}
	n = 2 + int(b[1])
	if len(b) < n {
		return nil, 0, ErrShort
	}
	return b[2:n], n, nil
}

// AppendMethod appends the server's method choice.
func AppendMethod(b []byte, method byte) []byte { return append(b, Version5, method) }

// ParseMethod parses the server's method choice.
func ParseMethod(b []byte) (method byte, n int, err error) {
	if len(b) < 2 {
		return 0, 0, ErrShort
	}
	if b[0] != Version5 {
		return 0, 0, protoErr("method choice", "version %d", b[0])
	}
	return b[1], 2, nil
}

// AppendUserPass appends a username/password request (RFC 1929).
func AppendUserPass(b []byte, user, pass string) ([]byte, error) {
	if len(user) > 255 || len(pass) > 255 {
		return b, protoErr("auth", "username or password longer than 255 bytes")
	}
	b = append(b, 1, byte(len(user)))
	b = append(b, user...)
	b = append(b, byte(len(pass)))
	return append(b, pass...), nil
}

// ParseUserPass parses a username/password request (RFC 1929).
func ParseUserPass(b []byte) (user, pass string, n int, err error) {
	if len(b) >= 1 && b[0] != 1 {
		return "", "", 0, protoErr("auth", "subnegotiation version %d", b[0])
	}
	if len(b) < 2 {
		return "", "", 0, ErrShort
	}
	ul := int(b[1])
	if len(b) < 3+ul {
		return "", "", 0, ErrShort
	}
	pl := int(b[2+ul])
	n = 3 + ul + pl
	if len(b) < n {
		return "", "", 0, ErrShort
	}
	return string(b[2 : 2+ul]), string(b[3+ul : n]), n, nil
}

// AppendAuthReply appends the server's username/password status.
func AppendAuthReply(b []byte, ok bool) []byte {
	if ok {
		return append(b, 1, 0)
	}
	return append(b, 1, 1)
}

// ParseAuthReply parses the username/password status; ok is false when the
// server refused the credentials. Some servers answer version 5 here
// instead of 1; the status byte is what matters.
func ParseAuthReply(b []byte) (ok bool, n int, err error) {
	if len(b) < 2 {
		return false, 0, ErrShort
	}
	if b[0] != 1 && b[0] != Version5 {
		return false, 0, protoErr("auth reply", "version %d", b[0])
	}
	return b[1] == 0, 2, nil
}

// appendAddr appends ATYP ADDR PORT for host (an IP literal or a name,
// sent unresolved).
func appendAddr(b []byte, what, host string, port uint16) ([]byte, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.Is4() {
			a := ip.As4()
			b = append(append(b, atypIPv4), a[:]...)
		} else {
			a := ip.As16()
			b = append(append(b, atypIPv6), a[:]...)
		}
	} else {
		if len(host) == 0 || len(host) > 255 {
			return b, protoErr(what, "host name of %d bytes", len(host))
		}
		b = append(append(b, atypDomain, byte(len(host))), host...)
	}
	return append(b, byte(port>>8), byte(port)), nil
}

// parseAddr parses ATYP ADDR PORT at the start of b.
func parseAddr(b []byte, what string) (host string, port uint16, n int, err error) {
	if len(b) < 1 {
		return "", 0, 0, ErrShort
	}
	switch b[0] {
	case atypIPv4:
		n = 1 + 4 + 2
	case atypIPv6:
		n = 1 + 16 + 2
	case atypDomain:
		if len(b) < 2 {
			return "", 0, 0, ErrShort
		}
		n = 2 + int(b[1]) + 2
	default:
		return "", 0, 0, &AddrTypeError{What: what, Type: b[0]}
	}
	if len(b) < n {
		return "", 0, 0, ErrShort
	}
	switch b[0] {
	case atypIPv4:
		host = netip.AddrFrom4([4]byte(b[1:5])).String()
	case atypIPv6:
		host = netip.AddrFrom16([16]byte(b[1:17])).String()
	default:
		host = string(b[2 : 2+int(b[1])])
	}
	return host, uint16(b[n-2])<<8 | uint16(b[n-1]), n, nil
}

// AddrTypeError is an unknown address type; a server answers it with
// AddressUnsupported.
type AddrTypeError struct {
	What string
	Type byte
}

func (e *AddrTypeError) Error() string {
	return "socks5: " + e.What + ": address type " + strconv.Itoa(int(e.Type))
}

// AppendRequest appends a request (cmd is CmdConnect) for host:port.
func AppendRequest(b []byte, cmd byte, host string, port uint16) ([]byte, error) {
	return appendAddr(append(b, Version5, cmd, 0), "request", host, port)
}

// ParseRequest parses a client request. The caller checks cmd (and
// answers CommandUnsupported when it is not CmdConnect).
func ParseRequest(b []byte) (cmd byte, host string, port uint16, n int, err error) {
	if len(b) >= 1 && b[0] != Version5 {
		return 0, "", 0, 0, protoErr("request", "version %d", b[0])
	}
	if len(b) < 3 {
		return 0, "", 0, 0, ErrShort
	}
	host, port, n, err = parseAddr(b[3:], "request")
	if err != nil {
		return 0, "", 0, 0, err
	}
	return b[1], host, port, 3 + n, nil
}

// AppendReply appends a reply with an all-zero IPv4 bound address: clients
// (curl, Go's x/net/proxy) ignore it, and it saves a getsockname.
func AppendReply(b []byte, code byte) []byte {
	return append(b, Version5, code, 0, atypIPv4, 0, 0, 0, 0, 0, 0)
}

// ParseReply parses the server's reply to a request; code is Succeeded or
// a refusal (see ReplyCode). Bytes after n belong to the tunnel.
func ParseReply(b []byte) (code byte, n int, err error) {
	if len(b) >= 1 && b[0] != Version5 {
		return 0, 0, protoErr("reply", "version %d", b[0])
	}
	if len(b) < 3 {
		return 0, 0, ErrShort
	}
	_, _, n, err = parseAddr(b[3:], "reply")
	if err != nil {
		return 0, 0, err
	}
	return b[1], 3 + n, nil
}
