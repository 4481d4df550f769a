package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/socks"
	"github.com/proxypool/proxypool/internal/upstream"
)

func exitsOf(f *fleet.Fleet) map[string]bool {
	m := map[string]bool{}
	for _, x := range f.Members() {
		m[x.ExitIP] = true
	}
	return m
}

func TestProtocolsWithRealClients(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(3, fleet.SOCKS5, fleet.Good)})
	exits := exitsOf(w.fleet)
	tests := []struct {
		name string
		do   func() (string, error)
	}{
		{"go http proxy (absolute URI)", func() (string, error) { return get(client("http://"+w.addr, false), w.judge+"/ip") }},
		{"go socks5 proxy", func() (string, error) { return get(client("socks5://"+w.addr, false), w.judge+"/ip") }},
		{"curl socks5h", func() (string, error) { return curl(t, "-x", "socks5h://"+w.addr, w.judge+"/ip") }},
		{"curl socks5", func() (string, error) { return curl(t, "-x", "socks5://"+w.addr, w.judge+"/ip") }},
		{"curl http", func() (string, error) { return curl(t, "-x", "http://"+w.addr, w.judge+"/ip") }},
		{"curl http CONNECT", func() (string, error) { return curl(t, "-p", "-x", "http://"+w.addr, w.judge+"/ip") }},
		{"curl socks4a", func() (string, error) { return curl(t, "--socks4a", w.addr, w.judge+"/ip") }},
		{"curl socks4", func() (string, error) { return curl(t, "--socks4", w.addr, w.judge+"/ip") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.do()
			if err != nil {
				t.Fatalf("%v: %s", err, got)
			}
			if !exits[got] {
				t.Fatalf("target saw %q, not a fleet exit", got)
			}
		})
	}
}

func TestRotationAcrossTheFleet(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(5, fleet.SOCKS5, fleet.Good)})
	for _, proxy := range []string{"socks5://" + w.addr, "http://" + w.addr} {
		seen := map[string]int{}
		c := client(proxy, false)
		for range 10 {
			ip, err := get(c, w.judge)
			if err != nil {
				t.Fatal(err)
			}
			seen[ip]++
		}
		if len(seen) != 5 {
			t.Fatalf("%s: 10 requests left through %d exits: %v", proxy, len(seen), seen)
		}
	}
}

func TestKeepAliveRequestsUseDifferentUpstreams(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(4, fleet.SOCKS5, fleet.Good), gw: gateway.Options{InfoHeader: "X-Proxypool-Upstream"}})
	c := client("http://"+w.addr, true)
	var reused atomic.Int32
	seen := map[string]bool{}
	for i := range 8 {
		req, _ := http.NewRequest("GET", w.judge, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if i.Reused {
				reused.Add(1)
			}
		}}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if info := resp.Header.Get("X-Proxypool-Upstream"); !strings.Contains(info, "exit="+string(b)) {
			t.Fatalf("request %d: info header %q does not name exit %s", i, info, b)
		}
		seen[string(b)] = true
	}
	if reused.Load() < 7 {
		t.Fatalf("client connection reused %d of 7 times", reused.Load())
	}
	if len(seen) != 4 {
		t.Fatalf("keep-alive requests used %d exits", len(seen))
	}
}

func TestStickySession(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(6, fleet.SOCKS5, fleet.Good)})
	for _, proxy := range []string{"socks5://user-session-abc123-ttl-10m:x@" + w.addr, "http://user-session-abc123:x@" + w.addr} {
		c := client(proxy, false)
		first := ""
		for i := range 6 {
			ip, err := get(c, w.judge)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = ip
			} else if ip != first {
				t.Fatalf("%s: session moved from %s to %s", proxy, first, ip)
			}
		}
	}
	// many sessions spread over the fleet
	seen := map[string]bool{}
	for i := range 12 {
		ip, err := get(client(fmt.Sprintf("socks5://user-session-s%d:x@%s", i, w.addr), false), w.judge)
		if err != nil {
			t.Fatal(err)
		}
		seen[ip] = true
	}
	if len(seen) < 3 {
		t.Fatalf("12 sessions used only %d exits", len(seen))
	}
}

// TestSessionsPerAccount: a session belongs to the account that opened
// it, so two accounts that pick the same session id get one exit each
// (before, acct1-session-zN and acct2-session-zN shared exit and TTL).
func TestSessionsPerAccount(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(6, fleet.SOCKS5, fleet.Good)})
	for _, scheme := range []string{"socks5", "http"} {
		differ := 0
		for i := range 8 {
			exit := map[string]string{}
			for _, acct := range []string{"acct1", "acct2"} {
				c := client(fmt.Sprintf("%s://%s-session-%sz%d:x@%s", scheme, acct, scheme, i, w.addr), false)
				for range 3 {
					ip, err := get(c, w.judge)
					if err != nil {
						t.Fatalf("%s %s session z%d: %v", scheme, acct, i, err)
					}
					if prev, ok := exit[acct]; ok && prev != ip {
						t.Fatalf("%s %s session z%d moved from %s to %s", scheme, acct, i, prev, ip)
					}
					exit[acct] = ip
				}
			}
			if exit["acct1"] != exit["acct2"] {
				differ++
			}
		}
		// 6 exits: two independent sessions share one by chance 1 time in 6
		if differ < 3 {
			t.Errorf("%s: acct1 and acct2 had different exits in %d of 8 sessions of the same id, want them independent", scheme, differ)
		}
	}
}

