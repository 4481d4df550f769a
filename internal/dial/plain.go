package dial

import (
	"context"
	"net/netip"

	"github.com/proxypool/proxypool/internal/upstream"
)

// PlainSOCKS5 reports whether u is a SOCKS5 server at an IP address that
// this package would dial with its own pipelined no-auth client (kinds
// socks5 without TLS, and tor; no username or password), and where. The
// gateway's event loop speaks SOCKS5 to such upstreams itself; every
// other upstream goes through DialContext. It is asked per connection,
// so options are looked at through the dialer built (and cached) from
// them, and not at all for an upstream that has none.
func (p *Pool) PlainSOCKS5(u upstream.Entry) (netip.AddrPort, bool) {
	if u.Type != upstream.Tor && u.Type != upstream.SOCKS5 {
		return netip.AddrPort{}, false
	}
	if u.Options != "" {
		d, err := p.get(context.Background(), u) // builds take no I/O: nothing to bound
		if sd, ok := d.(*socks5Dialer); err != nil || !ok || sd.user != "" || sd.pass != "" {
			return netip.AddrPort{}, false
		}
	}
	a, err := netip.ParseAddr(u.Server)
	if err != nil || a.Zone() != "" || u.Port <= 0 || u.Port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(u.Port)), true
}
