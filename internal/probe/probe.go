package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Options tune a Prober. Zero values get the documented defaults.
type Options struct {
	Judges         []string      // fallback chain of judge URLs (required)
	Timeout        time.Duration // per check, covering dial, handshake and reply; default 5s
	Concurrency    int           // checks in flight; default 1024
	RealIP         string        // our own address as judges see it; learned when empty
	TargetURL      string        // optional target check through each upstream
	TargetStatus   int           // status the target must answer; default 200
	UplinkCheck    bool          // pause instead of killing the pool when our own link is down
	UserAgent      string
	InsecureJudges bool // accept any certificate from https judges (tests)

	Country func(ip string) string // exit IP → ISO country; nil: unknown
	// Quality is the exit's ASN, organisation and class (geoip's ASN
	// database and Classifier); nil: unknown. Its IPv6 is the probe's.
	Quality func(ip string) upstream.Quality
	// IPv6Judge, when set, is a judge reached over IPv6 (http://[2001:db8::1]/get):
	// an upstream that passes its check is asked for it too, and one that
	// gets an answer from an IPv6 origin is IPv6-capable
	// (upstream.Quality.IPv6). Failing it fails nothing.
	IPv6Judge string
	// Fits says whether u may exit in country (known, from Country): an
	// upstream made for a group (upstream.Upstream.Group, a tor instance)
	// must leave through that group's countries. An error fails the
	// check with CauseExitCountry and the error as its detail; nil: any.
	Fits     func(u upstream.Upstream, country string) error
	Classify func(err error) upstream.Cause // dial error → its cause; nil: every dial failure is CauseOther
	Progress func(Progress)                 // called about once a second during a pass, and at its end
	Logger   logrus.FieldLogger
	// DirectDial reaches judges without an upstream (real IP, uplink check)
	// and HTTP upstreams themselves in forward mode; default net.Dialer.
	DirectDial func(ctx context.Context, network, addr string) (net.Conn, error)
	Now        func() time.Time
}

// Progress is a snapshot of a running pass.
type Progress struct {
	Done, Total, Healthy int
	Elapsed              time.Duration
	Finished             bool
}

func (p Progress) String() string {
	return fmt.Sprintf("checked %d/%d, %d healthy", p.Done, p.Total, p.Healthy)
}

// ErrUplinkDown is returned when our own connection to the judges is down:
// the pass stops and its failures are not recorded.
var ErrUplinkDown = errors.New("our own uplink is down: no judge is reachable directly; not marking upstreams dead")

// Prober checks upstreams. It is safe for concurrent use.
type Prober struct {
	opts   Options
	dialer Dialer
	judges []*url.URL
	target *url.URL
	judge6 *url.URL
	realIP string
	log    logrus.FieldLogger
	warned sync.Map // judge URL → struct{}: warnOnce said it
}

// warnOnce logs msg about judge the first time only: Uplink runs every
// second during a pass.
func (p *Prober) warnOnce(judge *url.URL, msg string) {
	if _, dup := p.warned.LoadOrStore(judge.String(), struct{}{}); !dup {
		p.log.WithField("judge", judge.String()).Warn(msg)
	}
}

// New validates opts and returns a Prober dialling through d.
func New(d Dialer, opts Options) (*Prober, error) {
	if len(opts.Judges) == 0 {
		return nil, errors.New("probe: no judge URL configured (probe.judges)")
	}
	p := &Prober{opts: opts, dialer: d, realIP: opts.RealIP}
	for _, j := range opts.Judges {
		u, err := url.Parse(j)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("probe: judge %q is not an http(s) URL", j)
		}
		p.judges = append(p.judges, u)
	}
	if opts.TargetURL != "" {
		u, err := url.Parse(opts.TargetURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("probe: target %q is not an http(s) URL", opts.TargetURL)
		}
		p.target = u
	}
	if opts.IPv6Judge != "" {
		u, err := url.Parse(opts.IPv6Judge)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("probe: IPv6 judge %q is not an http(s) URL", opts.IPv6Judge)
		}
		p.judge6 = u
	}
	if p.opts.Timeout <= 0 {
		p.opts.Timeout = 5 * time.Second
	}
	if p.opts.Concurrency <= 0 {
		p.opts.Concurrency = 1024
	}
	if p.opts.TargetStatus == 0 {
		p.opts.TargetStatus = 200
	}
	if p.opts.UserAgent == "" {
		p.opts.UserAgent = "proxypool-probe/1"
	}
	if p.opts.DirectDial == nil {
		var nd net.Dialer
		p.opts.DirectDial = nd.DialContext
	}
	if p.opts.Now == nil {
		p.opts.Now = time.Now
	}
	p.log = opts.Logger
	if p.log == nil {
		l := logrus.New()
		l.Out = io.Discard
		p.log = l
	}
	return p, nil
}

func (p *Prober) now() time.Time { return p.opts.Now() }

func (p *Prober) direct(ctx context.Context, network, addr string) (net.Conn, error) {
	return p.opts.DirectDial(ctx, network, addr)
}

