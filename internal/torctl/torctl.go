package torctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cretz/bine/control"
)

// DefaultTimeout bounds a call whose ctx has no deadline.
const DefaultTimeout = 30 * time.Second

// Conn is an authenticated control connection.
type Conn struct {
	mu sync.Mutex
	nc net.Conn
	c  *control.Conn
}

// Dial connects to addr ("host:port", or "unix:/path" for a control
// socket) and authenticates (SAFECOOKIE/cookie, or NULL).
func Dial(ctx context.Context, addr string) (*Conn, error) {
	return DialPassword(ctx, addr, "")
}

// DialPassword is Dial with password authentication when password is not
// empty (a ControlPort with HashedControlPassword; HashPassword makes the
// hash). The password is used even when the instance also offers cookie
// authentication: the cookie file of a Debian tor@ instance is readable
// only by its own group.
func DialPassword(ctx context.Context, addr, password string) (*Conn, error) {
	network, a := "tcp", addr
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, a = "unix", p
	} else if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, a)
	if err != nil {
		return nil, fmt.Errorf("dialing tor control %s: %w", addr, err)
	}
	c := &Conn{nc: nc, c: control.NewConn(textproto.NewConn(nc))}
	auth := func() error { return c.c.Authenticate("") }
	if password != "" {
		auth = func() error {
			if _, err := c.c.SendRequest("AUTHENTICATE %s", quote(password)); err != nil {
				return err
			}
			c.c.Authenticated = true
			return nil
		}
	}
	if err := c.do(ctx, auth); err != nil {
		nc.Close()
		return nil, fmt.Errorf("authenticating to tor control %s: %w", addr, err)
	}
	return c, nil
}

// Close ends the connection.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nc.SetDeadline(time.Now().Add(time.Second))
	return c.c.Close()
}

// do runs f with the connection's deadline taken from ctx, and cut short
// when ctx is cancelled.
func (c *Conn) do(ctx context.Context, f func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		// AfterFunc runs on its own goroutine: a quick call could finish
		// before a context that is already done cuts it.
		return err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(DefaultTimeout)
	}
	c.nc.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	err := f()
	stop()
	c.nc.SetDeadline(time.Time{})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// GetInfo answers GETINFO keys as a map (it satisfies exits.InfoGetter).
func (c *Conn) GetInfo(ctx context.Context, keys ...string) (map[string]string, error) {
	var kvs []*control.KeyVal
	err := c.do(ctx, func() error {
		var err error
		kvs, err = c.c.GetInfo(keys...)
		return err
	})
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = strings.TrimLeft(kv.Val, "\r\n")
	}
	return m, nil
}

func (c *Conn) getOne(ctx context.Context, key string) (string, error) {
	m, err := c.GetInfo(ctx, key)
	if err != nil {
		return "", fmt.Errorf("GETINFO %s: %w", key, err)
	}
	return m[key], nil
}

// Bootstrap returns tor's bootstrap progress (0-100) and summary.
func (c *Conn) Bootstrap(ctx context.Context) (int, string, error) {
	v, err := c.getOne(ctx, "status/bootstrap-phase")
	if err != nil {
		return 0, "", err
	}
	prog := -1
	summary := ""
	for _, f := range splitQuoted(v) {
		if p, ok := strings.CutPrefix(f, "PROGRESS="); ok {
			prog, _ = strconv.Atoi(p)
		}
		if s, ok := strings.CutPrefix(f, "SUMMARY="); ok {
			summary = strings.Trim(s, `"`)
		}
	}
	if prog < 0 {
		return 0, v, fmt.Errorf("no PROGRESS in bootstrap phase %q", v)
	}
	return prog, summary, nil
}

