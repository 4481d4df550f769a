package dial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
	"github.com/sirupsen/logrus"
)

// Options configure a Pool.
type Options struct {
	Logger logrus.FieldLogger
	// DialTimeout bounds a dial (TCP connect and proxy handshake) when the
	// caller's context has no deadline. Default 5s.
	DialTimeout time.Duration
}

// Pool dials targets through upstreams. It builds each upstream's adapter
// once, caches it by upstream ID, and is safe for concurrent use.
type Pool struct {
	log     logrus.FieldLogger
	timeout time.Duration

	mu     sync.RWMutex
	m      map[string]*cached
	closed bool
}

// cached is one cached adapter; done is closed once d/err are set, so
// concurrent first dials of one upstream build it once.
type cached struct {
	done chan struct{}
	d    dialer
	err  error
}

// dialer is what every kind provides.
type dialer interface {
	dial(ctx context.Context, addr string) (net.Conn, error)
	close() error
}

// ErrClosed is returned by DialContext after Close.
var ErrClosed = errors.New("dial pool closed")

// New makes a Pool. The first call also fences mihomo's process-global
// state (log level, resolver; see resolve.go).
func New(opts Options) *Pool {
	setGlobals()
	if opts.Logger == nil {
		l := logrus.New()
		l.SetLevel(logrus.PanicLevel)
		opts.Logger = l
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	return &Pool{
		log:     opts.Logger.WithField("component", "dial"),
		timeout: opts.DialTimeout,
		m:       make(map[string]*cached),
	}
}

// DialContext connects to addr ("host:port") through u. A host name is
// passed to the upstream unresolved. ctx's deadline (or DialTimeout when it
// has none) bounds the TCP connect and the whole proxy handshake; the
// returned conn carries no deadline.
func (p *Pool) DialContext(ctx context.Context, u upstream.Entry, addr string) (net.Conn, error) {
	c, _, err := p.DialCaps(ctx, u, addr, 0)
	return c, err
}

// DialCaps dials like DialContext, asking u for what try says it proved.
// Only upstream.CapPipeline is used (socks5 without TLS, and tor): the
// handshake is pipelined, and redialled once with each message after the
// previous reply if the upstream stalls or closes after its first reply.
// The Caps returned are what this dial proved: CapPipeline only when a
// pipelined handshake worked, so a caller that asked for it and did not
// get it back has learnt the upstream does not pipeline.
func (p *Pool) DialCaps(ctx context.Context, u upstream.Entry, addr string, try upstream.Caps) (net.Conn, upstream.Caps, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	d, err := p.get(ctx, u)
	if err != nil {
		return nil, 0, err
	}
	var c net.Conn
	var got upstream.Caps
	if cd, ok := d.(*socks5Dialer); ok && try.Has(upstream.CapPipeline) {
		c, got, err = cd.dialCaps(ctx, addr, try)
	} else {
		c, err = d.dial(ctx, addr)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("dialing %s via %s: %w", addr, u, err)
	}
	return c, got, nil
}

func key(u upstream.Entry) string {
	if u.ID != "" {
		return u.ID
	}
	return string(u.Type) + " " + u.Addr()
}

func (p *Pool) get(ctx context.Context, u upstream.Entry) (dialer, error) {
	k := key(u)
	p.mu.RLock()
	e, closed := p.m[k], p.closed
	p.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if e == nil {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		if e = p.m[k]; e == nil {
			e = &cached{done: make(chan struct{})}
			p.m[k] = e
			p.mu.Unlock()
			e.d, e.err = build(u)
			if e.err != nil {
				p.log.WithField("upstream_id", u.ID).WithError(e.err).Debug("building dialer failed")
			}
			close(e.done)
			return e.d, e.err
		}
		p.mu.Unlock()
	}
	select {
	case <-e.done:
		return e.d, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Forget closes and drops the cached adapter of upstream id (removed or
// changed upstream). Connections already made are left to their users.
func (p *Pool) Forget(id string) {
	p.mu.Lock()
	e := p.m[id]
	delete(p.m, id)
	p.mu.Unlock()
	if e != nil {
		<-e.done
		if e.d != nil {
			_ = e.d.close()
		}
	}
}

// Close closes every cached adapter; later dials fail with ErrClosed.
func (p *Pool) Close() error {
	p.mu.Lock()
	m := p.m
	p.m = make(map[string]*cached)
	p.closed = true
	p.mu.Unlock()
	var errs []error
	for _, e := range m {
		<-e.done
		if e.d != nil {
			if err := e.d.close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// build makes the dialer for one upstream, decoding its options (once
// per upstream: the Pool caches what it builds): proxypool's own SOCKS
// clients for socks4, tor and plain socks5, mihomo's adapters for every
// other kind (and socks5 over TLS).
func build(u upstream.Entry) (dialer, error) {
	opts, err := u.Decode()
	if err != nil {
		return nil, fmt.Errorf("building %s dialer for %s: %w", u.Type, u.ID, err)
	}
	str := func(key string) string { s, _ := opts[key].(string); return s }
	switch u.Type {
	case upstream.SOCKS4:
		return &socks4Dialer{server: u.Addr(), user: str("username")}, nil
	case upstream.Tor:
		return &socks5Dialer{server: u.Addr(), user: str("username"), pass: str("password")}, nil
	case upstream.SOCKS5:
		if !truthy(opts["tls"]) {
			return &socks5Dialer{server: u.Addr(), user: str("username"), pass: str("password")}, nil
		}
	}
	d, err := newAdapter(u, opts)
	if err != nil {
		return nil, fmt.Errorf("building %s dialer for %s: %w", u.Type, u.ID, err)
	}
	return d, nil
}

// truthy reads a boolean option as parsed from YAML, JSON or a share link.
func truthy(v any) bool {
	switch t := v.(type) {
	case bool:
		return t
	case string:
		return t == "true" || t == "1"
	case int:
		return t != 0
	case int64:
		return t != 0
	case float64:
		return t != 0
	}
	return false
}
