package socks

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// Client is the client side of SOCKS5 CONNECT.
type Client struct {
	User, Password string
	// Pipeline sends greeting, credentials and request in one write
	// instead of waiting for each answer (one round trip instead of two or
	// three). Servers that read with a buffer accept it; a few embedded
	// ones do not.
	Pipeline bool
}

// Connect asks the SOCKS5 server at the other end of rw to CONNECT to addr
// ("host:port"; host names are sent unresolved). It reads exactly the
// server's answers, so rw carries the tunnel when it returns nil. A refusal
// is a *ReplyError.
func (cl Client) Connect(rw io.ReadWriter, addr string) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("socks5: bad target %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return fmt.Errorf("socks5: bad port in %q", addr)
	}
	var b [600]byte
	buf := b[:0]
	method := byte(methodNone)
	if cl.User != "" || cl.Password != "" {
		method = methodUser
		if len(cl.User) > 255 || len(cl.Password) > 255 {
			return errors.New("socks5: username or password longer than 255 bytes")
		}
	}
	buf = append(buf, Version5, 1, method)
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		_, err := rw.Write(buf)
		buf = buf[:0]
		return err
	}
	if !cl.Pipeline {
		if err := flush(); err != nil {
			return fmt.Errorf("socks5: writing greeting: %w", err)
		}
		if err := readMethod(rw, method); err != nil {
			return err
		}
	}
	if method == methodUser {
		buf = append(buf, 1, byte(len(cl.User)))
		buf = append(buf, cl.User...)
		buf = append(buf, byte(len(cl.Password)))
		buf = append(buf, cl.Password...)
		if !cl.Pipeline {
			if err := flush(); err != nil {
				return fmt.Errorf("socks5: writing credentials: %w", err)
			}
			if err := readAuthStatus(rw); err != nil {
				return err
			}
		}
	}
	buf = append(buf, Version5, cmdConnect, 0)
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Is4() {
			a := ip.As4()
			buf = append(buf, atypIPv4)
			buf = append(buf, a[:]...)
		} else {
			a := ip.As16()
			buf = append(buf, atypIPv6)
			buf = append(buf, a[:]...)
		}
	} else {
		if len(host) > 255 {
			return fmt.Errorf("socks5: host name longer than 255 bytes")
		}
		buf = append(buf, atypDomain, byte(len(host)))
		buf = append(buf, host...)
	}
	buf = append(buf, byte(port>>8), byte(port))
	if err := flush(); err != nil {
		return fmt.Errorf("socks5: writing request: %w", err)
	}
	if cl.Pipeline {
		if err := readMethod(rw, method); err != nil {
			return err
		}
		if method == methodUser {
			if err := readAuthStatus(rw); err != nil {
				return err
			}
		}
	}
	return readReply(rw)
}

func readMethod(r io.Reader, want byte) error {
	var m [2]byte
	if _, err := io.ReadFull(r, m[:]); err != nil {
		return fmt.Errorf("socks5: reading method: %w", err)
	}
	if m[0] != Version5 {
		return fmt.Errorf("socks5: server answered version %d", m[0])
	}
	if m[1] != want {
		if m[1] == methodNoGood {
			return fmt.Errorf("%w: server accepts none of our methods", ErrAuth)
		}
		return fmt.Errorf("socks5: server chose method %d", m[1])
	}
	return nil
}

func readAuthStatus(r io.Reader) error {
	var s [2]byte
	if _, err := io.ReadFull(r, s[:]); err != nil {
		return fmt.Errorf("socks5: reading auth status: %w", err)
	}
	if s[1] != 0 {
		return fmt.Errorf("%w: credentials refused", ErrAuth)
	}
	return nil
}

func readReply(r io.Reader) error {
	var b [262]byte
	if _, err := io.ReadFull(r, b[:5]); err != nil {
		return fmt.Errorf("socks5: reading reply: %w", err)
	}
	if b[0] != Version5 {
		return fmt.Errorf("socks5: reply version %d", b[0])
	}
	var rest int
	switch b[3] {
	case atypIPv4:
		rest = 4 - 1 + 2
	case atypIPv6:
		rest = 16 - 1 + 2
	case atypDomain:
		rest = int(b[4]) + 2
	default:
		return fmt.Errorf("socks5: reply address type %d", b[3])
	}
	if _, err := io.ReadFull(r, b[5:5+rest]); err != nil {
		return fmt.Errorf("socks5: reading reply address: %w", err)
	}
	if b[1] != Succeeded {
		return &ReplyError{Code: b[1]}
	}
	return nil
}
