package dial

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/metacubex/mihomo/component/resolver"
	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/upstream"
)

// fetchIP sends GET /ip over c (already connected to the judge) and
// returns the origin the judge saw.
func fetchIP(t testing.TB, c net.Conn, host string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /ip HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading judge response: %v", err)
	}
	defer resp.Body.Close()
	var v struct{ Origin string }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("judge body: %v", err)
	}
	return v.Origin
}

// entry is u as the gateway and the probe dial it.
func entry(t testing.TB, u upstream.Upstream) upstream.Entry {
	t.Helper()
	e, err := u.Entry()
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func torOf(m *fleet.Member) upstream.Upstream {
	mp := map[string]any{"type": "tor", "server": m.Upstream.Server, "port": m.Upstream.Port}
	if m.Spec.Username != "" {
		mp["username"], mp["password"] = m.Spec.Username, m.Spec.Password
	}
	return upstream.MustNew(mp)
}

func TestEveryKindReachesJudgeFromMemberAddress(t *testing.T) {
	j := fleet.StartJudgeT(t)
	f := fleet.StartT(t, fleet.Spec{Members: []fleet.MemberSpec{
		{Kind: fleet.SOCKS5}, {Kind: fleet.SOCKS5, Username: "u", Password: "p"},
		{Kind: fleet.SOCKS4}, {Kind: fleet.SOCKS4, Username: "ident"},
		{Kind: fleet.HTTP}, {Kind: fleet.HTTP, Username: "u", Password: "p w"},
		{Kind: fleet.SS}, {Kind: fleet.VMess}, {Kind: fleet.Trojan},
	}})
	p := New(Options{})
	defer p.Close()
	// a bare plain upstream (its Entry holds no options) once more with
	// its options held as JSON anyway, on a pool of its own (dialers are
	// cached by id)
	pg := New(Options{})
	defer pg.Close()
	_, port, _ := net.SplitHostPort(j.Addr)
	type tc struct {
		name string
		u    upstream.Entry
		m    *fleet.Member
		p    *Pool
	}
	var cases []tc
	for _, m := range f.Members() {
		name := m.Name() + fmt.Sprintf("/auth=%v", m.Spec.Username != "")
		e := entry(t, m.Upstream)
		cases = append(cases, tc{name, e, m, p})
		if e.Options == "" {
			b, err := json.Marshal(m.Upstream.Options)
			if err != nil {
				t.Fatal(err)
			}
			e.Options = string(b)
			cases = append(cases, tc{name + "/options-as-json", e, m, pg})
		}
		if m.Spec.Kind == fleet.SOCKS5 {
			cases = append(cases, tc{m.Name() + "/as-tor", entry(t, torOf(m)), m, p})
		}
	}
	for _, c := range cases {
		for _, target := range []string{"127.0.0.1", "localhost"} {
			t.Run(c.name+"/"+target, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				conn, err := c.p.DialContext(ctx, c.u, net.JoinHostPort(target, port))
				if err != nil {
					t.Fatalf("dial: %v (cause %s)", err, Classify(err))
				}
				defer conn.Close()
				if got := fetchIP(t, conn, j.Addr); got != c.m.ExitIP {
					t.Errorf("judge saw %s, want %s", got, c.m.ExitIP)
				}
			})
		}
	}
}

// TestTargetNamesAreNotResolvedLocally: a name only the upstream side can
// resolve reaches the member as a name (it then fails there, with the
// member's refusal, not with a local DNS error).
func TestTargetNamesAreNotResolvedLocally(t *testing.T) {
	f := fleet.StartT(t, fleet.Spec{Members: []fleet.MemberSpec{{Kind: fleet.SOCKS4}, {Kind: fleet.HTTP}, {Kind: fleet.SOCKS5}}})
	p := New(Options{})
	defer p.Close()
	for _, m := range append(f.Members(), nil) {
		u := torOf(f.Member(2))
		if m != nil {
			u = m.Upstream
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := p.DialContext(ctx, entry(t, u), "no-such-host.invalid:80")
		cancel()
		if err == nil {
			t.Fatalf("%s: dial to a bogus name succeeded", u)
		}
		switch c := Classify(err); u.Type {
		case upstream.SOCKS4: // reply 91 is ambiguous: counted on the upstream
			if c != upstream.CauseRefused {
				t.Errorf("%s: cause %s, want refused", u, c)
			}
		case upstream.SOCKS5, upstream.Tor: // the upstream's SOCKS5 reply blames the target
			if !c.IsTarget() {
				t.Errorf("%s: cause %s, want a target cause", u, c)
			}
		}
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			t.Errorf("%s: target was resolved locally: %v", u, err)
		}
	}
}

