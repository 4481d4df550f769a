package dial

import (
	"net/netip"

	"github.com/proxypool/proxypool/internal/upstream"
)

// PlainSOCKS5 reports whether u is a SOCKS5 server at an IP address that
// this package would dial with its own pipelined no-auth client (kinds
// socks5 without TLS, and tor; no username or password), and where. The
// gateway's event loop speaks SOCKS5 to such upstreams itself; every
// other upstream goes through DialContext.
func (p *Pool) PlainSOCKS5(u upstream.Upstream) (netip.AddrPort, bool) {
	switch u.Type {
	case upstream.Tor:
	case upstream.SOCKS5:
		if truthy(u.Options["tls"]) {
			return netip.AddrPort{}, false
		}
	default:
		return netip.AddrPort{}, false
	}
	if u.Str("username") != "" || u.Str("password") != "" {
		return netip.AddrPort{}, false
	}
	a, err := netip.ParseAddr(u.Server)
	if err != nil || a.Zone() != "" || u.Port <= 0 || u.Port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(u.Port)), true
}
