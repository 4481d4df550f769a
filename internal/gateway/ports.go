package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/gateway/evloop"
	"github.com/proxypool/proxypool/internal/gateway/failover"
)

// port is one listener being served.
type port struct {
	name  string
	ln    net.Listener
	fd    int                             // served by the event loops; -1: by a goroutine
	id    uint64                          // its connections' conn.port / Admission.Port
	route *atomic.Pointer[failover.Route] // its name's (Gateway.routes), read per connection
}

// newPort numbers a listener. Called with lnMu held.
func (g *Gateway) newPort(name string, route *atomic.Pointer[failover.Route], ln net.Listener) *port {
	g.portIDs++
	return &port{name: name, ln: ln, fd: -1, id: g.portIDs, route: route}
}

// loopListener is p as the event loops take it.
func (p *port) loopListener() evloop.Listener {
	return evloop.Listener{FD: p.fd, Name: p.name, Route: p.route, ID: p.id}
}

// Port is one listener a config asks for: its name (as in Options.Ports
// and the metrics' listener label), the group its clients are pinned to
// ("" the whole pool), the address to listen on and the picker it picks
// through (nil: Options.Picker; as Options.Pickers at Run).
type Port struct {
	Name, Group, Addr string
	Picker            failover.Picker
}

// SetPorts makes the listeners being served those of want (a config
// reload): a listener whose name and address are unchanged keeps serving
// (its next connections take want's group and picker, as SetRoute), one
// no longer wanted stops accepting and is closed
// (its open tunnels go on until they end, as at a drain), and one new is
// opened by the gateway itself (under socket activation only the ports
// systemd passed at start come from it). Removals go first, so an address
// moving from one name to another is free when it is opened again. It
// applies what it can and returns the ports it could not open.
func (g *Gateway) SetPorts(ctx context.Context, want []Port) error {
	g.lnMu.Lock()
	defer g.lnMu.Unlock()
	if g.runCtx == nil || g.stopped {
		return errors.New("gateway: setting ports: the gateway is not running")
	}
	// A name systemd passed several sockets for (ListenStream= twice)
	// stays whole while one of them is at the wanted address.
	have := map[string]bool{}
	for _, p := range g.ports {
		i := slices.IndexFunc(want, func(w Port) bool { return w.Name == p.name })
		if i >= 0 && sameAddr(ctx, p.ln.Addr(), want[i].Addr) {
			have[p.name] = true
		}
	}
	var keep []*port
	for _, p := range g.ports {
		if have[p.name] {
			keep = append(keep, p)
			continue
		}
		g.closePort(p)
	}
	g.ports = keep
	var errs []error
	for _, w := range want {
		if have[w.Name] {
			g.route(w.Name, w.Group, w.Picker)
			continue
		}
		if err := g.openPort(ctx, w); err != nil {
			errs = append(errs, fmt.Errorf("opening %s on %s: %w", w.Name, w.Addr, err))
		}
	}
	served := map[string]bool{}
	for _, p := range g.ports {
		served[p.name] = true
	}
	for name := range g.routes {
		if !served[name] {
			delete(g.routes, name) // SetRoute answers false for it, as for any name not served
		}
	}
	return errors.Join(errs...)
}

// closePort stops accepting on p and closes its listener. Its open
// connections go on for up to DrainTimeout (as at shutdown), then the
// ones left are closed. Called with lnMu held.
func (g *Gateway) closePort(p *port) {
	if p.fd >= 0 && g.eng != nil {
		g.eng.RemoveListener(p.fd) // no loop touches the fd once this returns
	}
	p.ln.Close()
	g.log.WithFields(logrus.Fields{"listener": p.name, "addr": p.ln.Addr().String()}).Info("gateway stopped listening")
	time.AfterFunc(g.opts.DrainTimeout, func() { g.closeFrom(p) })
}

// closeFrom ends the connections still open that p accepted. Once Run is
// shutting down its own drain has them.
func (g *Gateway) closeFrom(p *port) {
	g.lnMu.Lock()
	defer g.lnMu.Unlock() // held: Run cannot stop the loops meanwhile
	if g.stopped {
		return
	}
	n := 0
	g.mu.Lock()
	for c := range g.conns {
		if c.port == p.id {
			c.closeAll()
			n++
		}
	}
	g.mu.Unlock()
	if g.eng != nil {
		g.eng.CloseFrom(p.id)
	}
	if n > 0 {
		g.log.WithFields(logrus.Fields{"listener": p.name, "connections": n}).Warn("drain timeout of a removed port: closed its open tunnels")
	}
}

// openPort listens on w.Addr and serves it the way Run serves its
// listeners. Called with lnMu held.
func (g *Gateway) openPort(ctx context.Context, w Port) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", w.Addr)
	if err != nil {
		return err
	}
	if err := g.checkOpen(w.Name, ln); err != nil {
		ln.Close()
		return err
	}
	p := g.newPort(w.Name, g.route(w.Name, w.Group, w.Picker), ln)
	if fd, loop := g.loopFD(ln); loop && g.eng != nil {
		p.fd = fd
		if err := g.eng.AddListener(p.loopListener()); err != nil {
			ln.Close()
			return err
		}
	} else {
		g.serveGo(p, false)
	}
	g.ports = append(g.ports, p)
	g.logListening(p)
	return nil
}

// sameAddr reports whether a listener bound to a serves addr ("host:port"
// as configured): same port, and the host names a's IP (a wildcard host
// matching a wildcard bind).
func sameAddr(ctx context.Context, a net.Addr, addr string) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String() == addr
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	pn, err := net.LookupPort("tcp", portStr)
	if err != nil || pn != ta.Port {
		return false
	}
	bound, _ := netip.AddrFromSlice(ta.IP)
	bound = bound.Unmap()
	if host == "" {
		return bound.IsUnspecified()
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.Unmap() == bound || ip.IsUnspecified() && bound.IsUnspecified()
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return false
	}
	for _, ip := range ips {
		if ip.Unmap() == bound {
			return true
		}
	}
	return false
}