func TestClassify(t *testing.T) {
	f := fleet.StartT(t, fleet.Spec{Members: []fleet.MemberSpec{
		{Kind: fleet.SOCKS5, Behavior: fleet.Refuse},
		{Kind: fleet.SOCKS5, Behavior: fleet.Blackhole},
		{Kind: fleet.SOCKS5, Behavior: fleet.Reset},
		{Kind: fleet.SOCKS5, Behavior: fleet.Garbage},
		{Kind: fleet.SOCKS5, Username: "u", Password: "p"},
		{Kind: fleet.HTTP, Behavior: fleet.Refuse},
		{Kind: fleet.HTTP, Behavior: fleet.Blackhole},
		{Kind: fleet.HTTP, Behavior: fleet.Reset},
		{Kind: fleet.HTTP, Behavior: fleet.Garbage},
		{Kind: fleet.HTTP, Username: "u", Password: "p"},
		{Kind: fleet.SOCKS4, Behavior: fleet.Refuse},
		{Kind: fleet.SOCKS4, Behavior: fleet.Blackhole},
		{Kind: fleet.SOCKS4, Behavior: fleet.Reset},
		{Kind: fleet.SOCKS4, Behavior: fleet.Garbage},
		{Kind: fleet.SOCKS4, Username: "ident"},
		{Kind: fleet.Trojan, Behavior: fleet.Blackhole},
		{Kind: fleet.Trojan, Behavior: fleet.Reset},
		{Kind: fleet.Trojan, Behavior: fleet.Garbage},
	}})
	j := fleet.StartJudgeT(t)
	p := New(Options{})
	defer p.Close()
	withCreds := func(m *fleet.Member, user, pass string) upstream.Upstream {
		mp := map[string]any{}
		for k, v := range m.Upstream.Options {
			mp[k] = v
		}
		mp["username"], mp["password"] = user, pass
		return upstream.MustNew(mp)
	}
	type tc struct {
		name string
		u    upstream.Upstream
		want upstream.Cause
	}
	var cases []tc
	for _, m := range f.Members() {
		var c upstream.Cause
		switch m.Spec.Behavior {
		case fleet.Refuse:
			c = upstream.CauseRefused
		case fleet.Blackhole:
			c = upstream.CauseTimeout
		case fleet.Reset:
			c = upstream.CauseReset
		case fleet.Garbage:
			c = upstream.CauseHandshake
		case fleet.Good:
			user := m.Spec.Username
			if m.Spec.Kind == fleet.SOCKS4 {
				user = "other" // SOCKS4 has only a user id
			}
			cases = append(cases, tc{m.Name() + "/bad-auth", withCreds(m, user, "wrong"), upstream.CauseAuth})
			if m.Spec.Kind != fleet.SOCKS4 {
				cases = append(cases, tc{m.Name() + "/no-auth", withCreds(m, "", ""), upstream.CauseAuth})
			}
			if m.Spec.Kind == fleet.SOCKS5 {
				cases = append(cases, tc{m.Name() + "/tor-bad-auth", upstream.MustNew(map[string]any{"type": "tor", "server": m.Upstream.Server, "port": m.Upstream.Port, "username": "u", "password": "x"}), upstream.CauseAuth})
			}
			continue
		}
		cases = append(cases, tc{m.Name(), m.Upstream, c})
		if m.Spec.Kind == fleet.SOCKS5 {
			cases = append(cases, tc{m.Name() + "/as-tor", torOf(m), c})
		}
	}
	cases = append(cases,
		tc{"unresolvable upstream server", upstream.MustNew(map[string]any{"type": "socks5", "server": "no-such-upstream.invalid", "port": 1080}), upstream.CauseDNS},
		tc{"unresolvable tor server", upstream.MustNew(map[string]any{"type": "tor", "server": "no-such-upstream.invalid", "port": 9050}), upstream.CauseDNS},
	)
	restore := hermeticDNS(t)
	defer restore()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			conn, err := p.DialContext(ctx, entry(t, c.u), j.Addr)
			if err == nil {
				conn.Close()
				t.Fatalf("dial succeeded, want %s", c.want)
			}
			if got := Classify(err); got != c.want {
				t.Errorf("Classify(%v) = %s, want %s", err, got, c.want)
			}
		})
	}
}

// hermeticDNS makes upstream-server lookups read /etc/hosts only, so tests
// never query the machine's nameserver.
func hermeticDNS(t *testing.T) func() {
	r := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS in tests")
	}}
	old, oldNet := resolver.SystemResolver, netDialer.Resolver
	resolver.SystemResolver = systemResolver{r: r}
	netDialer.Resolver = r
	return func() { resolver.SystemResolver, netDialer.Resolver = old, oldNet }
}

