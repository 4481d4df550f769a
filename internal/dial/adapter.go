package dial

import (
	"context"
	"fmt"
	"net"

	"github.com/metacubex/mihomo/adapter"
	C "github.com/metacubex/mihomo/constant"

	"github.com/proxypool/proxypool/internal/upstream"
)

// adapterDialer wraps one mihomo outbound adapter behind dialer.
type adapterDialer struct{ p C.Proxy }

// newAdapter builds u's adapter from its decoded options.
func newAdapter(u upstream.Entry, opts map[string]any) (*adapterDialer, error) {
	m := make(map[string]any, len(opts)+1)
	for k, v := range opts {
		m[k] = v
	}
	m["type"] = string(u.Type)
	if _, ok := m["name"]; !ok || m["name"] == "" {
		m["name"] = u.ID
	}
	p, err := adapter.ParseProxy(m)
	if err != nil {
		return nil, err
	}
	return &adapterDialer{p: p}, nil
}

// dial relies on mihomo honouring ctx: its TCP dial takes ctx, and its
// socks5/http/trojan handshakes close the conn when ctx ends
// (common/net.SetupContextForConn, tls HandshakeContext). Protocols with no
// server reply in the handshake (ss, vmess) return at once; a dead server
// shows on first read. TestBlackHoleDeadline holds this.
func (a *adapterDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	md := &C.Metadata{NetWork: C.TCP, Type: C.INNER}
	if err := md.SetRemoteAddress(addr); err != nil {
		return nil, fmt.Errorf("parsing target %q: %w", addr, err)
	}
	if md.DstPort == 0 {
		return nil, fmt.Errorf("parsing target %q: bad port", addr)
	}
	c, err := a.p.DialContext(ctx, md)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (a *adapterDialer) close() error { return a.p.Close() }
