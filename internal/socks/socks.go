package socks

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// Protocol versions (the first byte of a session).
const (
	Version4 byte = 4
	Version5 byte = 5
)

// SOCKS5 reply codes (RFC 1928 §6). Reply maps them to SOCKS4's 90/91.
const (
	Succeeded          byte = 0x00
	GeneralFailure     byte = 0x01
	NotAllowed         byte = 0x02
	NetworkUnreachable byte = 0x03
	HostUnreachable    byte = 0x04
	ConnectionRefused  byte = 0x05
	TTLExpired         byte = 0x06
	CommandUnsupported byte = 0x07
	AddressUnsupported byte = 0x08
)

const (
	cmdConnect = CmdConnect
	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

// ErrAuth is wrapped by ServerHandshake when the client's credentials are
// refused (or it offered none while the server requires them).
var ErrAuth = errors.New("socks: authentication failed")

// ReplyError is a non-success reply: returned by Connect when the server
// refuses, and by ServerHandshake for unsupported commands/addresses (after
// it has already answered the client).
type ReplyError struct {
	Code byte
}

func (e *ReplyError) Error() string { return "socks5: " + CodeText(e.Code) }

// CodeText names a SOCKS5 reply code.
func CodeText(code byte) string { return ReplyCode(code).Text }

// Request is one client CONNECT request as read by ServerHandshake.
type Request struct {
	Version  byte   // Version4 or Version5
	Addr     string // "host:port"; host names unresolved
	User     string // SOCKS5 username or SOCKS4 user id ("" when none)
	Password string // SOCKS5 password; SOCKS4 "user:pass" user ids are split
}

// AuthFunc checks credentials. required reports whether clients that offer
// no credentials are refused.
type AuthFunc func(user, password string) error

// ServerHandshake reads a SOCKS4/4a/5 greeting and CONNECT request from r,
// writing the SOCKS5 method selection and user/pass status to w. auth may be
// nil (anything goes); when requireAuth is true, clients without
// credentials are refused. It does not send the final reply: call Reply once
// the outcome of the CONNECT is known. Errors wrap ErrAuth for refused
// credentials; protocol errors name the field that was wrong.
func ServerHandshake(r *bufio.Reader, w io.Writer, auth AuthFunc, requireAuth bool) (Request, error) {
	ver, err := r.ReadByte()
	if err != nil {
		return Request{}, fmt.Errorf("reading version: %w", err)
	}
	switch ver {
	case Version5:
		return handshake5(r, w, auth, requireAuth)
	case Version4:
		return handshake4(r, w, auth, requireAuth)
	}
	return Request{}, fmt.Errorf("socks: bad version %d", ver)
}

// readMsg feeds r's bytes to parse until it holds a whole message, then
// consumes it. Peek blocks only for bytes the message still needs, so a
// pipelined client's next message stays buffered for the next call.
func readMsg(r *bufio.Reader, parse func(b []byte) (int, error)) error {
	for want := 1; ; {
		b, perr := r.Peek(max(want, r.Buffered()))
		n, err := parse(b)
		switch {
		case err == nil:
			r.Discard(n)
			return nil
		case !errors.Is(err, ErrShort):
			return err
		case perr != nil:
			return perr
		}
		want = len(b) + 1
	}
}

func handshake5(r *bufio.Reader, w io.Writer, auth AuthFunc, requireAuth bool) (Request, error) {
	req := Request{Version: Version5}
	r.UnreadByte() // the version, read by ServerHandshake: the greeting starts with it
	var hasNone, hasUser bool
	err := readMsg(r, func(b []byte) (int, error) {
		methods, n, err := ParseGreeting(b)
		for _, m := range methods {
			hasNone = hasNone || m == MethodNone
			hasUser = hasUser || m == MethodUserPass
		}
		return n, err
	})
	var pe *ProtocolError
	if err != nil {
		if errors.As(err, &pe) { // answered, as RFC 1928 allows: no method
			w.Write([]byte{Version5, MethodNoGood})
		}
		return req, fmt.Errorf("reading greeting: %w", err)
	}
	var out [10]byte
	// Prefer user/pass when offered: the username carries parameters
	// (session, country) even when no password is checked.
	switch {
	case hasUser:
		if _, err := w.Write(AppendMethod(out[:0], MethodUserPass)); err != nil {
			return req, err
		}
		err := readMsg(r, func(b []byte) (n int, err error) {
			req.User, req.Password, n, err = ParseUserPass(b)
			return n, err
		})
		if err != nil {
			if errors.As(err, &pe) {
				w.Write(AppendAuthReply(out[:0], false))
			}
			return req, fmt.Errorf("reading credentials: %w", err)
		}
		var aerr error
		if auth != nil {
			aerr = auth(req.User, req.Password)
		}
		if _, err := w.Write(AppendAuthReply(out[:0], aerr == nil)); err != nil {
			return req, err
		}
		if aerr != nil {
			return req, fmt.Errorf("%w: %w", ErrAuth, aerr)
		}
	case hasNone && !requireAuth:
		if _, err := w.Write(AppendMethod(out[:0], MethodNone)); err != nil {
			return req, err
		}
	default:
		w.Write(AppendMethod(out[:0], MethodNoGood))
		return req, fmt.Errorf("%w: client offered no acceptable method", ErrAuth)
	}
	var cmd byte
	var host string
	var port uint16
	err = readMsg(r, func(b []byte) (n int, err error) {
		cmd, host, port, n, err = ParseRequest(b)
		return n, err
	})
	var ate *AddrTypeError
	switch {
	case errors.As(err, &ate):
		Reply(w, Version5, AddressUnsupported)
		return req, &ReplyError{AddressUnsupported}
	case errors.As(err, &pe):
		Reply(w, Version5, GeneralFailure)
		return req, fmt.Errorf("reading request: %w", err)
	case err != nil:
		return req, fmt.Errorf("reading request: %w", err)
	case cmd != CmdConnect:
		Reply(w, Version5, CommandUnsupported)
		return req, &ReplyError{CommandUnsupported}
	}
	req.Addr = joinHostPort(host, int(port))
	return req, nil
}

func handshake4(r *bufio.Reader, w io.Writer, auth AuthFunc, requireAuth bool) (Request, error) {
	req := Request{Version: Version4}
	h, err := r.Peek(7) // CD DSTPORT(2) DSTIP(4)
	if err != nil {
		return req, fmt.Errorf("reading socks4 request: %w", err)
	}
	cmd := h[0]
	port := int(h[1])<<8 | int(h[2])
	var ip [4]byte
	copy(ip[:], h[3:7])
	r.Discard(7)
	userid, err := r.ReadString(0)
	if err != nil {
		return req, fmt.Errorf("reading socks4 user id: %w", err)
	}
	userid = userid[:len(userid)-1]
	var host string
	if ip[0] == 0 && ip[1] == 0 && ip[2] == 0 && ip[3] != 0 { // 4a
		host, err = r.ReadString(0)
		if err != nil {
			return req, fmt.Errorf("reading socks4a host: %w", err)
		}
		host = host[:len(host)-1]
	} else {
		host = netip.AddrFrom4(ip).String()
	}
	if cmd != cmdConnect {
		Reply(w, Version4, CommandUnsupported)
		return req, &ReplyError{CommandUnsupported}
	}
	req.User = userid
	for i := 0; i < len(userid); i++ {
		if userid[i] == ':' {
			req.User, req.Password = userid[:i], userid[i+1:]
			break
		}
	}
	if req.User == "" && requireAuth {
		Reply(w, Version4, NotAllowed)
		return req, fmt.Errorf("%w: socks4 client sent no user id", ErrAuth)
	}
	if auth != nil && (req.User != "" || requireAuth) {
		if err := auth(req.User, req.Password); err != nil {
			Reply(w, Version4, NotAllowed)
			return req, fmt.Errorf("%w: %w", ErrAuth, err)
		}
	}
	req.Addr = joinHostPort(host, port)
	return req, nil
}

func joinHostPort(host string, port int) string {
	if len(host) > 0 && host[0] != '[' {
		for i := 0; i < len(host); i++ {
			if host[i] == ':' {
				return net.JoinHostPort(host, strconv.Itoa(port))
			}
		}
	}
	return host + ":" + strconv.Itoa(port)
}

// Reply writes the final reply to a request of the given version. code is a
// SOCKS5 code; for SOCKS4 any failure becomes 91 (rejected or failed).
func Reply(w io.Writer, version byte, code byte) error {
	if version == Version4 {
		cd := byte(90)
		if code != Succeeded {
			cd = 91
		}
		_, err := w.Write([]byte{0, cd, 0, 0, 0, 0, 0, 0})
		return err
	}
	var b [10]byte
	_, err := w.Write(AppendReply(b[:0], code))
	return err
}