func TestClassifyPlainErrors(t *testing.T) {
	tests := []struct {
		err  error
		want upstream.Cause
	}{
		{nil, upstream.CauseNone},
		{context.DeadlineExceeded, upstream.CauseTimeout},
		{fmt.Errorf("x: %w", context.Canceled), upstream.CauseClosed},
		{io.ErrUnexpectedEOF, upstream.CauseClosed},
		{ErrClosed, upstream.CauseClosed},
		{&net.DNSError{Err: "no such host", Name: "x"}, upstream.CauseDNS},
		{errors.New("HTTP need auth"), upstream.CauseAuth},
		{errors.New("502 Bad Gateway"), upstream.CauseTargetUnreachable},
		{errors.New("504 Gateway Timeout"), upstream.CauseTargetTimeout},
		{errors.New("dialing 1.2.3.4:80 via http 5.6.7.8:3128: 502 Bad Gateway"), upstream.CauseTargetUnreachable},
		{errors.New("127.10.17.1:38503 connect error: tls: oversized record received with length 24946"), upstream.CauseHandshake},
		{errors.New("something else"), upstream.CauseOther},
		// this host short of fds or ports: nothing against the upstream
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("socket", syscall.EMFILE)}, upstream.CauseLocal},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EADDRNOTAVAIL)}, upstream.CauseLocal},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}, upstream.CauseLocal},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, upstream.CauseUnreachable},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestBlackHoleDeadline: a dial through an upstream that accepts and never
// answers returns at the context deadline, for every kind whose handshake
// waits for the server.
func TestBlackHoleDeadline(t *testing.T) {
	var specs []fleet.MemberSpec
	for _, k := range []fleet.Kind{fleet.SOCKS5, fleet.SOCKS4, fleet.HTTP, fleet.Trojan} {
		specs = append(specs, fleet.MemberSpec{Kind: k, Behavior: fleet.Blackhole})
	}
	f := fleet.StartT(t, fleet.Spec{Members: specs})
	p := New(Options{})
	defer p.Close()
	us := []upstream.Upstream{torOf(f.Member(0))}
	for _, m := range f.Members() {
		us = append(us, m.Upstream)
	}
	var wg sync.WaitGroup
	for _, u := range us {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := p.DialContext(ctx, entry(t, u), "127.0.0.1:80")
			d := time.Since(start)
			if err == nil || Classify(err) != upstream.CauseTimeout {
				t.Errorf("%s: err %v, want timeout", u, err)
			}
			if d < 290*time.Millisecond || d > 600*time.Millisecond {
				t.Errorf("%s: returned after %v, want ≈300ms", u, d)
			}
		}()
	}
	wg.Wait()
}

func TestDialTimeoutDefault(t *testing.T) {
	f := fleet.StartT(t, fleet.Spec{Members: []fleet.MemberSpec{{Kind: fleet.SOCKS5, Behavior: fleet.Blackhole}}})
	p := New(Options{DialTimeout: 200 * time.Millisecond})
	defer p.Close()
	start := time.Now()
	_, err := p.DialContext(context.Background(), entry(t, f.Member(0).Upstream), "127.0.0.1:80")
	if Classify(err) != upstream.CauseTimeout || time.Since(start) > time.Second {
		t.Errorf("got %v after %v, want timeout after 200ms", err, time.Since(start))
	}
}

func TestCacheForgetClose(t *testing.T) {
	j := fleet.StartJudgeT(t)
	f := fleet.StartT(t, fleet.Spec{Members: []fleet.MemberSpec{{Kind: fleet.SS}}})
	p := New(Options{})
	u := f.Member(0).Upstream
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.DialContext(context.Background(), entry(t, u), j.Addr)
			if err != nil {
				t.Error(err)
				return
			}
			c.Close()
		}()
	}
	wg.Wait()
	p.mu.RLock()
	n := len(p.m)
	p.mu.RUnlock()
	if n != 1 {
		t.Errorf("%d cached adapters after 20 concurrent dials of one upstream, want 1", n)
	}
	p.Forget(u.ID)
	if len(p.m) != 0 {
		t.Error("Forget left the adapter cached")
	}
	bad := upstream.MustNew(map[string]any{"type": "vmess", "server": "127.0.0.1", "port": 1})
	if _, err := p.DialContext(context.Background(), entry(t, bad), j.Addr); err == nil || !strings.Contains(err.Error(), "building vmess dialer") {
		t.Errorf("vmess without uuid: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.DialContext(context.Background(), entry(t, u), j.Addr); !errors.Is(err, ErrClosed) {
		t.Errorf("dial after Close: %v, want ErrClosed", err)
	}
}