// RealIP returns our own address as the judges see it ("" until learned).
func (p *Prober) RealIP() string { return p.realIP }

// Uplink fetches the judges directly, in order, until one answers. The first
// answer also teaches the Prober its real IP when none was configured.
func (p *Prober) Uplink(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	var errs []error
	for _, j := range p.judges {
		f, err := p.fetch(ctx, upstream.Upstream{}, j, routeDirect)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", j, err))
			continue
		}
		if _, echoed := f.echo.Headers[nonceHeader]; !echoed && p.needsNonce(j) {
			p.warnOnce(j, "judge does not echo request headers: over plain http a proxy could forge its answer, so checks through it fail as tamper; use an https judge or one that echoes headers (httpbin /get, /headers)")
		}
		if p.realIP == "" && f.echo.IP != "" {
			p.realIP = f.echo.IP
			p.log.WithField("real_ip", p.realIP).Info("learned our real address from the judge")
		}
		return nil
	}
	return fmt.Errorf("%w (%v)", ErrUplinkDown, errors.Join(errs...))
}

// Sink receives results; the store's batching writer implements it.
type Sink interface {
	Submit(upstream.CheckResult)
}

// Pass checks every upstream in ups once, with bounded concurrency, and
// submits each result. With UplinkCheck, failures are held back until a
// direct judge fetch made after them succeeds; if our uplink is down the
// pass stops, held failures are dropped and ErrUplinkDown is returned.
func (p *Prober) Pass(ctx context.Context, ups []upstream.Upstream, sink Sink) (Progress, error) {
	start := p.now()
	total := len(ups)
	if total == 0 {
		return Progress{Finished: true}, nil
	}
	if p.opts.UplinkCheck || p.realIP == "" {
		if err := p.Uplink(ctx); err != nil {
			if p.opts.UplinkCheck {
				return Progress{Total: total}, err
			}
			p.log.WithError(err).Warn("could not learn our real address; transparent proxies will not be recognised")
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var done, healthy atomic.Int64
	var held heldFailures
	var uplinkErr atomic.Pointer[error]
	snapshot := func(finished bool) Progress {
		return Progress{Done: int(done.Load()), Total: total, Healthy: int(healthy.Load()), Elapsed: p.now().Sub(start), Finished: finished}
	}

	// progress reporter and uplink watchdog
	var bg sync.WaitGroup
	bgStop := make(chan struct{})
	bg.Add(1)
	go func() {
		defer bg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-bgStop:
				return
			case <-tick.C:
				if p.opts.Progress != nil {
					p.opts.Progress(snapshot(false))
				}
				if p.opts.UplinkCheck {
					mark := held.mark()
					if err := p.Uplink(ctx); err != nil && ctx.Err() == nil {
						uplinkErr.Store(&err)
						cancel()
						return
					}
					held.release(mark, sink)
				}
			}
		}
	}()

	work := make(chan upstream.Upstream)
	workers := min(p.opts.Concurrency, total)
	var wg sync.WaitGroup
	wg.Add(workers)
	for range workers {
		go func() {
			defer wg.Done()
			for u := range work {
				r := p.Check(ctx, u)
				if ctx.Err() != nil && !r.OK {
					continue // cancelled mid-check: no verdict
				}
				done.Add(1)
				if r.OK {
					healthy.Add(1)
					sink.Submit(r)
				} else if p.opts.UplinkCheck {
					held.add(r)
				} else {
					sink.Submit(r)
				}
			}
		}()
	}
feed:
	for _, u := range ups {
		select {
		case work <- u:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(bgStop)
	bg.Wait()

	if e := uplinkErr.Load(); e != nil {
		held.drop()
		return snapshot(false), *e
	}
	if p.opts.UplinkCheck && held.len() > 0 {
		if err := p.Uplink(context.WithoutCancel(ctx)); err != nil {
			held.drop()
			return snapshot(false), err
		}
		held.release(held.mark(), sink)
	}
	final := snapshot(true)
	if p.opts.Progress != nil {
		p.opts.Progress(final)
	}
	return final, ctx.Err()
}

// heldFailures buffers failed results until the uplink is proven up.
type heldFailures struct {
	mu   sync.Mutex
	seq  int
	list []heldResult
}

type heldResult struct {
	seq int
	r   upstream.CheckResult
}

func (h *heldFailures) add(r upstream.CheckResult) {
	h.mu.Lock()
	h.seq++
	h.list = append(h.list, heldResult{h.seq, r})
	h.mu.Unlock()
}

func (h *heldFailures) mark() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq
}

// release submits every failure recorded up to mark.
func (h *heldFailures) release(mark int, sink Sink) {
	h.mu.Lock()
	var out []upstream.CheckResult
	keep := h.list[:0]
	for _, x := range h.list {
		if x.seq <= mark {
			out = append(out, x.r)
		} else {
			keep = append(keep, x)
		}
	}
	h.list = keep
	h.mu.Unlock()
	for _, r := range out {
		sink.Submit(r)
	}
}

func (h *heldFailures) drop() {
	h.mu.Lock()
	h.list = nil
	h.mu.Unlock()
}

func (h *heldFailures) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.list)
}
