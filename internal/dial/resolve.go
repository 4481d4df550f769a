package dial

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"

	mlog "github.com/metacubex/mihomo/log"

	"github.com/metacubex/mihomo/component/resolver"
	"github.com/miekg/dns"
)

// mihomo keeps process-global state that proxypool must fence off. This file
// sets it once, the first time a Pool is made:
//
//   - mihomo's own log level is set to SILENT: it logs through logrus's
//     global logger, which proxypool never uses.
//   - resolver.SystemResolver is replaced. mihomo's dns package installs, in
//     its init, a resolver that reads /etc/resolv.conf and, when that file
//     cannot be read, falls back to the public resolvers 114.114.114.114 and
//     8.8.8.8. An upstream whose server is a host name would then leak a DNS
//     query to a public resolver. systemResolver answers through Go's
//     net.DefaultResolver instead: the host's resolv.conf/nsswitch, and with
//     no resolv.conf Go's own default (localhost:53), never a public one.
//     DefaultResolver and ProxyServerHostResolver stay nil, so every
//     upstream-server lookup mihomo makes ends in SystemResolver.
//   - resolver.DisableIPv6 is set to false, otherwise mihomo refuses
//     upstreams whose server is an IPv6 literal.
//
// Targets never pass through any of this: they go to the upstream as names.
var setGlobals = sync.OnceFunc(func() {
	mlog.SetLevel(mlog.SILENT)
	resolver.SystemResolver = systemResolver{r: net.DefaultResolver}
	resolver.DisableIPv6 = false
})

// systemResolver implements mihomo's resolver.Resolver on Go's resolver.
type systemResolver struct{ r *net.Resolver }

var errNoDNSExchange = errors.New("raw DNS exchange is disabled: only the system resolver is used")

func (s systemResolver) lookup(ctx context.Context, network, host string) ([]netip.Addr, error) {
	ips, err := s.r.LookupNetIP(ctx, network, host)
	if err != nil {
		return nil, err
	}
	for i := range ips {
		ips[i] = ips[i].Unmap()
	}
	if len(ips) == 0 {
		return nil, resolver.ErrIPNotFound
	}
	return ips, nil
}

func (s systemResolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	return s.lookup(ctx, "ip", host)
}

func (s systemResolver) LookupIPv4(ctx context.Context, host string) ([]netip.Addr, error) {
	return s.lookup(ctx, "ip4", host)
}

func (s systemResolver) LookupIPv6(ctx context.Context, host string) ([]netip.Addr, error) {
	return s.lookup(ctx, "ip6", host)
}

func (s systemResolver) ResolveECH(context.Context, string) ([]byte, error) {
	return nil, errNoDNSExchange
}

func (s systemResolver) ExchangeContext(context.Context, *dns.Msg) (*dns.Msg, error) {
	return nil, errNoDNSExchange
}

func (s systemResolver) Invalid() bool    { return true } // mihomo: true means "usable"
func (s systemResolver) ClearCache()      {}
func (s systemResolver) ResetConnection() {}

var _ resolver.Resolver = systemResolver{}
