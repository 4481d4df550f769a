package socks

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// ErrPipelineStalled: the server answered the first message of a
// pipelined handshake and then went quiet or closed. Servers that read one
// message per read (microsocks) drop what they did not ask for yet; the
// caller redials with Pipeline off.
var ErrPipelineStalled = errors.New("socks5: server stalled after the first reply to a pipelined handshake")

// Client is the client side of SOCKS5 CONNECT.
type Client struct {
	User, Password string
	// Pipeline sends greeting, credentials and request in one write
	// instead of waiting for each answer (one round trip instead of two or
	// three). Set it only for a server known to accept it: RFC 1928 has
	// the client wait for each reply, and some servers drop the rest.
	Pipeline bool
	// Stall bounds the wait for the second reply of a pipelined handshake
	// when rw has read deadlines (default: half the time left before
	// Deadline, at most 1s, so a sequential retry still fits); Deadline is
	// the one to put back afterwards (zero: none).
	Stall    time.Duration
	Deadline time.Time
}

// Connect asks the SOCKS5 server at the other end of rw to CONNECT to addr
// ("host:port"; host names are sent unresolved). It reads exactly the
// server's answers, so rw carries the tunnel when it returns nil. A refusal
// is a *ReplyError; refused credentials wrap ErrAuth; a pipelined
// handshake the server did not follow wraps ErrPipelineStalled.
func (cl Client) Connect(rw io.ReadWriter, addr string) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("socks5: bad target %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return fmt.Errorf("socks5: bad port in %q", addr)
	}
	auth := cl.User != "" || cl.Password != ""
	var b [3 + 3 + 255 + 255 + 6 + 255 + 2]byte
	out := b[:0]
	if auth {
		out = AppendGreeting(out, MethodUserPass)
	} else {
		out = AppendGreeting(out, MethodNone)
	}
	greet := len(out)
	if auth {
		if out, err = AppendUserPass(out, cl.User, cl.Password); err != nil {
			return err
		}
	}
	creds := len(out)
	if out, err = AppendRequest(out, CmdConnect, host, uint16(port)); err != nil {
		return err
	}
	want := MethodNone
	if auth {
		want = MethodUserPass
	}
	var in [4 + 255 + 2]byte
	if cl.Pipeline {
		if _, err := rw.Write(out); err != nil {
			return fmt.Errorf("socks5: writing handshake: %w", err)
		}
		if err := readMethod(rw, in[:], want); err != nil {
			return err
		}
		// The first reply came: a server that dropped the rest
		// answers nothing more, or closes.
		dl, hasDL := rw.(interface{ SetReadDeadline(time.Time) error })
		if hasDL {
			stall := cl.Stall
			if stall <= 0 {
				stall = time.Second
				if !cl.Deadline.IsZero() {
					stall = min(stall, time.Until(cl.Deadline)/2)
				}
			}
			t := time.Now().Add(stall)
			if !cl.Deadline.IsZero() && cl.Deadline.Before(t) {
				t = cl.Deadline
			}
			dl.SetReadDeadline(t)
		}
		if _, err := io.ReadFull(rw, in[:1]); err != nil {
			var ne net.Error
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || (errors.As(err, &ne) && ne.Timeout() && (cl.Deadline.IsZero() || time.Now().Before(cl.Deadline))) {
				return fmt.Errorf("%w (%v)", ErrPipelineStalled, err)
			}
			return fmt.Errorf("socks5: reading second reply: %w", err)
		}
		if hasDL {
			dl.SetReadDeadline(cl.Deadline)
		}
		got := 1
		if auth {
			if err := readAuth(rw, in[:], got); err != nil {
				return err
			}
			got = 0
		}
		return readReply(rw, in[:], got)
	}
	if _, err := rw.Write(out[:greet]); err != nil {
		return fmt.Errorf("socks5: writing greeting: %w", err)
	}
	if err := readMethod(rw, in[:], want); err != nil {
		return err
	}
	if auth {
		if _, err := rw.Write(out[greet:creds]); err != nil {
			return fmt.Errorf("socks5: writing credentials: %w", err)
		}
		if err := readAuth(rw, in[:], 0); err != nil {
			return err
		}
	}
	if _, err := rw.Write(out[creds:]); err != nil {
		return fmt.Errorf("socks5: writing request: %w", err)
	}
	return readReply(rw, in[:], 0)
}

func readMethod(r io.Reader, in []byte, want byte) error {
	if _, err := io.ReadFull(r, in[:2]); err != nil {
		return fmt.Errorf("socks5: reading method choice: %w", err)
	}
	m, _, err := ParseMethod(in[:2])
	switch {
	case err != nil:
		return err
	case m == want:
		return nil
	case m == MethodNoGood:
		return fmt.Errorf("%w: server accepts none of our methods", ErrAuth)
	case m == MethodUserPass:
		return fmt.Errorf("%w: server wants a password", ErrAuth)
	}
	return &ProtocolError{What: "method choice", Msg: "server chose method " + strconv.Itoa(int(m))}
}

// readAuth reads the auth status; the first got bytes are in in already.
func readAuth(r io.Reader, in []byte, got int) error {
	if _, err := io.ReadFull(r, in[got:2]); err != nil {
		return fmt.Errorf("socks5: reading auth status: %w", err)
	}
	ok, _, err := ParseAuthReply(in[:2])
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: credentials refused", ErrAuth)
	}
	return nil
}

// readReply reads the reply exactly (never a byte of the tunnel); the
// first got bytes are in in already.
func readReply(r io.Reader, in []byte, got int) error {
	if _, err := io.ReadFull(r, in[got:5]); err != nil {
		return fmt.Errorf("socks5: reading reply: %w", err)
	}
	n := replyLen(in[:5])
	if n > 5 {
		if _, err := io.ReadFull(r, in[5:n]); err != nil {
			return fmt.Errorf("socks5: reading reply address: %w", err)
		}
	}
	code, _, err := ParseReply(in[:max(n, 5)])
	if err != nil {
		return err
	}
	if code != Succeeded {
		return &ReplyError{Code: code}
	}
	return nil
}

// replyLen is the length of the reply whose first 5 bytes are h (0 for an
// unknown address type, which ParseReply reports).
func replyLen(h []byte) int {
	switch h[3] {
	case atypIPv4:
		return 4 + 4 + 2
	case atypIPv6:
		return 4 + 16 + 2
	case atypDomain:
		return 5 + int(h[4]) + 2
	}
	return 0
}
