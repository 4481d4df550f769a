package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Kind is a member's protocol.
type Kind string

// Kinds.
const (
	SOCKS5 Kind = "socks5"
	SOCKS4 Kind = "socks4"
	HTTP   Kind = "http"
	SS     Kind = "ss"
	VMess  Kind = "vmess"
	Trojan Kind = "trojan"
)

// Kinds lists every Kind.
var Kinds = []Kind{SOCKS5, SOCKS4, HTTP, SS, VMess, Trojan}

// Behavior is how a member treats its clients.
type Behavior string

// Behaviors.
const (
	Good      Behavior = "good"
	Refuse    Behavior = "refuse"    // nothing listens: connect is refused
	Blackhole Behavior = "blackhole" // accepts, reads, never answers
	Reset     Behavior = "reset"     // reads the first bytes, then sends RST
	Garbage   Behavior = "garbage"   // answers the first bytes with non-protocol bytes
	// Transparent forwards but adds X-Forwarded-For (the client's address)
	// and Via to every HTTP request it carries (absolute-URI requests, and
	// HTTP spoken inside CONNECT/SOCKS tunnels). SOCKS and HTTP members only.
	Transparent Behavior = "transparent"
	Anonymous   Behavior = "anonymous" // like Transparent, but adds only Via
	Local       Behavior = "local"     // leaves from 127.0.0.x (the prober's own /24), not its own address
	// Liars (SOCKS and HTTP members): each carries HTTP the way a
	// dishonest free proxy does. FakeEcho answers every HTTP request itself
	// with a made-up judge reply (origin FakeEchoIP, the Host and
	// User-Agent it was sent, nothing else); NonceRewrite changes the
	// value of every X-Proxypool-Nonce header it carries; BodyInject
	// appends a script to every HTTP response body it carries.
	// ForwardOnly and ConnectOnly are HTTP members that refuse CONNECT, or
	// everything but CONNECT, with 403 (a squid ACL either way).
	ForwardOnly  Behavior = "forward-only"
	ConnectOnly  Behavior = "connect-only"
	FakeEcho     Behavior = "fake-echo"
	NonceRewrite Behavior = "nonce-rewrite"
	BodyInject   Behavior = "body-inject"
	// The Break behaviours complete the handshake (SOCKS5, SOCKS4, HTTP
	// CONNECT; a forwarded HTTP request is read first) and then break the
	// stream before any byte of the target's: BreakClose closes at once,
	// BreakReset sends RST, BreakGarbage waits for the client's first
	// bytes and answers them with garbageReply. Plain kinds only.
	BreakClose   Behavior = "break-close"
	BreakReset   Behavior = "break-reset"
	BreakGarbage Behavior = "break-garbage"
)

// FakeEchoIP is the exit FakeEcho members claim.
const FakeEchoIP = "203.0.113.7"

// rewrites reports whether b alters the HTTP it carries, so the member
// must parse requests rather than copy bytes.
func (b Behavior) rewrites() bool {
	switch b {
	case Transparent, Anonymous, FakeEcho, NonceRewrite, BodyInject:
		return true
	}
	return false
}

// MemberSpec describes one member.
type MemberSpec struct {
	Kind     Kind
	Behavior Behavior
	Latency  time.Duration // delays the first handshake reply
	Country  string        // ISO code written by WriteGeoIP
	Username string        // socks5/http: required credentials; socks4: required user id
	Password string
	// IPv6 members reach IPv6 targets, from ::1 (the exit quality's
	// ipv6-judge); the others, bound to their IPv4 exit, cannot.
	IPv6 bool
	// Rate caps what the member relays from the target to its client, in
	// bytes/s (a slow upstream for speed checks); 0: no cap. Plain kinds.
	Rate int64
}

// Spec describes a fleet.
type Spec struct {
	Members []MemberSpec
	// Port every member listens on (each has its own address, so one port
	// serves all); 0 picks a free port per member. A fixed port keeps the
	// list stable across restarts (cmd/fleet).
	Port int
}

// Uniform is n members of one kind and behaviour.
func Uniform(n int, k Kind, b Behavior) Spec {
	s := Spec{Members: make([]MemberSpec, n)}
	for i := range s.Members {
		s.Members[i] = MemberSpec{Kind: k, Behavior: b}
	}
	return s
}