func TestCountryTargeting(t *testing.T) {
	spec := fleet.Spec{}
	for i := range 6 {
		spec.Members = append(spec.Members, fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: []string{"US", "DE", "NL"}[i%3]})
	}
	w := newWorld(t, worldOpts{
		spec:   spec,
		pool:   pool.Options{Groups: []pool.Group{{Name: "us", Countries: []string{"US"}}, {Name: "nonus", ExcludeCountries: []string{"US"}}, {Name: "jp", Countries: []string{"JP"}}}},
		pinned: map[string]string{"us": "us", "nonus": "nonus", "jp": "jp"},
	})
	country := func(ip string) string { return w.fleet.ByExitIP(ip).Spec.Country }
	tests := []struct {
		name, proxy string
		ok          func(string) bool
	}{
		{"pinned port us", "socks5://" + w.pinned["us"], func(c string) bool { return c == "US" }},
		{"pinned port nonus", "http://" + w.pinned["nonus"], func(c string) bool { return c != "US" }},
		{"username country", "socks5://user-country-de:x@" + w.addr, func(c string) bool { return c == "DE" }},
		{"username group", "http://user-group-us:x@" + w.addr, func(c string) bool { return c == "US" }},
		{"pinned nonus + country nl", "socks5://user-country-nl:x@" + w.pinned["nonus"], func(c string) bool { return c == "NL" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := client(tt.proxy, false)
			for range 6 {
				ip, err := get(c, w.judge)
				if err != nil {
					t.Fatal(err)
				}
				if !tt.ok(country(ip)) {
					t.Fatalf("left through %s (%s)", ip, country(ip))
				}
			}
		})
	}
	t.Run("empty group is 503 with Proxy-Status", func(t *testing.T) {
		_, err := get(client("http://"+w.pinned["jp"], false), w.judge)
		if err == nil || !strings.HasPrefix(err.Error(), "503 proxypool; error=destination_unavailable") || !strings.Contains(err.Error(), "no healthy upstream in group \"jp\"") {
			t.Fatalf("got %v", err)
		}
		out, err := curl(t, "-p", "-x", "http://"+w.pinned["jp"], w.judge)
		if err == nil || !strings.Contains(out, "503") {
			t.Fatalf("curl CONNECT on empty group: %v %s", err, out)
		}
		c, err := net.Dial("tcp", w.pinned["jp"])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = socks.Client{}.Connect(c, "127.0.0.1:80")
		if re, ok := err.(*socks.ReplyError); !ok || re.Code != socks.NetworkUnreachable {
			t.Fatalf("socks5 on empty group: %v", err)
		}
	})
}

func TestFailoverPastDeadUpstreams(t *testing.T) {
	spec := fleet.Spec{Members: []fleet.MemberSpec{
		{Kind: fleet.SOCKS5, Behavior: fleet.Refuse},
		{Kind: fleet.SOCKS5, Behavior: fleet.Blackhole},
		{Kind: fleet.SOCKS5, Behavior: fleet.Good},
		{Kind: fleet.SOCKS5, Behavior: fleet.Refuse},
		{Kind: fleet.SOCKS5, Behavior: fleet.Garbage},
		{Kind: fleet.SOCKS5, Behavior: fleet.Good},
	}}
	// EjectShare 1: this test's one client may eject the 4 of 6 that fail
	// (the default budget, a tenth of the pool, would leave 3 in)
	w := newWorld(t, worldOpts{spec: spec, gw: gateway.Options{MaxTries: 4, MinDialTimeout: 300 * time.Millisecond}, pool: pool.Options{EjectAfter: 1, EjectShare: 1}})
	good := map[string]bool{w.fleet.Member(2).ExitIP: true, w.fleet.Member(5).ExitIP: true}
	start := time.Now()
	for i := range 20 {
		for _, proxy := range []string{"socks5://" + w.addr, "http://" + w.addr} {
			ip, err := get(client(proxy, false), w.judge)
			if err != nil {
				t.Fatalf("request %d via %s: %v", i, proxy, err)
			}
			if !good[ip] {
				t.Fatalf("left through %s", ip)
			}
		}
	}
	// one black-hole timeout at most, then ejection
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("40 requests took %v", d)
	}
	if n := w.pool.Len(); n != 2 {
		t.Fatalf("pool still holds %d upstreams after failures", n)
	}
	w.store.mu.Lock()
	fails := 0
	for _, r := range w.store.passes {
		if !r.OK && r.Passive {
			fails++
		}
	}
	w.store.mu.Unlock()
	if fails < 4 {
		t.Fatalf("reporter saw %d passive failures", fails)
	}
}

