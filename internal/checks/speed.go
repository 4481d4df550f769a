package checks

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

type atomicInt = atomic.Int64

// SpeedPass measures the throughput of the cheapest eligible healthy
// upstreams, as many as the pass's byte budget allows, and records it.
func (s *Scheduler) SpeedPass(ctx context.Context) (PassStats, error) {
	st := PassStats{Kind: "speed"}
	sp := s.opts.Speed
	if sp == nil {
		return st, fmt.Errorf("checks: no speed check configured")
	}
	start := s.opts.Now()
	per := sp.Size + sp.Upload
	recs, err := s.candidates(ctx, int(sp.BudgetBytes/per), func(r *upstream.Record) bool {
		if upstream.Usable(r.Type, r.Caps)&upstream.CapConnect == 0 {
			return false
		}
		if len(sp.Kinds) > 0 && !slices.ContainsFunc(sp.Kinds, func(k string) bool { return strings.EqualFold(k, string(r.Type)) }) {
			return false
		}
		return len(sp.Sources) == 0 || slices.ContainsFunc(r.Sources, func(src string) bool { return slices.Contains(sp.Sources, src) })
	})
	if err != nil {
		return st, fmt.Errorf("speed: %w", err)
	}
	// The budget is reserved before a check starts (its whole size), so
	// the pass never moves more than BudgetBytes however checks end.
	var reserved, moved atomicInt
	results := make([]upstream.SpeedResult, len(recs))
	var g gauge
	each(ctx, recs, sp.Concurrency, &g, func(ctx context.Context, k int) {
		if reserved.Add(per) > sp.BudgetBytes {
			return
		}
		results[k] = s.checkSpeed(ctx, sp, &recs[k], &moved)
	})
	if ctx.Err() != nil {
		return st, ctx.Err()
	}
	results = slices.DeleteFunc(results, func(r upstream.SpeedResult) bool { return r.ID == "" })
	st.Checked, st.Passed, st.Bytes, st.Peak = len(recs), len(results), moved.Load(), int(g.peak.Load())
	err = s.sink.RecordSpeeds(ctx, results)
	st.Elapsed = s.opts.Now().Sub(start)
	if s.opts.OnPass != nil {
		s.opts.OnPass(st)
	}
	if err != nil {
		return st, fmt.Errorf("speed: %w", err)
	}
	s.log.Infof("speed: %d of %d upstreams measured, %d bytes (%s)", st.Passed, st.Checked, st.Bytes, st.Elapsed.Round(time.Millisecond))
	return st, nil
}

// checkSpeed downloads sp.Size bytes through r (and uploads sp.Upload);
// a result with no ID when it could not measure.
func (s *Scheduler) checkSpeed(ctx context.Context, sp *Speed, r *upstream.Record, moved *atomicInt) upstream.SpeedResult {
	e, err := r.Upstream.Entry()
	if err != nil {
		return upstream.SpeedResult{}
	}
	e.Caps = r.Caps
	ctx, cancel := context.WithTimeout(ctx, sp.MaxTime)
	defer cancel()
	c := s.client(e)
	defer c.CloseIdleConnections()
	res := upstream.SpeedResult{ID: r.ID, At: s.opts.Now()}
	down, n, err := s.download(ctx, c, sp)
	moved.Add(n)
	res.Bytes += n
	if err != nil || n < sp.Size {
		s.log.WithField("UPSTREAM_ID", r.ID).Debugf("speed: download of %d bytes: got %d: %v", sp.Size, n, err)
		return upstream.SpeedResult{}
	}
	res.Down = down
	if sp.Upload > 0 {
		up, err := s.upload(ctx, c, sp)
		moved.Add(sp.Upload)
		res.Bytes += sp.Upload
		if err == nil {
			res.Up = up
		}
	}
	return res
}

// download reads sp.Size bytes of sp.URL; the rate is timed from the
// response head, so the connect and handshake (latency, measured by the
// probe) do not count.
func (s *Scheduler) download(ctx context.Context, c *http.Client, sp *Speed) (rate float64, n int64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sp.URL, nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("User-Agent", s.opts.UserAgent)
	req.Header.Set("Range", fmt.Sprintf("bytes=0-%d", sp.Size-1))
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		return 0, 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	t0 := time.Now()
	n, err = io.Copy(io.Discard, io.LimitReader(resp.Body, sp.Size))
	return float64(n) / max(time.Since(t0).Seconds(), 1e-6), n, err
}

// upload POSTs sp.Upload bytes to sp.URL, timed until the answer's head.
func (s *Scheduler) upload(ctx context.Context, c *http.Client, sp *Speed) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sp.URL, io.LimitReader(zeros{}, sp.Upload))
	if err != nil {
		return 0, err
	}
	req.ContentLength = sp.Upload
	req.Header.Set("User-Agent", s.opts.UserAgent)
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	return float64(sp.Upload) / max(time.Since(t0).Seconds(), 1e-6), nil
}

// zeros is an endless reader of zero bytes (the upload's body).
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
