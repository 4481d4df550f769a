package failover_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/gateway/failover"
	"github.com/proxypool/proxypool/internal/upstream"
)

// listPicker picks the first upstream of ids not tried yet, as the pool
// does for a request's failover.
type listPicker struct{ ids []string }

var errNone = errors.New("no upstream left")

func (p listPicker) Pick(sel *upstream.Selector) (upstream.Choice, error) {
	for _, id := range p.ids {
		if !slices.Contains(sel.Tried, id) {
			var ch upstream.Choice
			ch.ID = id
			return ch, nil
		}
	}
	return upstream.Choice{}, errNone
}

// TestFailover drives one request through a list of try outcomes and
// checks what a user of the gateway would see: which upstreams were
// tried, what was reported against them and the final answer.
func TestFailover(t *testing.T) {
	errRefused := errors.New("refused")
	tests := []struct {
		name     string
		ids      []string
		maxTries int
		attempts int      // Env.MaxAttempts
		causes   []string // per try: "" succeeds (and the stream proves itself), "broke:C" gives a tunnel that breaks with C, "instant:C" a connect refused at once, else its cause
		// want
		tried     []string
		reported  []string // "id:cause" ("id:" for success)
		retries   uint64
		tunnels   uint64
		errCause  string
		errTries  int
		errPicked bool // the error is "no upstream at all"
	}{
		{name: "first works", ids: []string{"a", "b"}, maxTries: 3, causes: []string{""},
			tried: []string{"a"}, reported: []string{"a:"}, tunnels: 1},
		{name: "fails over to the next", ids: []string{"a", "b", "c"}, maxTries: 3, causes: []string{"refused", ""},
			tried: []string{"a", "b"}, reported: []string{"a:refused", "b:"}, retries: 1, tunnels: 1},
		{name: "tries used up", ids: []string{"a", "b", "c"}, maxTries: 2, causes: []string{"refused", "timeout"},
			tried: []string{"a", "b"}, reported: []string{"a:refused", "b:timeout"}, retries: 1, errCause: "timeout", errTries: 2},
		{name: "dead target stops at once, nothing reported", ids: []string{"a", "b"}, maxTries: 3, causes: []string{"target_refused"},
			tried: []string{"a"}, errCause: "target_refused", errTries: 1},
		{name: "local shortage fails over, nothing reported", ids: []string{"a", "b"}, maxTries: 3, causes: []string{"local", "local"},
			tried: []string{"a", "b"}, retries: 1, errCause: "local", errTries: 2},
		{name: "no upstream at all", maxTries: 3, errPicked: true},
		{name: "policy refusal fails over, nothing reported", ids: []string{"a", "b"}, maxTries: 3, causes: []string{"target_denied", ""},
			tried: []string{"a", "b"}, reported: []string{"b:"}, retries: 1, tunnels: 1},
		{name: "policy refusals everywhere: the last answers", ids: []string{"a", "b"}, maxTries: 3, causes: []string{"target_denied", "target_denied"},
			tried: []string{"a", "b"}, retries: 1, errCause: "target_denied", errTries: 2},
		{name: "a broken tunnel counts, and fails over", ids: []string{"a", "b"}, maxTries: 3, causes: []string{"broke:closed", ""},
			tried: []string{"a", "b"}, reported: []string{"a:closed", "b:"}, retries: 1, tunnels: 2},
		{name: "broken tunnels use the tries up", ids: []string{"a", "b", "c"}, maxTries: 2, causes: []string{"broke:reset", "broke:handshake"},
			tried: []string{"a", "b"}, reported: []string{"a:reset", "b:handshake"}, retries: 1, tunnels: 2, errCause: "handshake", errTries: 2},
		{name: "pool runs out after one", ids: []string{"a"}, maxTries: 3, causes: []string{"reset"},
			tried: []string{"a"}, reported: []string{"a:reset"}, errCause: "reset", errTries: 1},
		{name: "instant refusals do not use up the tries", ids: []string{"a", "b", "c", "d", "e"}, maxTries: 2, attempts: 16,
			causes: []string{"instant:refused", "instant:refused", "instant:refused", ""},
			tried:  []string{"a", "b", "c", "d"}, reported: []string{"a:refused", "b:refused", "c:refused", "d:"}, retries: 3, tunnels: 1},
		{name: "max-attempts caps instant refusals", ids: []string{"a", "b", "c", "d", "e"}, maxTries: 2, attempts: 3,
			causes: []string{"instant:refused", "instant:refused", "instant:refused"},
			tried:  []string{"a", "b", "c"}, reported: []string{"a:refused", "b:refused", "c:refused"}, retries: 2, errCause: "refused", errTries: 3},
		{name: "slow failures count between instant ones", ids: []string{"a", "b", "c", "d", "e"}, maxTries: 2, attempts: 16,
			causes: []string{"timeout", "instant:refused", "timeout"},
			tried:  []string{"a", "b", "c"}, reported: []string{"a:timeout", "b:refused", "c:timeout"}, retries: 2, errCause: "timeout", errTries: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reported []string
			var retries, tunnels atomic.Uint64
			cause := "" // what Classify names the next error
			env := &failover.Env{
				Report:   func(r upstream.CheckResult) { reported = append(reported, r.ID+":"+r.Cause.String()) },
				Classify: func(error) upstream.Cause { return mustCause(t, cause) },
				Retries:  &retries, Tunnels: &tunnels, NoPipe: &failover.NoPipeline{},
				MaxTries: tt.maxTries, MaxAttempts: tt.attempts, Total: time.Minute, MinTry: time.Second, MaxTry: 5 * time.Second,
			}
			var sel upstream.Selector
			var f failover.Failover
			now := time.Now()
			env.Start(&f, &sel, listPicker{tt.ids}, "example.org:443", now, time.Time{})
			var tried []string
			ok := false
			for i := 0; ; i++ {
				ch, more := f.Next(now)
				if !more {
					break
				}
				if d := f.Begin(now); d != time.Second {
					t.Errorf("try %d bound %v, want the 1s floor for an upstream of unknown latency", i, d)
				}
				tried = append(tried, ch.ID)
				if i >= len(tt.causes) {
					t.Fatalf("try %d not in the table", i)
				}
				if tt.causes[i] == "" {
					f.Succeeded(now)
					f.Confirm()
					f.Confirm() // once only
					ok = true
					break
				}
				if c, broke := strings.CutPrefix(tt.causes[i], "broke:"); broke {
					f.Succeeded(now)
					f.Broke(now, mustCause(t, c), errRefused)
					f.Confirm() // nothing more: it broke
					continue
				}
				err := errRefused
				if c, instant := strings.CutPrefix(tt.causes[i], "instant:"); instant {
					cause, err = c, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
				} else {
					cause = tt.causes[i]
				}
				if !f.Failed(now, err) {
					break
				}
			}
			if !slices.Equal(tried, tt.tried) {
				t.Errorf("tried %q, want %q", tried, tt.tried)
			}
			if !slices.Equal(reported, tt.reported) {
				t.Errorf("reported %q, want %q", reported, tt.reported)
			}
			if retries.Load() != tt.retries || tunnels.Load() != tt.tunnels {
				t.Errorf("retries %d tunnels %d, want %d and %d", retries.Load(), tunnels.Load(), tt.retries, tt.tunnels)
			}
			if ok {
				return
			}
			e := f.Err()
			if tt.errPicked {
				if !errors.Is(e.PickErr, errNone) {
					t.Errorf("error %v, want the picker's", e)
				}
				return
			}
			if e.PickErr != nil || e.Cause.String() != tt.errCause || e.Tries != tt.errTries || e.Last != tt.tried[len(tt.tried)-1] {
				t.Errorf("error %+v, want cause %q after %d tries, last %s", e, tt.errCause, tt.errTries, tt.tried[len(tt.tried)-1])
			}
		})
	}
}