func TestAllDeadIsOnePreciseError(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(3, fleet.SOCKS5, fleet.Refuse)})
	_, err := get(client("http://"+w.addr, false), w.judge)
	if err == nil || !strings.HasPrefix(err.Error(), "502 proxypool; error=connection_refused") || !strings.Contains(err.Error(), "after 3 tries") {
		t.Fatalf("got %v", err)
	}
	c, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// by now all three are ejected (default EjectAfter 3 not reached, but tried)
	err = socks.Client{}.Connect(c, "127.0.0.1:80")
	if _, ok := err.(*socks.ReplyError); !ok {
		t.Fatalf("socks5 with all dead: %v", err)
	}
}

func TestReloadUnderLoadDropsNothing(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(8, fleet.SOCKS5, fleet.Good)})
	all := records(w.fleet.Members())
	// a long tunnel opened before the reloads must survive them
	tun, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	if err := (socks.Client{}).Connect(tun, strings.TrimPrefix(w.judge, "http://")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var ok, failed atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client("socks5://"+w.addr, false)
			for ctx.Err() == nil {
				if _, err := get(c, w.judge); err != nil {
					failed.Add(1)
					t.Logf("request failed: %v", err)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	for i := 0; ctx.Err() == nil; i++ {
		w.store.set(all[i%4 : i%4+4]) // swap halves of the fleet in and out
		time.Sleep(30 * time.Millisecond)
	}
	wg.Wait()
	if failed.Load() != 0 || ok.Load() < 20 {
		t.Fatalf("%d ok, %d failed during reloads", ok.Load(), failed.Load())
	}
	fmt.Fprintf(tun, "GET / HTTP/1.1\r\nHost: j\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(tun), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("tunnel opened before the reloads: %v", err)
	}
}

func TestAuth(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(2, fleet.SOCKS5, fleet.Good), gw: gateway.Options{Users: map[string]string{"alice": "s3cret"}}})
	tests := []struct {
		name, proxy, want string
	}{
		{"http ok", "http://alice:s3cret@" + w.addr, ""},
		{"http params ok", "http://alice-country-us-session-x:s3cret@" + w.addr, "503"}, // no US member
		{"http no creds", "http://" + w.addr, "407"},
		{"http wrong password", "http://alice:nope@" + w.addr, "407"},
		{"http unknown param", "http://alice-city-paris:s3cret@" + w.addr, `unknown parameter "city"`},
		{"socks ok", "socks5://alice:s3cret@" + w.addr, ""},
		{"socks wrong password", "socks5://alice:nope@" + w.addr, "socks"},
		{"socks no creds", "socks5://" + w.addr, "socks"},
		{"socks unknown param", "socks5://alice-foo-bar:s3cret@" + w.addr, "socks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := get(client(tt.proxy, false), w.judge)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSlowlorisAndHeaderCap(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(1, fleet.SOCKS5, fleet.Good), gw: gateway.Options{ClientTimeout: 300 * time.Millisecond, MaxHeaderBytes: 4096}})
	c, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET http://x/ HTTP/1.1\r\n") // then nothing
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	if _, err := io.ReadAll(c); err != nil || time.Since(start) > 2*time.Second {
		t.Fatalf("silent client not cut off: %v after %v", err, time.Since(start))
	}
	c2, _ := net.Dial("tcp", w.addr)
	defer c2.Close()
	go io.WriteString(c2, "GET http://x/ HTTP/1.1\r\nX: "+strings.Repeat("a", 8000)+"\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil || resp.StatusCode != 431 {
		t.Fatalf("huge header: %v %v", resp, err)
	}
}

func TestDrainLetsTunnelsFinish(t *testing.T) {
	w := newWorld(t, worldOpts{spec: fleet.Uniform(1, fleet.SOCKS5, fleet.Good), gw: gateway.Options{DrainTimeout: 2 * time.Second}})
	tun, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	if err := (socks.Client{}).Connect(tun, strings.TrimPrefix(w.judge, "http://")); err != nil {
		t.Fatal(err)
	}
	w.cancel()
	time.Sleep(100 * time.Millisecond)
	if _, err := net.DialTimeout("tcp", w.addr, time.Second); err == nil {
		t.Fatal("still accepting after shutdown began")
	}
	fmt.Fprintf(tun, "GET / HTTP/1.1\r\nHost: j\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(tun), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("open tunnel cut during drain: %v", err)
	}
	tun.Close()
	select {
	case err := <-w.done:
		if err != nil {
			t.Fatal(err)
		}
		w.done <- nil
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return after the last tunnel closed")
	}
}

func TestParseUsername(t *testing.T) {
	tests := []struct {
		in      string
		want    gateway.Params
		wantErr string
	}{
		{"user", gateway.Params{User: "user"}, ""},
		{"user-country-us-session-abc123-ttl-10m", gateway.Params{User: "user", Country: "US", Session: "abc123", TTL: 10 * time.Minute}, ""},
		{"u-group-tor-us-country-de", gateway.Params{User: "u", Group: "tor-us", Country: "DE"}, ""},
		{"u-session-a-ttl-5", gateway.Params{User: "u", Session: "a", TTL: 5 * time.Minute}, ""},
		{"u-city-paris", gateway.Params{}, `unknown parameter "city"`},
		{"u-country", gateway.Params{}, `parameter "country" needs a value`},
		{"u-country-usa", gateway.Params{}, "not a two-letter code"},
		{"u-ttl-10m", gateway.Params{}, "ttl without session"},
		{"u-session-a-ttl-soon", gateway.Params{}, "not a duration"},
		{"-country-us", gateway.Params{}, "empty account name"},
		{"u-target-imot-session-s1", gateway.Params{User: "u", Targets: []string{"imot"}, Session: "s1"}, ""},
		{"u-target-imot-target-shop_2", gateway.Params{User: "u", Targets: []string{"imot", "shop_2"}}, ""},
		{"u-target-a-target-b-target-c-target-d-target-e", gateway.Params{}, "more than 4 targets"},
		{"u-target-im.ot", gateway.Params{}, "is not a name"},
		{"u-target-" + strings.Repeat("x", 65), gateway.Params{}, "at most 64 bytes"},
		{"u-target", gateway.Params{}, `parameter "target" needs a value`},
	}
	for _, tt := range tests {
		got, err := gateway.ParseUsername(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: err %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: %+v %v", tt.in, got, err)
		}
	}
}

func TestOpenListenerNeedsAllowOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Skip(err)
	}
	defer ln.Close()
	p, _ := pool.New(pool.Options{Loader: &memStore{}})
	gw, _ := gateway.New(gateway.Options{Picker: p, Dialer: dial.New(dial.Options{})})
	err = gw.Run(context.Background(), map[string][]net.Listener{"gateway": {ln}})
	if err == nil || !strings.Contains(err.Error(), "allow-open") {
		t.Fatalf("got %v", err)
	}
}

