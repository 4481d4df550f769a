package fleet

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
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/metacubex/mihomo/common/convert"
)

// socks5Connect runs a raw SOCKS5 CONNECT to host:port on c.
func socks5Connect(c net.Conn, user, pass, host string, port int) error {
	if user != "" {
		c.Write([]byte{5, 1, 2})
	} else {
		c.Write([]byte{5, 1, 0})
	}
	var b [2]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return err
	}
	if b[1] == 0xff {
		return errors.New("no acceptable method")
	}
	if b[1] == 2 {
		msg := append([]byte{1, byte(len(user))}, user...)
		msg = append(append(msg, byte(len(pass))), pass...)
		c.Write(msg)
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return err
		}
		if b[1] != 0 {
			return errors.New("auth rejected")
		}
	}
	req := []byte{5, 1, 0}
	if ip := net.ParseIP(host); ip != nil && ip.To4() != nil {
		req = append(append(req, 1), ip.To4()...)
	} else if ip != nil {
		req = append(append(req, 4), ip.To16()...)
	} else {
		req = append(append(req, 3, byte(len(host))), host...)
	}
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	c.Write(req)
	rep := make([]byte, 10)
	if _, err := io.ReadFull(c, rep); err != nil {
		return err
	}
	if rep[1] != 0 {
		return fmt.Errorf("socks5 reply %d", rep[1])
	}
	return nil
}

func socks4Connect(c net.Conn, user, host string, port int) error {
	req := binary.BigEndian.AppendUint16([]byte{4, 1}, uint16(port))
	if ip := net.ParseIP(host).To4(); ip != nil {
		req = append(append(append(req, ip...), user...), 0)
	} else {
		req = append(append(append(req, 0, 0, 0, 1), user...), 0)
		req = append(append(req, host...), 0)
	}
	c.Write(req)
	rep := make([]byte, 8)
	if _, err := io.ReadFull(c, rep); err != nil {
		return err
	}
	if rep[1] != 90 {
		return fmt.Errorf("socks4 reply %d", rep[1])
	}
	return nil
}

// getVia fetches judge path through member m with a raw client of m's kind
// and returns the body.
func getVia(t *testing.T, m *Member, j *Judge, path string, useHost bool) (string, error) {
	t.Helper()
	return getViaAs(t, m, m.Spec.Username, m.Spec.Password, j, path, useHost)
}

func getViaAs(t *testing.T, m *Member, user, pass string, j *Judge, path string, useHost bool) (string, error) {
	t.Helper()
	host, ps, _ := net.SplitHostPort(j.Addr)
	port, _ := strconv.Atoi(ps)
	if useHost {
		host = "localhost"
	}
	if m.Spec.Kind == HTTP {
		pu := &url.URL{Scheme: "http", Host: m.Addr}
		if user != "" {
			pu.User = url.UserPassword(user, pass)
		}
		cl := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
		defer cl.CloseIdleConnections()
		resp, err := cl.Get("http://" + net.JoinHostPort(host, ps) + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("status %d", resp.StatusCode)
		}
		return string(b), nil
	}
	c, err := net.DialTimeout("tcp", m.Addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	switch m.Spec.Kind {
	case SOCKS5:
		err = socks5Connect(c, user, pass, host, port)
	case SOCKS4:
		err = socks4Connect(c, user, host, port)
	}
	if err != nil {
		return "", err
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, j.Addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), nil
}

func origin(t *testing.T, body string) string {
	t.Helper()
	var v struct{ Origin string }
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("judge body %q: %v", body, err)
	}
	return v.Origin
}

