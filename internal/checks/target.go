package checks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// client is an HTTP client whose every connection goes through e: one
// request, no connection kept.
func (s *Scheduler) client(e upstream.Entry) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return s.d.DialContext(ctx, e, addr)
		},
		DisableKeepAlives:  true,
		DisableCompression: true, // sizes and bodies as the site sent them
	}
	return &http.Client{
		Transport: tr,
		// A redirect is the target's answer (a login wall, a block
		// page elsewhere): judged by its status, not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// TargetPass checks the named target through the cheapest healthy
// upstreams (up to its budget) and records the results, unless the
// outage rule finds the target itself down.
func (s *Scheduler) TargetPass(ctx context.Context, name string) (PassStats, error) {
	st := PassStats{Kind: "target", Name: name}
	i := slices.IndexFunc(s.opts.Targets, func(t Target) bool { return t.Name == name })
	if i < 0 {
		return st, fmt.Errorf("checks: no target %q", name)
	}
	t := &s.opts.Targets[i]
	start := s.opts.Now()
	recs, err := s.candidates(ctx, t.Budget, func(r *upstream.Record) bool {
		return upstream.Usable(r.Type, r.Caps)&upstream.CapConnect != 0
	})
	if err != nil {
		return st, fmt.Errorf("target %s: %w", name, err)
	}
	results := make([]upstream.TargetResult, len(recs))
	var g gauge
	var bytes atomicInt
	each(ctx, recs, t.Concurrency, &g, func(ctx context.Context, k int) {
		results[k] = s.checkTarget(ctx, t, &recs[k], &bytes)
	})
	if ctx.Err() != nil {
		return st, ctx.Err()
	}
	st.Checked, st.Peak, st.Bytes = len(results), int(g.peak.Load()), bytes.Load()
	for _, r := range results {
		if r.OK {
			st.Passed++
		}
	}
	failed := st.Checked - st.Passed
	if st.Checked >= s.opts.OutageMin && float64(failed) >= s.opts.OutageShare*float64(st.Checked) {
		// The site is down (or blocks everyone): no upstream is to
		// blame. Passes still count; failures are not recorded.
		st.Outage = true
		results = slices.DeleteFunc(results, func(r upstream.TargetResult) bool { return !r.OK })
		s.log.WithField("target", name).Warnf("target %s failed through %d of %d upstreams: taken as the target's outage, no upstream marked", name, failed, st.Checked)
	}
	err = s.sink.RecordTargets(ctx, results)
	st.Elapsed = s.opts.Now().Sub(start)
	if s.opts.OnPass != nil {
		s.opts.OnPass(st)
	}
	if err != nil {
		return st, fmt.Errorf("target %s: %w", name, err)
	}
	s.log.WithField("target", name).Infof("target %s: %d of %d upstreams pass (%s)", name, st.Passed, st.Checked, st.Elapsed.Round(time.Millisecond))
	return st, nil
}

// checkTarget fetches t's URL through r and judges the answer.
func (s *Scheduler) checkTarget(ctx context.Context, t *Target, r *upstream.Record, bytes *atomicInt) upstream.TargetResult {
	at := s.opts.Now()
	res := upstream.TargetResult{ID: r.ID, Target: t.Name, At: at, Until: at.Add(t.TTL)}
	e, err := r.Upstream.Entry()
	if err != nil {
		res.Detail = err.Error()
		return res
	}
	e.Caps = r.Caps
	ctx, cancel := context.WithTimeout(ctx, t.MaxTime)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		res.Detail = err.Error()
		return res
	}
	req.Header.Set("User-Agent", s.opts.UserAgent)
	for k, v := range t.Headers {
		if http.CanonicalHeaderKey(k) == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	c := s.client(e)
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		res.Detail = describe(ctx, err, t.MaxTime)
		return res
	}
	defer resp.Body.Close()
	// The whole answer (up to maxBody) is read even with no regex: a
	// site that hangs after its head has not answered.
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	bytes.Add(int64(len(body)))
	res.LatencyMS = float64(s.opts.Now().Sub(at).Microseconds()) / 1000
	switch {
	case !statusOK(t.Status, resp.StatusCode):
		res.Detail = "status " + strconv.Itoa(resp.StatusCode)
	case err != nil:
		res.Detail = "reading the body: " + describe(ctx, err, t.MaxTime)
	case t.NotBody != nil && t.NotBody.Match(body): // the more telling reason first: a captcha wall
		res.Detail = fmt.Sprintf("body matches %q", t.NotBody.String())
	case t.Body != nil && !t.Body.Match(body):
		res.Detail = fmt.Sprintf("body does not match %q", t.Body.String())
	default:
		res.OK = true
	}
	return res
}

// describe is err in few words: a deadline as "no answer within 10s".
func describe(ctx context.Context, err error, max time.Duration) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return "no answer within " + max.String()
	}
	return err.Error()
}

func statusOK(want []int, got int) bool {
	if len(want) == 0 {
		return got >= 200 && got <= 299
	}
	return slices.Contains(want, got)
}
