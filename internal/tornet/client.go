package tornet

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// DialSOCKS opens a TCP connection to target ("ip:port") through the SOCKS5
// proxy at socksAddr (no authentication; user/pass when user != "", which
// tor uses for stream isolation).
func DialSOCKS(ctx context.Context, socksAddr, target, user, pass string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", socksAddr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	fail := func(err error) (net.Conn, error) {
		c.Close()
		return nil, fmt.Errorf("socks5 via %s: %w", socksAddr, err)
	}
	method := byte(0)
	if user != "" {
		method = 2
	}
	if _, err := c.Write([]byte{5, 1, method}); err != nil {
		return fail(err)
	}
	var rep [2]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		return fail(err)
	}
	if rep[1] != method {
		return fail(fmt.Errorf("server chose method %d", rep[1]))
	}
	if method == 2 {
		msg := append([]byte{1, byte(len(user))}, user...)
		msg = append(append(msg, byte(len(pass))), pass...)
		if _, err := c.Write(msg); err != nil {
			return fail(err)
		}
		if _, err := io.ReadFull(c, rep[:]); err != nil || rep[1] != 0 {
			return fail(errors.New("authentication refused"))
		}
	}
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return fail(err)
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return fail(fmt.Errorf("target %q is not an IPv4 literal", target))
	}
	p, _ := strconv.Atoi(port)
	req := append([]byte{5, 1, 0, 1}, ip...)
	req = binary.BigEndian.AppendUint16(req, uint16(p))
	if _, err := c.Write(req); err != nil {
		return fail(err)
	}
	var resp [10]byte
	if _, err := io.ReadFull(c, resp[:]); err != nil {
		return fail(err)
	}
	if resp[1] != 0 {
		return fail(fmt.Errorf("connect refused, reply code %d", resp[1]))
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// Ask sends one GET /json over an open connection to the target.
func Ask(ctx context.Context, c net.Conn) (Seen, error) {
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
		defer c.SetDeadline(time.Time{})
	}
	if _, err := io.WriteString(c, "GET /json HTTP/1.1\r\nHost: target\r\n\r\n"); err != nil {
		return Seen{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return Seen{}, err
	}
	defer resp.Body.Close()
	var s Seen
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return Seen{}, fmt.Errorf("target answer: %w", err)
	}
	return s, nil
}

// Through makes one request to the target through the SOCKS proxy and
// reports which exit it came from.
func (n *Network) Through(ctx context.Context, socksAddr string) (Seen, error) {
	c, err := DialSOCKS(ctx, socksAddr, n.TargetAddr(), "", "")
	if err != nil {
		return Seen{}, err
	}
	defer c.Close()
	return Ask(ctx, c)
}

// AskAs makes one request to the target through the SOCKS proxy at socks
// on a circuit of its own (SOCKS username user: tor's IsolateSOCKSAuth),
// and tries again while that tor still builds circuits, until ctx ends.
// An answer whose exit the target could not tell is an error.
func (n *Network) AskAs(ctx context.Context, socks, user string) (Seen, error) {
	var last error
	for {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		c, err := DialSOCKS(rctx, socks, n.TargetAddr(), user, "x")
		if err == nil {
			var s Seen
			s, err = Ask(rctx, c)
			c.Close()
			if err == nil && s.Exit == "" {
				err = fmt.Errorf("the target could not tell the exit of peer %s", s.Peer)
			}
			if err == nil {
				cancel()
				return s, nil
			}
		}
		cancel()
		last = err
		select {
		case <-ctx.Done():
			return Seen{}, fmt.Errorf("no answer through %s: %w", socks, last)
		case <-time.After(300 * time.Millisecond):
		}
	}
}
