package sd

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"syscall"

	"github.com/coreos/go-systemd/v22/activation"
)

// gatewayListenConfig opens the listeners systemd did not pass the way
// proxy-gateway.socket does:
//   - no TCP keep-alive on accepted conns (4 setsockopts each; HAProxy's
//     default clitcpka is off too): tunnels have an idle timeout;
//   - TCP_DEFER_ACCEPT (DeferAcceptSec=1s): every protocol on the port has
//     the client speak first, so a connection is accepted with its
//     greeting already readable, saving a wakeup and an empty read per
//     connection (4–6 % of the gateway's CPU per request in
//     bench/gateway). A client silent for longer is accepted anyway.
var gatewayListenConfig = net.ListenConfig{
	KeepAlive: -1,
	Control: func(network, _ string, c syscall.RawConn) error {
		if !strings.HasPrefix(network, "tcp") {
			return nil
		}
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, 1)
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("setting TCP_DEFER_ACCEPT: %w", err)
		}
		return nil
	},
}

type passed struct {
	name string
	l    net.Listener
	used bool
}

// Listeners returns a listener for every entry of want (name → address).
//
// Under socket activation each name is matched first by the socket's
// FileDescriptorName=, then by its address (several ListenStream= lines in
// one socket unit share one name); a name systemd did not pass is listened
// on here at its address. Outside socket activation every address is
// listened on here. Sockets systemd passed that match no entry are
// returned too, under their FileDescriptorName (or name@address when that
// is taken): serve or close them, a client of an unserved socket hangs.
// On error every listener is closed.
func Listeners(want map[string]string) (map[string]net.Listener, error) {
	var got []*passed
	closeAll := func(out map[string]net.Listener) {
		for _, p := range got {
			if !p.used {
				p.l.Close()
			}
		}
		for _, l := range out {
			l.Close()
		}
	}
	for _, f := range activation.Files(true) {
		l, err := net.FileListener(f)
		name := f.Name()
		f.Close()
		if err != nil {
			closeAll(nil)
			return nil, fmt.Errorf("socket %q passed by systemd is not a listening socket: %w", name, err)
		}
		got = append(got, &passed{name: name, l: l})
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make(map[string]net.Listener, len(want))

	// By name; when several sockets share the name, the address decides.
	for _, n := range names {
		var cands []*passed
		for _, p := range got {
			if !p.used && p.name == n {
				cands = append(cands, p)
			}
		}
		switch {
		case len(cands) == 1:
			cands[0].used, out[n] = true, cands[0].l
		case len(cands) > 1:
			for _, p := range cands {
				if sameAddr(p.l.Addr(), want[n]) {
					p.used, out[n] = true, p.l
					break
				}
			}
		}
	}
	// By address.
	for _, n := range names {
		if out[n] != nil {
			continue
		}
		for _, p := range got {
			if !p.used && sameAddr(p.l.Addr(), want[n]) {
				p.used, out[n] = true, p.l
				break
			}
		}
	}
	// Ourselves.
	for _, n := range names {
		if out[n] != nil {
			continue
		}
		addr := want[n]
		if addr == "" {
			closeAll(out)
			return nil, fmt.Errorf("listener %q: systemd passed no socket of that name and no address is configured", n)
		}
		l, err := gatewayListenConfig.Listen(context.Background(), network(addr), addr)
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("listener %q: %w", n, err)
		}
		out[n] = l
	}
	for _, p := range got {
		if p.used {
			continue
		}
		key := p.name
		if _, taken := out[key]; taken {
			key = p.name + "@" + p.l.Addr().String()
		}
		p.used, out[key] = true, p.l
	}
	return out, nil
}

func network(addr string) string {
	if strings.HasPrefix(addr, "/") || strings.HasPrefix(addr, "@") {
		return "unix"
	}
	return "tcp"
}

// sameAddr compares a bound address with a configured one; "localhost"
// and other names are resolved.
func sameAddr(a net.Addr, want string) bool {
	if want == "" {
		return false
	}
	if network(want) == "unix" {
		return a.Network() == "unix" && a.String() == want
	}
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	w, err := net.ResolveTCPAddr("tcp", want)
	if err != nil || w.Port != ta.Port {
		return false
	}
	if w.IP == nil || w.IP.IsUnspecified() {
		return ta.IP == nil || ta.IP.IsUnspecified()
	}
	return w.IP.Equal(ta.IP)
}
