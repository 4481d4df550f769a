package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/upstream"
)

// jobFlags are the flags of every verb that starts a job.
func jobFlags(fs *flag.FlagSet) (wait *bool, timeout *time.Duration) {
	wait = fs.Bool("wait", false, "wait until the job is done, showing its progress on stderr")
	timeout = fs.Duration("timeout", 30*time.Minute, "with --wait, give up waiting after `D` (the job goes on)")
	return wait, timeout
}

// runCheck is "proxypoolctl check [ID…] [--wait]".
func runCheck(ctx context.Context, c *cmd) int {
	wait, timeout := jobFlags(c.fs)
	ids, code, ok := c.parseAny()
	if !ok {
		return code
	}
	return c.runJob(ctx, *wait, *timeout, func(ctx context.Context, b *backend) (string, error) {
		return b.Check(ctx, ids)
	})
}

// runRefresh is "proxypoolctl refresh [--wait]".
func runRefresh(ctx context.Context, c *cmd) int {
	wait, timeout := jobFlags(c.fs)
	if _, code, ok := c.parse(""); !ok {
		return code
	}
	return c.runJob(ctx, *wait, *timeout, func(ctx context.Context, b *backend) (string, error) {
		return b.Refresh(ctx)
	})
}

// runJob connects, starts a job and reports it: exit 0 when started (or,
// with --wait, complete), 1 when it ended early or waiting timed out.
func (c *cmd) runJob(ctx context.Context, wait bool, timeout time.Duration, start func(ctx context.Context, b *backend) (string, error)) int {
	b, err := c.connect(ctx, false)
	if err != nil {
		return c.fail(err)
	}
	defer b.close()
	var before control.Status
	var beforeErr error
	if wait && (c.verb == "check" || c.verb == "refresh") {
		before, beforeErr = b.Status(ctx)
	}
	res, err := startJob(ctx, b, wait, timeout, c.stderr, func(ctx context.Context) (string, error) { return start(ctx, b) })
	if res.Job == "" && err != nil {
		return c.fail(err)
	}
	if err == nil && wait && beforeErr == nil {
		if after, err := b.Status(ctx); err == nil {
			res.outcome(c.verb, before, after)
		}
	}
	if c.JSON {
		printJSON(c.stdout, res)
	} else if err == nil {
		if wait {
			fmt.Fprintf(c.stdout, "%s done: %d of %d\n", res.Job, res.Done, res.Total)
			res.printOutcome(c.stdout)
		} else {
			fmt.Fprintf(c.stdout, "started %s (proxypoolctl %s --wait shows progress)\n", res.Job, c.verb)
		}
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintf(c.stderr, "proxypoolctl %s: stopped waiting; %s goes on in the daemon\n", c.verb, res.Job)
			return exitFail
		}
		return c.fail(err)
	}
	return exitOK
}

// outcome fills in what the job changed between two statuses: the states
// for a check, the sources for a refresh.
func (r *jobResult) outcome(verb string, before, after control.Status) {
	switch verb {
	case "check":
		r.States = map[upstream.State]stateChange{}
		for _, st := range []upstream.State{upstream.Healthy, upstream.Failing, upstream.Dead, upstream.Unknown} {
			r.States[st] = stateChange{Before: before.States[st], After: after.States[st]}
		}
	case "refresh":
		was := map[string]int{}
		for _, s := range before.SourceState {
			was[s.Name] = s.Listed
		}
		for _, s := range after.SourceState {
			r.Sources = append(r.Sources, sourceChange{SourceStatus: s, ListedBefore: was[s.Name]})
		}
	}
}

// printOutcome is the table --wait ends with.
func (r jobResult) printOutcome(w io.Writer) {
	if len(r.States) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "STATE\tBEFORE\tAFTER\tCHANGE")
		for _, st := range []upstream.State{upstream.Healthy, upstream.Failing, upstream.Dead, upstream.Unknown} {
			c := r.States[st]
			fmt.Fprintf(tw, "%s\t%d\t%d\t%+d\n", st, c.Before, c.After, c.After-c.Before)
		}
		tw.Flush()
	}
	if len(r.Sources) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SOURCE\tLISTED\tNEW\tSEEN\tGONE\tFAILED\tFETCH")
		for _, s := range r.Sources {
			fetch := "ok"
			if s.Error != "" {
				fetch = "error: " + s.Error
			}
			if s.Removed > 0 {
				fetch += fmt.Sprintf(", %d listed but removed by the operator", s.Removed)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", s.Name, s.Listed, s.New, s.Seen, s.Gone, s.Failed, fetch)
		}
		tw.Flush()
	}
}
