package dial

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// proxypool's own SOCKS clients: SOCKS4/4a, which mihomo lacks, and a
// minimal SOCKS5 client for local tor SocksPorts (kind "tor"), which reports
// tor's SOCKS reply codes instead of ignoring them.

var netDialer = &net.Dialer{}

// aLongTimeAgo is a deadline in the past, used to unblock I/O on cancel.
var aLongTimeAgo = time.Unix(1, 0)

// connectWithin dials server and arranges that ctx ending (deadline or
// cancel) unblocks the handshake run by hs; the conn is returned with no
// deadline.
func connectWithin(ctx context.Context, server string, hs func(c net.Conn) error) (net.Conn, error) {
	c, err := netDialer.DialContext(ctx, "tcp", server)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(aLongTimeAgo) })
	err = hs(c)
	if !stop() {
		// ctx ended during the handshake: report that, not the I/O error.
		if err == nil {
			err = ctx.Err()
		} else {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
	}
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func splitTarget(addr string) (host string, port uint16, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("parsing target %q: %w", addr, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("parsing target %q: bad port", addr)
	}
	return h, uint16(n), nil
}

type socks4Dialer struct{ server, user string }

func (d *socks4Dialer) close() error { return nil }

func (d *socks4Dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	host, port, err := splitTarget(addr)
	if err != nil {
		return nil, err
	}
	req := make([]byte, 0, 10+len(d.user)+len(host))
	req = append(req, 4, 1, byte(port>>8), byte(port))
	ip, perr := netip.ParseAddr(host)
	switch {
	case perr == nil && ip.Unmap().Is4():
		b := ip.Unmap().As4()
		req = append(req, b[:]...)
		req = append(req, d.user...)
		req = append(req, 0)
	case perr == nil:
		return nil, &causeError{UnreachableCause, fmt.Sprintf("socks4 cannot carry IPv6 target %s", host)}
	default: // SOCKS4a: 0.0.0.1 then the name after the user id
		if len(host) > 255 {
			return nil, fmt.Errorf("parsing target %q: host name too long", addr)
		}
		req = append(req, 0, 0, 0, 1)
		req = append(req, d.user...)
		req = append(req, 0)
		req = append(req, host...)
		req = append(req, 0)
	}
	return connectWithin(ctx, d.server, func(c net.Conn) error {
		if _, err := c.Write(req); err != nil {
			return err
		}
		var rep [8]byte
		if _, err := io.ReadFull(c, rep[:]); err != nil {
			return err
		}
		if rep[0] != 0 && rep[0] != 4 { // some servers echo version 4
			return &causeError{HandshakeCause, fmt.Sprintf("socks4: bad reply version %d", rep[0])}
		}
		switch rep[1] {
		case 90:
			return nil
		case 91:
			return &causeError{RefusedCause, "socks4: request rejected or failed (91)"}
		case 92, 93:
			return &causeError{AuthCause, fmt.Sprintf("socks4: identd check failed (%d)", rep[1])}
		}
		return &causeError{HandshakeCause, fmt.Sprintf("socks4: bad reply code %d", rep[1])}
	})
}

type socks5Dialer struct{ server, user, pass string }

func (d *socks5Dialer) close() error { return nil }

var socks5Replies = [...]struct {
	cause Cause
	text  string
}{
	1: {OtherCause, "general failure"},
	2: {RefusedCause, "connection not allowed by ruleset"},
	3: {UnreachableCause, "network unreachable"},
	4: {UnreachableCause, "host unreachable"},
	5: {RefusedCause, "connection refused"},
	6: {TimeoutCause, "TTL expired"},
	7: {HandshakeCause, "command not supported"},
	8: {HandshakeCause, "address type not supported"},
}

func (d *socks5Dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	host, port, err := splitTarget(addr)
	if err != nil {
		return nil, err
	}
	req := make([]byte, 0, 22+len(host))
	req = append(req, 5, 1, 0)
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.Is4() {
			b := ip.As4()
			req = append(req, 1)
			req = append(req, b[:]...)
		} else {
			b := ip.As16()
			req = append(req, 4)
			req = append(req, b[:]...)
		}
	} else {
		if len(host) > 255 {
			return nil, fmt.Errorf("parsing target %q: host name too long", addr)
		}
		req = append(req, 3, byte(len(host)))
		req = append(req, host...)
	}
	req = append(req, byte(port>>8), byte(port))
	return connectWithin(ctx, d.server, func(c net.Conn) error {
		var buf [4 + 255 + 2]byte
		greet := []byte{5, 1, 0}
		if d.user != "" {
			greet = []byte{5, 2, 0, 2}
		}
		if _, err := c.Write(greet); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, buf[:2]); err != nil {
			return err
		}
		if buf[0] != 5 {
			return &causeError{HandshakeCause, fmt.Sprintf("socks5: bad version %d", buf[0])}
		}
		switch buf[1] {
		case 0:
		case 2:
			if d.user == "" {
				return &causeError{AuthCause, "socks5: server wants a password"}
			}
			if len(d.user) > 255 || len(d.pass) > 255 {
				return &causeError{AuthCause, "socks5: username or password too long"}
			}
			a := make([]byte, 0, 3+len(d.user)+len(d.pass))
			a = append(a, 1, byte(len(d.user)))
			a = append(a, d.user...)
			a = append(a, byte(len(d.pass)))
			a = append(a, d.pass...)
			if _, err := c.Write(a); err != nil {
				return err
			}
			if _, err := io.ReadFull(c, buf[:2]); err != nil {
				return err
			}
			if buf[1] != 0 {
				return &causeError{AuthCause, "socks5: username/password rejected"}
			}
		case 0xff:
			return &causeError{AuthCause, "socks5: no acceptable auth method"}
		default:
			return &causeError{HandshakeCause, fmt.Sprintf("socks5: unexpected method %d", buf[1])}
		}
		if _, err := c.Write(req); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, buf[:5]); err != nil {
			return err
		}
		if buf[0] != 5 {
			return &causeError{HandshakeCause, fmt.Sprintf("socks5: bad reply version %d", buf[0])}
		}
		if rep := buf[1]; rep != 0 {
			if int(rep) < len(socks5Replies) {
				r := socks5Replies[rep]
				return &causeError{r.cause, "socks5: " + r.text}
			}
			return &causeError{HandshakeCause, fmt.Sprintf("socks5: bad reply code %d", rep)}
		}
		var rest int // bytes of BND.ADDR+PORT left after the 5 read
		switch buf[3] {
		case 1:
			rest = 4 - 1 + 2
		case 4:
			rest = 16 - 1 + 2
		case 3:
			rest = int(buf[4]) + 2
		default:
			return &causeError{HandshakeCause, fmt.Sprintf("socks5: bad address type %d", buf[3])}
		}
		if _, err := io.ReadFull(c, buf[:rest]); err != nil {
			return err
		}
		return nil
	})
}