// TestFailoverHandedOver: a request whose next upstream was picked (by an
// event loop) before it was handed over tries that one next, not a new
// pick, and its earlier tries still count against MaxTries.
func TestFailoverHandedOver(t *testing.T) {
	var retries, tunnels atomic.Uint64
	var picks int
	p := listPicker{[]string{"a", "b", "c"}}
	pk := pickerFunc(func(sel *upstream.Selector) (upstream.Choice, error) { picks++; return p.Pick(sel) })
	env := &failover.Env{
		Report:   func(upstream.CheckResult) {},
		Classify: func(error) upstream.Cause { return upstream.CauseRefused },
		Retries:  &retries, Tunnels: &tunnels, NoPipe: &failover.NoPipeline{},
		MaxTries: 2, Total: time.Minute, MinTry: time.Second, MaxTry: 5 * time.Second,
	}
	var sel upstream.Selector
	var f failover.Failover
	now := time.Now()
	env.Start(&f, &sel, pk, "example.org:443", now, time.Time{})
	f.Next(now) // the loop's first try: a
	f.Begin(now)
	f.Failed(now, errors.New("x"))
	ch, _ := f.Next(now) // picked b, then handed over before dialing it
	again, ok := f.Next(now)
	if !ok || again.ID != ch.ID || ch.ID != "b" || picks != 2 {
		t.Fatalf("after hand-over Next gave %q (ok %v, %d picks), want the held b without a new pick", again.ID, ok, picks)
	}
	f.Begin(now)
	f.Failed(now, errors.New("x"))
	if _, ok := f.Next(now); ok {
		t.Errorf("a third try with MaxTries 2")
	}
	if e := f.Err(); e.Tries != 2 || e.Last != "b" || retries.Load() != 1 {
		t.Errorf("error %+v, retries %d; want 2 tries, last b, 1 retry", e, retries.Load())
	}
}