func TestPlainKindsExitFromOwnAddress(t *testing.T) {
	j := StartJudgeT(t)
	f := StartT(t, Spec{Members: []MemberSpec{
		{Kind: SOCKS5}, {Kind: SOCKS4}, {Kind: HTTP},
		{Kind: SOCKS5, Username: "u", Password: "p"},
		{Kind: SOCKS4, Username: "ident"},
		{Kind: HTTP, Username: "u", Password: "p"},
	}})
	for _, m := range f.Members() {
		for _, byName := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/auth=%v/hostname=%v", m.Spec.Kind, m.Spec.Username != "", byName), func(t *testing.T) {
				body, err := getVia(t, m, j, "/ip", byName)
				if err != nil {
					t.Fatal(err)
				}
				if got := origin(t, body); got != m.ExitIP || got != MemberIP(m.Index).String() {
					t.Errorf("judge saw %s, want member %d's %s", got, m.Index, m.ExitIP)
				}
			})
		}
	}
}

func TestWrongCredentialsRejected(t *testing.T) {
	j := StartJudgeT(t)
	f := StartT(t, Spec{Members: []MemberSpec{
		{Kind: SOCKS5, Username: "u", Password: "p"},
		{Kind: SOCKS4, Username: "ident"},
		{Kind: HTTP, Username: "u", Password: "p"},
	}})
	for _, m := range f.Members() {
		user := m.Spec.Username
		if m.Spec.Kind == SOCKS4 {
			user = "other"
		}
		_, err := getViaAs(t, m, user, "wrong", j, "/ip", false)
		if err == nil {
			t.Errorf("%s: wrong credentials accepted", m.Spec.Kind)
		}
	}
}

func TestBehaviors(t *testing.T) {
	f := StartT(t, Spec{Members: []MemberSpec{
		{Kind: SOCKS5, Behavior: Refuse},
		{Kind: SOCKS5, Behavior: Blackhole},
		{Kind: SOCKS5, Behavior: Reset},
		{Kind: SOCKS5, Behavior: Garbage},
		{Kind: Trojan, Behavior: Reset},
		{Kind: SS, Behavior: Blackhole},
	}})
	tests := []struct {
		i    int
		want func(reply []byte, err error) bool
		what string
	}{
		{0, nil, "connection refused"},
		{1, func(_ []byte, err error) bool { return isTimeout(err) }, "read timeout"},
		{2, func(_ []byte, err error) bool { return errors.Is(err, syscall.ECONNRESET) }, "connection reset"},
		{3, func(r []byte, err error) bool { return len(r) > 0 && r[0] == garbageReply[0] }, "garbage bytes"},
		{4, func(_ []byte, err error) bool { return errors.Is(err, syscall.ECONNRESET) }, "connection reset"},
		{5, func(_ []byte, err error) bool { return isTimeout(err) }, "read timeout"},
	}
	for _, tt := range tests {
		m := f.Member(tt.i)
		t.Run(string(m.Spec.Kind)+"/"+string(m.Spec.Behavior), func(t *testing.T) {
			c, err := net.DialTimeout("tcp", m.Addr, time.Second)
			if tt.want == nil {
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Fatalf("dial: %v, want %s", err, tt.what)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte{5, 1, 0, 0x16, 3, 1})
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			buf := make([]byte, 64)
			n, err := c.Read(buf)
			if !tt.want(buf[:n], err) {
				t.Errorf("got %q, %v; want %s", buf[:n], err, tt.what)
			}
		})
	}
}

func TestTransparentAnonymousLocal(t *testing.T) {
	j := StartJudgeT(t)
	f := StartT(t, Spec{Members: []MemberSpec{
		{Kind: HTTP, Behavior: Transparent},
		{Kind: SOCKS5, Behavior: Transparent},
		{Kind: HTTP, Behavior: Anonymous},
		{Kind: HTTP, Behavior: Good},
		{Kind: SOCKS5, Behavior: Local},
	}})
	tests := []struct {
		i           int
		xff, via    bool
		exitOwn24   bool
		exitProbe24 bool
	}{
		{0, true, true, true, false},
		{1, true, true, true, false},
		{2, false, true, true, false},
		{3, false, false, true, false},
		{4, false, false, false, true},
	}
	for _, tt := range tests {
		m := f.Member(tt.i)
		t.Run(string(m.Spec.Kind)+"/"+string(m.Spec.Behavior), func(t *testing.T) {
			body, err := getVia(t, m, j, "/get", false)
			if err != nil {
				t.Fatal(err)
			}
			var v struct {
				Origin  string
				Headers map[string]string
			}
			if err := json.Unmarshal([]byte(body), &v); err != nil {
				t.Fatal(err)
			}
			if got := v.Headers["X-Forwarded-For"]; (got == "127.0.0.1") != tt.xff {
				t.Errorf("X-Forwarded-For = %q, want client address: %v", got, tt.xff)
			}
			if got := v.Headers["Via"]; (got != "") != tt.via {
				t.Errorf("Via = %q, want set: %v", got, tt.via)
			}
			if got := v.Origin == MemberIP(m.Index).String(); got != tt.exitOwn24 {
				t.Errorf("origin %s, member address %s", v.Origin, MemberIP(m.Index))
			}
			if got := strings.HasPrefix(v.Origin, "127.0.0."); got != tt.exitProbe24 {
				t.Errorf("origin %s in 127.0.0.0/24: %v, want %v", v.Origin, got, tt.exitProbe24)
			}
		})
	}
}