// localShort fails every dial as a host out of file descriptors would,
// while out is set.
type localShort struct {
	d   gateway.Dialer
	out atomic.Bool
}

func (l *localShort) DialContext(ctx context.Context, u upstream.Entry, addr string) (net.Conn, error) {
	if l.out.Load() {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	}
	return l.d.DialContext(ctx, u, addr)
}

// TestLocalShortageIsNotTheUpstreams: while this host is out of file
// descriptors every request fails with a 503 naming an internal error
// (SOCKS: general failure), yet no upstream is reported or ejected, so
// the pool serves again the moment descriptors are back.
func TestLocalShortageIsNotTheUpstreams(t *testing.T) {
	short := &localShort{}
	w := newWorld(t, worldOpts{spec: fleet.Uniform(3, fleet.SOCKS5, fleet.Good), gw: gateway.Options{MaxTries: 3},
		dialer: func(d *dial.Pool) gateway.Dialer { short.d = d; return short }})
	short.out.Store(true)
	for range 8 { // well past eject-after for every upstream
		_, err := get(client("http://"+w.addr, false), w.judge)
		if err == nil || !strings.HasPrefix(err.Error(), "503 proxypool; error=proxy_internal_error") {
			t.Fatalf("HTTP while out of fds: %v", err)
		}
	}
	c := dialGW(t, w.addr)
	err := socks.Client{}.Connect(c, "127.0.0.1:80")
	if re, ok := err.(*socks.ReplyError); !ok || re.Code != socks.GeneralFailure {
		t.Fatalf("SOCKS5 while out of fds: %v", err)
	}
	if n := w.pool.Len(); n != 3 {
		t.Errorf("%d of 3 upstreams left in the pool after local failures", n)
	}
	w.store.mu.Lock()
	reported := len(w.store.passes)
	w.store.mu.Unlock()
	if reported != 0 {
		t.Errorf("%d passive failures reported against upstreams for local shortage", reported)
	}
	short.out.Store(false)
	exits := exitsOf(w.fleet)
	for range 3 {
		if ip, err := get(client("http://"+w.addr, false), w.judge); err != nil || !exits[ip] {
			t.Fatalf("after the shortage: %q, %v", ip, err)
		}
	}
}