// TestFailoverDeadline: no try begins once the request's deadline passed.
func TestFailoverDeadline(t *testing.T) {
	var retries, tunnels atomic.Uint64
	env := &failover.Env{
		Report: func(upstream.CheckResult) {}, Classify: func(error) upstream.Cause { return upstream.CauseOther },
		Retries: &retries, Tunnels: &tunnels, NoPipe: &failover.NoPipeline{},
		MaxTries: 3, Total: time.Second, MinTry: time.Second, MaxTry: 5 * time.Second,
	}
	var sel upstream.Selector
	var f failover.Failover
	now := time.Now()
	env.Start(&f, &sel, listPicker{[]string{"a"}}, "example.org:443", now, now.Add(300*time.Millisecond))
	if _, ok := f.Next(now); !ok {
		t.Fatal("no first try before the deadline")
	}
	if d := f.Begin(now); d != 300*time.Millisecond {
		t.Errorf("try bound %v, want the 300ms left before the deadline", d)
	}
	f.Failed(now, errors.New("x"))
	if _, ok := f.Next(now.Add(time.Second)); ok {
		t.Error("a try began after the deadline")
	}
}

type pickerFunc func(*upstream.Selector) (upstream.Choice, error)

func (f pickerFunc) Pick(sel *upstream.Selector) (upstream.Choice, error) { return f(sel) }

