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
// minimal SOCKS5 client for kinds socks5 (without TLS) and tor: mihomo's
// SOCKS5 client ignores the reply code (a "host unreachable" answer
// becomes a successful dial); this one maps every code to a Cause.

// netDialer dials upstream servers. Keep-alive is off: a tunnel's idle
// timeout is the gateway's, and the probes would be two wasted syscalls.
var netDialer = &net.Dialer{KeepAlive: -1}

// aLongTimeAgo is a deadline in the past, used to unblock I/O on cancel.
var aLongTimeAgo = time.Unix(1, 0)

// connectWithin dials server and arranges that ctx ending (deadline or
// cancel) unblocks the handshake run by hs; the conn is returned with no
// deadline. ctx's own timer does the work: no deadline is set on the conn
// unless ctx ends during the handshake.
func connectWithin(ctx context.Context, server string, hs func(c net.Conn) error) (net.Conn, error) {
	// DialContext, not DialTCP with a zero local address: that binds
	// 0.0.0.0:0 before connecting, and a bound socket holds its ephemeral
	// port exclusively (not per destination), so a gateway relaying many
	// short tunnels ran out of ports (EADDRINUSE) within seconds.
	c, err := netDialer.DialContext(ctx, "tcp", server)
	if err != nil {
		return nil, err
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

type socks4Dialer struct {
	server string // "host:port"
	user   string
}

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
			// ambiguous (target down, or the server refuses us): counted
			// against the upstream.
			return &causeError{RefusedCause, "socks4: request rejected or failed (91)"}
		case 92, 93:
			return &causeError{AuthCause, fmt.Sprintf("socks4: identd check failed (%d)", rep[1])}
		}
		return &causeError{HandshakeCause, fmt.Sprintf("socks4: bad reply code %d", rep[1])}
	})
}

type socks5Dialer struct {
	server     string // "host:port"
	user, pass string
}

func (d *socks5Dialer) close() error { return nil }

// socks5Replies maps SOCKS5 reply codes to causes. Codes 3-6 say the
// upstream is working but could not reach the target: they are target
// causes, which do not count against the upstream.
var socks5Replies = [...]struct {
	cause Cause
	text  string
}{
	1: {OtherCause, "general failure"},
	2: {RefusedCause, "connection not allowed by ruleset"},
	3: {TargetUnreachableCause, "network unreachable"},
	4: {TargetUnreachableCause, "host unreachable"},
	5: {TargetRefusedCause, "connection refused"},
	6: {TargetTimeoutCause, "TTL expired"},
	7: {HandshakeCause, "command not supported"},
	8: {HandshakeCause, "address type not supported"},
}

// dial sends the greeting and the CONNECT request in one write when no
// password is configured (pipelined: one round trip), and greeting, then
// credentials+request in one write otherwise. The reply is read exactly
// (never past its end), so bytes the target sends first stay in the socket.
func (d *socks5Dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	host, port, err := splitTarget(addr)
	if err != nil {
		return nil, err
	}
	auth := d.user != "" || d.pass != ""
	if auth && (len(d.user) > 255 || len(d.pass) > 255) {
		return nil, &causeError{AuthCause, "socks5: username or password longer than 255 bytes"}
	}
	if len(host) > 255 {
		return nil, fmt.Errorf("parsing target %q: host name too long", addr)
	}
	var b [3 + 3 + 255 + 255 + 22 + 255]byte
	out := b[:0]
	if auth {
		out = append(out, 5, 2, 0, 2)
	} else {
		out = append(out, 5, 1, 0)
	}
	greetLen := len(out)
	if auth {
		out = append(out, 1, byte(len(d.user)))
		out = append(out, d.user...)
		out = append(out, byte(len(d.pass)))
		out = append(out, d.pass...)
	}
	authEnd := len(out)
	out = append(out, 5, 1, 0)
	if ip, err := netip.ParseAddr(host); err == nil {
		ip = ip.Unmap()
		if ip.Is4() {
			a := ip.As4()
			out = append(out, 1)
			out = append(out, a[:]...)
		} else {
			a := ip.As16()
			out = append(out, 4)
			out = append(out, a[:]...)
		}
	} else {
		out = append(out, 3, byte(len(host)))
		out = append(out, host...)
	}
	out = append(out, byte(port>>8), byte(port))
	var extra []byte
	c, err := connectWithin(ctx, d.server, func(c net.Conn) error {
		var err error
		extra, err = socks5Handshake(c, out, greetLen, authEnd, auth)
		return err
	})
	if err != nil || len(extra) == 0 {
		return c, err
	}
	return &prefixConn{Conn: c, pre: extra}, nil
}

