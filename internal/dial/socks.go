package dial

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/proxypool/proxypool/internal/socks"
	"github.com/proxypool/proxypool/internal/upstream"
)

// proxypool's own SOCKS clients: SOCKS4/4a, which mihomo lacks, and
// package socks's SOCKS5 client for kinds socks5 (without TLS) and tor:
// mihomo's SOCKS5 client ignores the reply code (a "host unreachable"
// answer becomes a successful dial); this one maps every code to a Cause.

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
		return nil, &causeError{upstream.CauseUnreachable, fmt.Sprintf("socks4 cannot carry IPv6 target %s", host)}
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
			return &causeError{upstream.CauseHandshake, fmt.Sprintf("socks4: bad reply version %d", rep[0])}
		}
		switch rep[1] {
		case 90:
			return nil
		case 91:
			// ambiguous (target down, or the server refuses us): counted
			// against the upstream.
			return &causeError{upstream.CauseRefused, "socks4: request rejected or failed (91)"}
		case 92, 93:
			return &causeError{upstream.CauseAuth, fmt.Sprintf("socks4: identd check failed (%d)", rep[1])}
		}
		return &causeError{upstream.CauseHandshake, fmt.Sprintf("socks4: bad reply code %d", rep[1])}
	})
}

type socks5Dialer struct {
	server     string // "host:port"
	user, pass string
}

func (d *socks5Dialer) close() error { return nil }

// dial runs the handshake as RFC 1928 describes: each message after the
// previous reply (microsocks, common on free lists, reads one message per
// read and drops the rest).
func (d *socks5Dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	c, _, err := d.dialCaps(ctx, addr, 0)
	return c, err
}

// dialCaps pipelines the handshake (one round trip instead of two or
// three) when try has upstream.CapPipeline, and on the first sign the
// server does not follow redials once with the sequential handshake. The
// Caps returned have CapPipeline only when a pipelined handshake worked.
func (d *socks5Dialer) dialCaps(ctx context.Context, addr string, try upstream.Caps) (net.Conn, upstream.Caps, error) {
	if _, _, err := splitTarget(addr); err != nil {
		return nil, 0, err
	}
	cl := socks.Client{User: d.user, Password: d.pass, Pipeline: try.Has(upstream.CapPipeline)}
	cl.Deadline, _ = ctx.Deadline()
	hs := func(c net.Conn) error { return socks5Error(cl.Connect(c, addr)) }
	c, err := connectWithin(ctx, d.server, hs)
	if cl.Pipeline && errors.Is(err, socks.ErrPipelineStalled) && ctx.Err() == nil {
		cl.Pipeline = false
		c, err = connectWithin(ctx, d.server, hs)
		return c, 0, err
	}
	if err != nil || !cl.Pipeline {
		return c, 0, err
	}
	return c, upstream.CapPipeline, nil
}

// socks5Error gives the codec's errors their Cause, from the one reply
// table in package socks.
func socks5Error(err error) error {
	var re *socks.ReplyError
	var pe *socks.ProtocolError
	var ae *socks.AddrTypeError
	switch {
	case err == nil, errors.Is(err, socks.ErrPipelineStalled):
		return err
	case errors.As(err, &re):
		r := socks.ReplyCode(re.Code)
		return &causeError{r.Cause, "socks5: " + r.Text}
	case errors.Is(err, socks.ErrAuth):
		return &causeError{upstream.CauseAuth, err.Error()}
	case errors.As(err, &pe), errors.As(err, &ae):
		return &causeError{upstream.CauseHandshake, err.Error()}
	}
	return err
}