// mustCause is the cause a table names by its stored name.
func mustCause(t *testing.T, name string) upstream.Cause {
	t.Helper()
	c, err := upstream.ParseCause(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFailoverImpossibleTarget: a target no upstream can reach gets no
// pick and no try; its error says why and reports nothing.
func TestFailoverImpossibleTarget(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "127.0.0.1:65536", "h:-1", ":80", "0.0.0.0:80"} {
		picked := 0
		env := &failover.Env{
			Report:   func(r upstream.CheckResult) { t.Errorf("%s: reported %+v", addr, r) },
			Classify: func(error) upstream.Cause { return upstream.CauseOther },
			Retries:  &atomic.Uint64{}, Tunnels: &atomic.Uint64{}, NoPipe: &failover.NoPipeline{},
			MaxTries: 3, Total: time.Minute, MinTry: time.Second, MaxTry: 5 * time.Second,
		}
		var f failover.Failover
		env.Start(&f, &upstream.Selector{}, pickCounter{&picked}, addr, time.Now(), time.Time{})
		if _, ok := f.Next(time.Now()); ok || picked != 0 {
			t.Errorf("%s: a try was offered (%d picks)", addr, picked)
		}
		var te *upstream.TargetError
		if e := f.Err(); !errors.As(e.Target, &te) || !strings.Contains(e.Error(), "target") {
			t.Errorf("%s: error %v, want the target's", addr, e)
		}
	}
}

type pickCounter struct{ n *int }

func (p pickCounter) Pick(*upstream.Selector) (upstream.Choice, error) {
	*p.n++
	return upstream.Choice{}, nil
}

// TestMismatch: which first answers cannot come from a server of the
// protocol the client's first bytes show.
func TestMismatch(t *testing.T) {
	hello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}
	for _, tt := range []struct {
		name     string
		up, down string
		want     bool
	}{
		{"TLS answered by a handshake record", string(hello), "\x16\x03\x03\x00\x7a", false},
		{"TLS answered by an alert", string(hello), "\x15\x03\x03\x00\x02", false},
		{"TLS answered by one byte of a record", string(hello), "\x16", false},
		{"TLS answered by HTTP", string(hello), "HTTP/1.1 400 Bad Request\r\n", true},
		{"TLS answered by garbage", string(hello), "\x15\x04garbage", true},
		{"HTTP answered by HTTP", "GET / HTTP/1.1\r\n", "HTTP/1.1 200 OK\r\n", false},
		{"HTTP answered in pieces", "GET / HTTP/1.1\r\n", "HT", false},
		{"HTTP answered by garbage", "GET / HTTP/1.1\r\n", "\x15\x03garbage", true},
		{"OPTIONS answered by TLS", "OPTIONS * HTTP/1.1\r\n", "\x16\x03\x03", true},
		{"server speaks first: unknown", "", "SSH-2.0-x\r\n", false},
		{"unknown protocol", "\x00\x01binary", "anything", false},
		{"lower-case is no method", "get / HTTP/1.1", "junk", false},
	} {
		if got := failover.Mismatch([]byte(tt.up), []byte(tt.down)); got != tt.want {
			t.Errorf("%s: Mismatch %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestRefusedByTheHostSpendsNoClientBudget: a try refused by the upstream's
// own host (ECONNREFUSED: nothing listens there) is reported without the
// client, so the pool charges it whoever asked; every other failure
// carries the client, whose ejection budget it spends.
func TestRefusedByTheHostSpendsNoClientBudget(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		client string
	}{
		{"connection refused", fmt.Errorf("dial tcp 127.0.0.9:1080: %w", syscall.ECONNREFUSED), ""},
		{"handshake timeout", fmt.Errorf("socks5 reply: %w", os.ErrDeadlineExceeded), "198.51.100.7"},
		{"general failure", errors.New("socks5: general failure"), "198.51.100.7"},
	} {
		var got []upstream.CheckResult
		env := &failover.Env{
			Report:   func(r upstream.CheckResult) { got = append(got, r) },
			Classify: func(error) upstream.Cause { return upstream.CauseRefused },
			Retries:  &atomic.Uint64{}, Tunnels: &atomic.Uint64{}, NoPipe: &failover.NoPipeline{},
			MaxTries: 3, Total: time.Minute, MinTry: time.Second, MaxTry: 5 * time.Second,
		}
		var f failover.Failover
		env.Start(&f, &upstream.Selector{Client: "198.51.100.7"}, listPicker{ids: []string{"a", "b"}}, "example.com:443", time.Now(), time.Time{})
		if _, ok := f.Next(time.Now()); !ok {
			t.Fatalf("%s: no try offered", tc.name)
		}
		f.Failed(time.Now(), tc.err)
		if len(got) != 1 || got[0].Client != tc.client {
			t.Errorf("%s: reported %+v, want one result with client %q", tc.name, got, tc.client)
		}
	}
}
