package source

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// reach is how far from the public Internet an address is. A source may
// redirect only to addresses no nearer than its own: a list on a public
// host that answers "302 Location: http://127.0.0.1:9464/metrics" would
// otherwise make the refresh read (and parse, and report) this host's or
// this network's private services. A source the operator pointed at
// loopback or a LAN host may redirect within that reach.
type reach int

const (
	reachPublic   reach = iota
	reachPrivate        // RFC 1918, ULA, CGNAT, link-local
	reachLoopback       // 127/8, ::1, the unspecified address, localhost
)

func (r reach) String() string {
	switch r {
	case reachLoopback:
		return "loopback"
	case reachPrivate:
		return "private"
	}
	return "public"
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// addrReach classifies one address.
func addrReach(a netip.Addr) reach {
	a = a.Unmap()
	switch {
	case a.IsLoopback() || a.IsUnspecified():
		return reachLoopback
	case a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || cgnat.Contains(a):
		return reachPrivate
	}
	return reachPublic
}

// hostReach is the nearest reach host can lead to: an IP literal's own,
// loopback for localhost names, and for other names the nearest of the
// addresses they resolve to (one that does not resolve is public: the
// request to it then fails on its own).
func (f *Fetcher) hostReach(ctx context.Context, host string) reach {
	classify := addrReach
	if f.classify != nil {
		classify = f.classify
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if a, err := netip.ParseAddr(host); err == nil {
		return classify(a)
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return reachLoopback
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return reachPublic
	}
	r := reachPublic
	for _, a := range addrs {
		r = max(r, classify(a))
	}
	return r
}

// checkRedirect is the Fetcher's own client's redirect policy: at most
// maxHops hops, and never nearer (see reach) than the URL the fetch started from.
func (f *Fetcher) checkRedirect(maxHops int) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) > maxHops {
			return fmt.Errorf("stopped after %d redirects", maxHops)
		}
		ctx := req.Context()
		from := f.hostReach(ctx, via[0].URL.Hostname())
		if to := f.hostReach(ctx, req.URL.Hostname()); to > from {
			return fmt.Errorf("refusing the redirect from %s to %s: it leads to a %s address from a %s source",
				redact(via[0].URL), redact(req.URL), to, from)
		}
		return nil
	}
}