// prefixConn returns bytes read past a SOCKS5 reply before reading on.
// Only a reply with a bound name of one or two bytes can leave any.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// CloseWrite keeps half-close working through the wrapper.
func (p *prefixConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return p.Conn.Close()
}

// socks5Handshake runs the client side over c. msg is greeting (up to
// greetLen), credentials (up to authEnd, when auth) and request. It
// returns bytes read past the reply (rare; see prefixConn).
func socks5Handshake(c net.Conn, msg []byte, greetLen, authEnd int, auth bool) ([]byte, error) {
	var in [2 + 2 + 4 + 1 + 255 + 2]byte
	var err error
	if !auth {
		// greeting + request in one write; then the method answer and the
		// reply, read as 12 bytes (method + a reply with an IPv4 address,
		// the usual case) in as few reads as they arrive in.
		if _, err = c.Write(msg); err != nil {
			return nil, err
		}
		n, err := io.ReadAtLeast(c, in[:12], 7)
		if n >= 2 {
			if merr := socks5Method(in[0], in[1], false); merr != nil {
				return nil, merr
			}
		}
		if err != nil {
			return nil, err
		}
		if err := socks5Code(in[2:7]); err != nil {
			return nil, err
		}
		total := 2 + 4 + 2
		switch in[5] {
		case 1:
			total += 4
		case 4:
			total += 16
		case 3:
			total += 1 + int(in[6])
		}
		if n < total {
			_, err = io.ReadFull(c, in[n:total])
			return nil, err
		}
		return append([]byte(nil), in[total:n]...), nil
	}
	return nil, socks5AuthHandshake(c, msg, greetLen, authEnd, in[:])
}

func socks5AuthHandshake(c net.Conn, msg []byte, greetLen, authEnd int, in []byte) error {
	var err error
	if _, err = c.Write(msg[:greetLen]); err != nil {
		return err
	}
	if _, err = io.ReadFull(c, in[:2]); err != nil {
		return err
	}
	if err := socks5Method(in[0], in[1], true); err != nil {
		return err
	}
	rest, wantAuth := msg[authEnd:], in[1] == 2
	if wantAuth {
		rest = msg[greetLen:] // credentials + request in one write
	}
	if _, err = c.Write(rest); err != nil {
		return err
	}
	if wantAuth {
		if _, err = io.ReadFull(c, in[:2]); err != nil {
			return err
		}
		if in[1] != 0 {
			return &causeError{AuthCause, "socks5: username/password rejected"}
		}
	}
	if _, err = io.ReadFull(c, in[:5]); err != nil {
		return err
	}
	return socks5Reply(c, in[:5])
}

func socks5Method(ver, method byte, auth bool) error {
	if ver != 5 {
		return &causeError{HandshakeCause, fmt.Sprintf("socks5: bad version %d", ver)}
	}
	switch method {
	case 0:
		return nil
	case 2:
		if auth {
			return nil
		}
		return &causeError{AuthCause, "socks5: server wants a password"}
	case 0xff:
		return &causeError{AuthCause, "socks5: no acceptable auth method"}
	}
	return &causeError{HandshakeCause, fmt.Sprintf("socks5: unexpected method %d", method)}
}

// socks5Reply checks the first 5 reply bytes (VER REP RSV ATYP ADDR[0])
// and reads the rest of the bound address.
func socks5Reply(c net.Conn, h []byte) error {
	if err := socks5Code(h); err != nil {
		return err
	}
	var rest int // bytes of BND.ADDR+PORT left after the 5 read
	switch h[3] {
	case 1:
		rest = 4 - 1 + 2
	case 4:
		rest = 16 - 1 + 2
	case 3:
		rest = int(h[4]) + 2
	}
	var buf [255 + 2]byte
	_, err := io.ReadFull(c, buf[:rest])
	return err
}

// socks5Code checks VER, REP and ATYP of a reply.
func socks5Code(h []byte) error {
	if h[0] != 5 {
		return &causeError{HandshakeCause, fmt.Sprintf("socks5: bad reply version %d", h[0])}
	}
	if rep := h[1]; rep != 0 {
		if int(rep) < len(socks5Replies) {
			r := socks5Replies[rep]
			return &causeError{r.cause, "socks5: " + r.text}
		}
		return &causeError{HandshakeCause, fmt.Sprintf("socks5: bad reply code %d", rep)}
	}
	if a := h[3]; a != 1 && a != 3 && a != 4 {
		return &causeError{HandshakeCause, fmt.Sprintf("socks5: bad address type %d", a)}
	}
	return nil
}