// Mixed is n members spread over the plain kinds (a few in six are ss,
// vmess or trojan), countries US/DE/NL/JP and latencies 0–45 ms, with about
// badShare of them misbehaving (refuse, blackhole, reset, garbage,
// transparent, local in turn). It is deterministic.
func Mixed(n int, badShare float64) Spec {
	kinds := []Kind{SOCKS5, HTTP, SOCKS5, SOCKS4, HTTP, SOCKS5, SS, SOCKS5, VMess, HTTP, SOCKS5, Trojan}
	bads := []Behavior{Refuse, Blackhole, Reset, Garbage, Transparent, Local}
	countries := []string{"US", "DE", "NL", "JP"}
	s := Spec{Members: make([]MemberSpec, n)}
	nb := 0
	for i := range s.Members {
		m := MemberSpec{
			Kind:     kinds[i%len(kinds)],
			Behavior: Good,
			Country:  countries[(i+i/len(kinds))%len(countries)],
			Latency:  time.Duration(i%10) * 5 * time.Millisecond,
		}
		// spread the bad ones evenly: member i is bad when the running share falls behind
		if badShare > 0 && float64(nb) < badShare*float64(i+1)-0.5 {
			m.Behavior = bads[nb%len(bads)]
			if m.Behavior == Transparent && !m.Kind.plain() {
				m.Behavior = Refuse
			}
			nb++
		}
		s.Members[i] = m
	}
	return s
}

func (k Kind) plain() bool { return k == SOCKS5 || k == SOCKS4 || k == HTTP }

// MaxMembers is how many members fit in 127.10.0.0–127.254.255.0.
const MaxMembers = (255 - 10) * 256

// MemberIP is member i's listen (and normal exit) address.
func MemberIP(i int) net.IP { return net.IPv4(127, byte(10+i/256), byte(i%256), 1).To4() }

// Member is one running upstream.
type Member struct {
	Index    int
	Spec     MemberSpec
	Addr     string // host:port it listens on
	ExitIP   string // the address a target sees
	Upstream upstream.Upstream

	f        *Fleet
	exit     net.Dialer
	behavior atomic.Pointer[Behavior]

	mu sync.Mutex
	ln net.Listener // nil while refusing
}

// Behavior is the member's current behaviour.
func (m *Member) Behavior() Behavior { return *m.behavior.Load() }

// SetBehavior changes the behaviour of new connections (Refuse closes the
// listener; leaving Refuse listens again on the same address).
func (m *Member) SetBehavior(b Behavior) error {
	m.behavior.Store(&b)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.f.isClosed() {
		return nil
	}
	switch {
	case b == Refuse && m.ln != nil:
		err := m.ln.Close()
		m.ln = nil
		return err
	case b != Refuse && m.ln == nil:
		return m.listenLocked(m.Addr)
	}
	return nil
}

func (m *Member) listenLocked(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("member %d: listening on %s: %w", m.Index, addr, err)
	}
	m.ln = ln
	m.Addr = ln.Addr().String()
	m.f.wg.Add(1)
	go m.acceptLoop(ln)
	return nil
}

func (m *Member) acceptLoop(ln net.Listener) {
	defer m.f.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		if !m.f.track(c) {
			c.Close()
			return
		}
		m.f.wg.Add(1)
		go func() {
			defer m.f.wg.Done()
			defer m.f.untrack(c)
			defer c.Close()
			m.serve(c)
		}()
	}
}

// Fleet is a running set of members.
type Fleet struct {
	members []*Member
	sealed  *sealed // ss/vmess/trojan servers, nil if the spec has none

	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{}
}

// Start starts every member of spec; ctx bounds only the start. Close stops
// them. It raises the RLIMIT_NOFILE soft limit to the hard limit.
func Start(ctx context.Context, spec Spec) (*Fleet, error) {
	if len(spec.Members) > MaxMembers {
		return nil, fmt.Errorf("fleet of %d members: at most %d fit", len(spec.Members), MaxMembers)
	}
	raiseNoFile()
	f := &Fleet{conns: make(map[net.Conn]struct{}), done: make(chan struct{})}
	for _, ms := range spec.Members {
		if !ms.Kind.plain() {
			s, err := newSealed(f)
			if err != nil {
				return nil, err
			}
			f.sealed = s
			break
		}
	}
	f.members = make([]*Member, len(spec.Members))
	for i, ms := range spec.Members {
		if err := ctx.Err(); err != nil {
			f.Close()
			return nil, err
		}
		m, err := f.startMember(i, ms, spec.Port)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.members[i] = m
	}
	return f, nil
}

