package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/upstream"
)

// jobResult is what --json prints for a started (and, with --wait,
// finished) job.
type jobResult struct {
	Job      string `json:"job"`
	Waited   bool   `json:"waited"`
	Complete bool   `json:"complete,omitempty"` // every step done
	Done     uint32 `json:"done,omitempty"`
	Total    uint32 `json:"total,omitempty"`
	// With --wait, what the job changed: the pool's states (check) or each
	// source's listing and last fetch (refresh), before and after.
	States  map[upstream.State]stateChange `json:"states,omitempty"`
	Sources []sourceChange                 `json:"sources,omitempty"`
}

type stateChange struct {
	Before int `json:"before"`
	After  int `json:"after"`
}

type sourceChange struct {
	control.SourceStatus
	ListedBefore int `json:"listed_before"`
}

// errShort is a job that ended before all its steps were done.
var errShort = errors.New("ended early")

// startJob starts a job with start and, when wait is set, follows its
// Progress signals to the end: a progress bar on a terminal, a plain line
// per change (at most one a second) otherwise. It subscribes before
// starting so that no signal is missed.
func startJob(ctx context.Context, b *backend, wait bool, timeout time.Duration, progress io.Writer,
	start func(ctx context.Context) (string, error)) (jobResult, error) {
	if !wait {
		job, err := start(ctx)
		return jobResult{Job: job}, err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ch, err := b.client.WatchProgress(wctx)
	if err != nil {
		return jobResult{}, fmt.Errorf("subscribing to progress: %w", err)
	}
	job, err := start(ctx)
	if err != nil {
		return jobResult{}, err
	}
	res := jobResult{Job: job, Waited: true}
	show := newProgress(progress, job)
	defer show.close()
	var maxTotal uint32
	alive := time.NewTicker(2 * time.Second)
	defer alive.Stop()
	for {
		select {
		case p, ok := <-ch:
			if !ok {
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				return res, fmt.Errorf("%s: still running after %s (--timeout); it goes on in the daemon", job, timeout)
			}
			if p.Job != job {
				continue
			}
			maxTotal = max(maxTotal, p.Total)
			res.Done, res.Total = p.Done, p.Total
			show.set(p.Done, p.Total)
			if p.Done >= p.Total {
				if p.Total < maxTotal {
					return res, fmt.Errorf("%s %w: %d of %d done (the daemon's log says why)", job, errShort, p.Done, maxTotal)
				}
				res.Complete = true
				show.finish()
				return res, nil
			}
		case <-alive.C:
			// A daemon that stops sends no last signal: notice it.
			if _, err := b.client.Counts(wctx); errors.Is(err, control.ErrNotRunning) {
				return res, fmt.Errorf("waiting for %s: %w", job, err)
			}
		}
	}
}

// progressView shows a job's progress on a terminal or as plain lines.
type progressView struct {
	w     io.Writer
	job   string
	bar   *progressbar.ProgressBar
	last  time.Time
	done  uint32
	tot   uint32
	shown bool
}

func newProgress(w io.Writer, job string) *progressView {
	v := &progressView{w: w, job: job}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		v.bar = progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(job),
			progressbar.OptionShowCount(),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		)
	}
	return v
}

func (v *progressView) set(done, total uint32) {
	if v.bar != nil {
		if int64(total) != v.bar.GetMax64() {
			v.bar.ChangeMax64(int64(total))
		}
		_ = v.bar.Set64(int64(done))
		return
	}
	changed := done != v.done || total != v.tot || !v.shown
	v.done, v.tot = done, total
	if changed && (time.Since(v.last) >= time.Second || done >= total) {
		fmt.Fprintf(v.w, "%s: %d/%d\n", v.job, done, total)
		v.last, v.shown = time.Now(), true
	}
}

func (v *progressView) finish() {
	if v.bar != nil {
		_ = v.bar.Finish()
	}
}

func (v *progressView) close() {
	if v.bar != nil && !v.bar.IsFinished() {
		_ = v.bar.Exit()
	}
}