// WaitBootstrap polls until tor reports 100 % or ctx ends.
func (c *Conn) WaitBootstrap(ctx context.Context) error {
	last := ""
	for {
		p, s, err := c.Bootstrap(ctx)
		if err != nil {
			return err
		}
		if p >= 100 {
			return nil
		}
		last = fmt.Sprintf("%d%% (%s)", p, s)
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for tor bootstrap, last at %s: %w", last, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// NewNym asks tor for new circuits for new streams (SIGNAL NEWNYM; tor
// rate-limits it to one per 10 s and delays the rest).
func (c *Conn) NewNym(ctx context.Context) error {
	return c.do(ctx, func() error { return c.c.Signal("NEWNYM") })
}

// Circuit is one line of circuit-status.
type Circuit struct {
	ID      string
	Status  string   // BUILT, EXTENDED, …
	Path    []string // fingerprints (upper-case hex, no $), first hop first
	Purpose string
	Flags   []string
	Created time.Time
}

// Circuits lists tor's circuits.
func (c *Conn) Circuits(ctx context.Context) ([]Circuit, error) {
	v, err := c.getOne(ctx, "circuit-status")
	if err != nil {
		return nil, err
	}
	var out []Circuit
	for _, line := range strings.Split(v, "\n") {
		f := strings.Fields(strings.TrimSpace(line))
		if len(f) < 2 {
			continue
		}
		ci := Circuit{ID: f[0], Status: f[1]}
		for _, x := range f[2:] {
			switch {
			case strings.HasPrefix(x, "$"):
				for _, hop := range strings.Split(x, ",") {
					fp, _, _ := strings.Cut(strings.TrimPrefix(hop, "$"), "~")
					fp, _, _ = strings.Cut(fp, "=")
					ci.Path = append(ci.Path, strings.ToUpper(fp))
				}
			case strings.HasPrefix(x, "PURPOSE="):
				ci.Purpose = strings.TrimPrefix(x, "PURPOSE=")
			case strings.HasPrefix(x, "BUILD_FLAGS="):
				ci.Flags = strings.Split(strings.TrimPrefix(x, "BUILD_FLAGS="), ",")
			case strings.HasPrefix(x, "TIME_CREATED="):
				ci.Created, _ = time.Parse("2006-01-02T15:04:05.000000", strings.TrimPrefix(x, "TIME_CREATED="))
			}
		}
		out = append(out, ci)
	}
	return out, nil
}

// Stream is one line of stream-status.
type Stream struct {
	ID, Status, CircuitID, Target string
}

// Streams lists tor's open streams.
func (c *Conn) Streams(ctx context.Context) ([]Stream, error) {
	v, err := c.getOne(ctx, "stream-status")
	if err != nil {
		return nil, err
	}
	var out []Stream
	for _, line := range strings.Split(v, "\n") {
		f := strings.Fields(strings.TrimSpace(line))
		if len(f) >= 4 {
			out = append(out, Stream{ID: f[0], Status: f[1], CircuitID: f[2], Target: f[3]})
		}
	}
	return out, nil
}

// Relay is what tor knows of one relay.
type Relay struct {
	Fingerprint, Nickname, Address, Country string
}

// Relay looks a relay up by fingerprint (ns/id/FP, then ip-to-country).
func (c *Conn) Relay(ctx context.Context, fp string) (Relay, error) {
	v, err := c.getOne(ctx, "ns/id/"+fp)
	if err != nil {
		return Relay{}, err
	}
	r := Relay{Fingerprint: fp}
	for _, line := range strings.Split(v, "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && f[0] == "r" {
			r.Nickname = f[1]
			for _, x := range f[5:] {
				if ip := net.ParseIP(x); ip != nil {
					r.Address = ip.String()
					break
				}
			}
		}
	}
	if r.Address == "" {
		return r, fmt.Errorf("ns/id/%s: no address", fp)
	}
	cc, err := c.getOne(ctx, "ip-to-country/"+r.Address)
	if err == nil && cc != "??" {
		r.Country = strings.ToUpper(cc)
	}
	return r, nil
}

// ErrNoCircuit means tor has no built general-purpose circuit yet.
var ErrNoCircuit = errors.New("no built exit circuit")

// CurrentExit is the exit of the newest built general-purpose circuit: the
// one new streams are most likely to use.
func (c *Conn) CurrentExit(ctx context.Context) (Relay, Circuit, error) {
	circs, err := c.Circuits(ctx)
	if err != nil {
		return Relay{}, Circuit{}, err
	}
	var best *Circuit
	for i := range circs {
		ci := &circs[i]
		if ci.Status != "BUILT" || len(ci.Path) < 2 || (ci.Purpose != "GENERAL" && ci.Purpose != "CONFLUX_LINKED") {
			continue
		}
		if hasAny(ci.Flags, "IS_INTERNAL", "ONEHOP_TUNNEL") {
			continue
		}
		if best == nil || ci.Created.After(best.Created) {
			best = ci
		}
	}
	if best == nil {
		return Relay{}, Circuit{}, ErrNoCircuit
	}
	r, err := c.Relay(ctx, best.Path[len(best.Path)-1])
	return r, *best, err
}

func hasAny(list []string, xs ...string) bool {
	for _, l := range list {
		for _, x := range xs {
			if l == x {
				return true
			}
		}
	}
	return false
}

// splitQuoted splits on spaces outside double quotes.
func splitQuoted(s string) []string {
	var out []string
	var b strings.Builder
	q := false
	for _, r := range s {
		switch {
		case r == '"':
			q = !q
			b.WriteRune(r)
		case r == ' ' && !q:
			if b.Len() > 0 {
				out = append(out, b.String())
				b.Reset()
			}
		default:
			b.WriteRune(r)
		}
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}