func TestLatencyDelaysHandshake(t *testing.T) {
	f := StartT(t, Spec{Members: []MemberSpec{{Kind: SOCKS5, Latency: 200 * time.Millisecond}}})
	c, err := net.Dial("tcp", f.Member(0).Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.Write([]byte{5, 1, 0})
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 190*time.Millisecond || d > time.Second {
		t.Errorf("method reply after %v, want ≈200ms", d)
	}
}

func TestSetBehaviorAtRuntime(t *testing.T) {
	j := StartJudgeT(t)
	f := StartT(t, Spec{Members: []MemberSpec{{Kind: SOCKS5}}})
	m := f.Member(0)
	if _, err := getVia(t, m, j, "/ip", false); err != nil {
		t.Fatal(err)
	}
	if err := m.SetBehavior(Refuse); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", m.Addr, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("after Refuse: %v", err)
	}
	if err := m.SetBehavior(Blackhole); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", m.Addr, time.Second)
	if err != nil {
		t.Fatalf("after Blackhole: %v", err)
	}
	c.Write([]byte{5, 1, 0})
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := c.Read(make([]byte, 2)); !isTimeout(err) {
		t.Fatalf("after Blackhole: %v, want timeout", err)
	}
	c.Close()
	if err := m.SetBehavior(Good); err != nil {
		t.Fatal(err)
	}
	if _, err := getVia(t, m, j, "/ip", false); err != nil {
		t.Fatalf("after Good again: %v", err)
	}
}

func TestWriteListAndGeoIP(t *testing.T) {
	f := StartT(t, Mixed(12, 0.25))
	dir := t.TempDir()
	list, geo := f.WriteFilesT(t, dir)
	raw, _ := os.ReadFile(list)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 12 {
		t.Fatalf("%d lines, want 12", len(lines))
	}
	for i, l := range lines {
		m := f.Member(i)
		if !strings.HasPrefix(l, string(m.Spec.Kind)+"://") {
			t.Errorf("line %d %q: want scheme %s", i+1, l, m.Spec.Kind)
		}
		if m.Spec.Kind.plain() {
			continue
		}
		ps, err := convert.ConvertsV2Ray([]byte(l))
		if err != nil || len(ps) != 1 {
			t.Fatalf("line %d %q: share link does not parse: %v", i+1, l, err)
		}
		host, port, _ := net.SplitHostPort(m.Addr)
		if ps[0]["server"] != host || fmt.Sprint(ps[0]["port"]) != port || ps[0]["type"] != string(m.Spec.Kind) {
			t.Errorf("line %d parses to %v, want %s %s", i+1, ps[0], m.Spec.Kind, m.Addr)
		}
	}
	raw, _ = os.ReadFile(geo)
	n := 0
	for _, l := range strings.Split(string(raw), "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		p := strings.Split(l, ",")
		lo, _ := strconv.ParseUint(p[0], 10, 32)
		ip := net.IPv4(byte(lo>>24), byte(lo>>16), byte(lo>>8), byte(lo))
		m := f.ByExitIP(net.IPv4(ip[12], ip[13], ip[14], 1).String())
		if m == nil || m.Spec.Country != p[2] {
			t.Errorf("geoip line %q maps to no member of that country", l)
		}
		n++
	}
	want := 0
	for _, m := range f.Members() {
		if m.Spec.Behavior != Local {
			want++
		}
	}
	if n != want {
		t.Errorf("%d geoip lines, want %d", n, want)
	}
}