func TestMihomoGlobalsFenced(t *testing.T) {
	New(Options{})
	if _, ok := resolver.SystemResolver.(systemResolver); !ok {
		t.Fatalf("mihomo SystemResolver is %T: upstream server names could reach 114.114.114.114/8.8.8.8", resolver.SystemResolver)
	}
	ips, err := resolver.LookupIPWithResolver(context.Background(), "localhost", resolver.ProxyServerHostResolver)
	if err != nil || len(ips) == 0 {
		t.Errorf("localhost through mihomo's lookup path: %v %v", ips, err)
	}
	// our own logger keeps its output and format
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	l.SetFormatter(&logrus.JSONFormatter{})
	l.WithField("k", "v").Info("hello")
	if !strings.HasPrefix(buf.String(), "{") || !strings.Contains(buf.String(), `"k":"v"`) {
		t.Errorf("logger output changed: %q", buf.String())
	}
}

// BenchmarkDialSOCKS5 is dial + CONNECT through a loopback SOCKS5 member,
// with mihomo's adapter (socks5) and proxypool's minimal client (tor).
func BenchmarkDialSOCKS5(b *testing.B) {
	j := fleet.StartJudgeT(b)
	f := fleet.StartT(b, fleet.Spec{Members: []fleet.MemberSpec{{Kind: fleet.SOCKS5}}})
	p := New(Options{})
	defer p.Close()
	for _, bc := range []struct {
		name string
		u    upstream.Upstream
	}{{"mihomo", f.Member(0).Upstream}, {"minimal", torOf(f.Member(0))}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx, e := context.Background(), entry(b, bc.u)
			for i := 0; i < b.N; i++ {
				c, err := p.DialContext(ctx, e, j.Addr)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

func BenchmarkDialHTTP(b *testing.B) {
	j := fleet.StartJudgeT(b)
	f := fleet.StartT(b, fleet.Spec{Members: []fleet.MemberSpec{{Kind: fleet.HTTP}}})
	p := New(Options{})
	defer p.Close()
	b.ReportAllocs()
	e := entry(b, f.Member(0).Upstream)
	for i := 0; i < b.N; i++ {
		c, err := p.DialContext(context.Background(), e, j.Addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// TestPlainDialsBindNoLocalAddress: proxypool's own SOCKS clients connect
// without binding a local address first. A socket bound to 0.0.0.0:0
// before connect holds its ephemeral port for every destination, and a
// gateway relaying thousands of short tunnels ran out of ports
// (EADDRINUSE on bind) while the kernel had plenty per destination.
func TestPlainDialsBindNoLocalAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close() // nothing listens: refused
	p := New(Options{})
	defer p.Close()
	for _, typ := range []string{"socks5", "socks4", "tor"} {
		u := upstream.MustNew(map[string]any{"type": typ, "server": "127.0.0.1", "port": addr.Port})
		_, err := p.DialContext(context.Background(), entry(t, u), "127.0.0.1:80")
		var oe *net.OpError
		if !errors.As(err, &oe) || Classify(err) != upstream.CauseRefused {
			t.Fatalf("%s to a closed port: %v (cause %s), want refused", typ, err, Classify(err))
		}
		if oe.Source != nil {
			t.Errorf("%s: dialled from a bound local address %v", typ, oe.Source)
		}
	}
}

// TestClassifyHTTPRefusal: an HTTP upstream's 4xx to CONNECT, as
// mihomo's adapter words it, blames the request where its rules refused
// it (400, 403, 451) or the name is unknown there (404); other codes stay
// the upstream's refusal.
func TestClassifyHTTPRefusal(t *testing.T) {
	for _, tt := range []struct {
		msg  string
		want upstream.Cause
	}{
		{"can not connect remote err code: 403", upstream.CauseTargetDenied},
		{"dialing x via y: can not connect remote err code: 400", upstream.CauseTargetDenied},
		{"can not connect remote err code: 451", upstream.CauseTargetDenied},
		{"can not connect remote err code: 404", upstream.CauseTargetUnreachable},
		{"can not connect remote err code: 418", upstream.CauseRefused},
		{"can not connect remote err code: 4031", upstream.CauseRefused},
		{"can not connect remote err code: ", upstream.CauseRefused},
	} {
		if got := Classify(errors.New(tt.msg)); got != tt.want {
			t.Errorf("%q: %s, want %s", tt.msg, got, tt.want)
		}
	}
}