// StartT starts a fleet for a test or benchmark and closes it at cleanup.
func StartT(t testing.TB, spec Spec) *Fleet {
	t.Helper()
	f, err := Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("starting fleet: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func (f *Fleet) startMember(i int, ms MemberSpec, port int) (*Member, error) {
	if ms.Behavior == "" {
		ms.Behavior = Good
	}
	switch ms.Kind {
	case SOCKS5, SOCKS4, HTTP, SS, VMess, Trojan:
	default:
		return nil, fmt.Errorf("member %d: unknown kind %q", i, ms.Kind)
	}
	switch ms.Behavior {
	case Good, Refuse, Blackhole, Reset, Garbage, Transparent, Anonymous, Local, FakeEcho, NonceRewrite, BodyInject:
	case ForwardOnly, ConnectOnly:
		if ms.Kind != HTTP {
			return nil, fmt.Errorf("member %d: behavior %q needs kind http, not %s", i, ms.Behavior, ms.Kind)
		}
	case BreakClose, BreakReset, BreakGarbage:
		if !ms.Kind.plain() {
			return nil, fmt.Errorf("member %d: behavior %q needs a plain kind (socks5, socks4, http), not %s", i, ms.Behavior, ms.Kind)
		}
	default:
		return nil, fmt.Errorf("member %d: unknown behavior %q", i, ms.Behavior)
	}
	ip := MemberIP(i)
	exit := ip
	if ms.Behavior == Local {
		exit = net.IPv4(127, 0, 0, byte(2+i%250)).To4()
	}
	m := &Member{Index: i, Spec: ms, ExitIP: exit.String(), f: f}
	m.exit = net.Dialer{LocalAddr: &net.TCPAddr{IP: exit}, Timeout: 10 * time.Second, Resolver: hostsOnly}
	b := ms.Behavior
	m.behavior.Store(&b)
	m.mu.Lock()
	err := m.listenLocked(net.JoinHostPort(ip.String(), strconv.Itoa(port)))
	if err == nil && b == Refuse {
		err = m.ln.Close()
		m.ln = nil
	}
	m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	u, err := upstream.New(m.mapping())
	if err != nil {
		return nil, fmt.Errorf("member %d: %w", i, err)
	}
	m.Upstream = u
	return m, nil
}

// mapping is the member's mihomo-style upstream mapping.
func (m *Member) mapping() map[string]any {
	host, port, _ := net.SplitHostPort(m.Addr)
	p, _ := strconv.Atoi(port)
	mp := map[string]any{"type": string(m.Spec.Kind), "server": host, "port": p, "name": m.Name()}
	switch m.Spec.Kind {
	case SOCKS5, HTTP:
		if m.Spec.Username != "" {
			mp["username"] = m.Spec.Username
			mp["password"] = m.Spec.Password
		}
	case SOCKS4:
		if m.Spec.Username != "" {
			mp["username"] = m.Spec.Username
		}
	case SS:
		mp["cipher"] = ssCipher
		mp["password"] = ssPassword
	case VMess:
		mp["uuid"] = vmessUUID
		mp["alterId"] = 0
		mp["cipher"] = "auto"
	case Trojan:
		mp["password"] = trojanPassword
		mp["sni"] = trojanSNI
		mp["skip-cert-verify"] = true
	}
	return mp
}

// Name is "fleet-<index>-<kind>-<behavior>".
func (m *Member) Name() string {
	return fmt.Sprintf("fleet-%d-%s-%s", m.Index, m.Spec.Kind, m.Spec.Behavior)
}

// Members returns the members in index order.
func (f *Fleet) Members() []*Member { return f.members }

// Member returns member i.
func (f *Fleet) Member(i int) *Member { return f.members[i] }

// ByExitIP finds the member leaving from ip (nil if none; Local members
// share the 127.0.0.0/24 and may collide).
func (f *Fleet) ByExitIP(ip string) *Member {
	for _, m := range f.members {
		if m != nil && m.ExitIP == ip {
			return m
		}
	}
	return nil
}

func (f *Fleet) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

func (f *Fleet) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Fleet) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// Close stops every member, closes every connection and waits for them.
func (f *Fleet) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	close(f.done)
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	for _, m := range f.members {
		if m == nil {
			continue
		}
		m.mu.Lock()
		if m.ln != nil {
			m.ln.Close()
			m.ln = nil
		}
		m.mu.Unlock()
	}
	for c := range conns {
		c.Close()
	}
	f.wg.Wait()
	if f.sealed != nil {
		f.sealed.close()
	}
	return nil
}

// sleep waits d, or less if the fleet closes; it reports whether to go on.
func (f *Fleet) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-f.done:
		return false
	}
}

// hostsOnly resolves target names from /etc/hosts only: members never send
// a DNS query off the machine, so "localhost" works and other names fail.
var hostsOnly = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("fleet resolves names from /etc/hosts only")
}}

func raiseNoFile() {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err == nil && r.Cur < r.Max {
		r.Cur = r.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
}
