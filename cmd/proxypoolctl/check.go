package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"
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
	res, err := startJob(ctx, b, wait, timeout, c.stderr, func(ctx context.Context) (string, error) { return start(ctx, b) })
	if res.Job == "" && err != nil {
		return c.fail(err)
	}
	if c.JSON {
		printJSON(c.stdout, res)
	} else if err == nil {
		if wait {
			fmt.Fprintf(c.stdout, "%s done: %d of %d\n", res.Job, res.Done, res.Total)
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