func TestMixedShare(t *testing.T) {
	s := Mixed(100, 0.3)
	bad := 0
	for _, m := range s.Members {
		if m.Behavior != Good {
			bad++
		}
	}
	if bad != 30 {
		t.Errorf("%d bad of 100, want 30", bad)
	}
}

func TestJudgeShapes(t *testing.T) {
	j := StartJudgeT(t)
	get := func(path string) string {
		resp, err := http.Get(j.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if o := origin(t, get("/ip")); o != "127.0.0.1" {
		t.Errorf("/ip origin %q", o)
	}
	if p := get("/plain"); p != "127.0.0.1\n" {
		t.Errorf("/plain %q", p)
	}
	var h struct{ Headers map[string]string }
	json.Unmarshal([]byte(get("/headers")), &h)
	if h.Headers["Host"] != j.Addr || h.Headers["User-Agent"] == "" {
		t.Errorf("/headers %v", h.Headers)
	}
	if j.Requests() != 3 {
		t.Errorf("Requests() = %d, want 3", j.Requests())
	}
}

func TestStartRejectsBadSpec(t *testing.T) {
	for _, s := range []Spec{
		{Members: []MemberSpec{{Kind: "gopher"}}},
		{Members: []MemberSpec{{Kind: SOCKS5, Behavior: "sulk"}}},
	} {
		if f, err := Start(context.Background(), s); err == nil {
			f.Close()
			t.Errorf("%+v started", s)
		}
	}
}

// BenchmarkStart10k starts and closes a 10,000-member fleet.
func BenchmarkStart10k(b *testing.B) {
	for i := 0; i < b.N; i++ {
		start := time.Now()
		f, err := Start(context.Background(), Mixed(10000, 0.3))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "start-s")
		f.Close()
	}
}

// TestBreakBehaviors: a Break member completes its SOCKS5 handshake with
// a success reply and then breaks the tunnel: EOF, RST, or garbage in
// answer to the client's first bytes.
func TestBreakBehaviors(t *testing.T) {
	j := StartJudgeT(t)
	var spec Spec
	for _, b := range []Behavior{BreakClose, BreakReset, BreakGarbage} {
		spec.Members = append(spec.Members, MemberSpec{Kind: SOCKS5, Behavior: b})
	}
	f := StartT(t, spec)
	host, port, _ := net.SplitHostPort(j.Addr)
	p, _ := strconv.Atoi(port)
	tests := []struct {
		want func(reply []byte, err error) bool
		what string
	}{
		{func(r []byte, err error) bool { return len(r) == 0 && err == nil }, "EOF at once"},
		{func(_ []byte, err error) bool { return errors.Is(err, syscall.ECONNRESET) }, "connection reset"},
		{func(r []byte, err error) bool { return string(r) == string(garbageReply) }, "garbage bytes"},
	}
	for i, tt := range tests {
		m := f.Member(i)
		t.Run(string(m.Spec.Behavior), func(t *testing.T) {
			c, err := net.DialTimeout("tcp", m.Addr, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			if err := socks5Connect(c, "", "", host, p); err != nil {
				t.Fatalf("handshake: %v, want it to succeed", err)
			}
			var werr error
			if m.Spec.Behavior == BreakGarbage { // it answers the client's first bytes
				_, werr = c.Write([]byte("GET / HTTP/1.1\r\nHost: j\r\n\r\n"))
			}
			got, err := io.ReadAll(c) // to the member's close
			if err == nil {
				err = werr
			}
			if !tt.want(got, err) {
				t.Errorf("after the handshake: %q, %v; want %s", got, err, tt.what)
			}
		})
	}
}
