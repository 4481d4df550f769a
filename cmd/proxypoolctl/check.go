package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

func init() {
	verbs["check"] = verb{run: runCheck, summary: "probe now"}
	verbs["refresh"] = verb{run: runRefresh, summary: "fetch sources now"}
}

// jobFlags are the flags of every verb that starts a job.
func jobFlags(fs *flag.FlagSet) (wait *bool, timeout *time.Duration) {
	wait = fs.Bool("wait", false, "wait until the job is done, showing its progress on stderr")
	timeout = fs.Duration("timeout", 30*time.Minute, "with --wait, give up waiting after `D` (the job goes on)")
	return wait, timeout
}

// runCheck is "proxypoolctl check [ID…] [--wait]".
func runCheck(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) int {
	fs := g.verbFlags("check", "[ID…]", stderr)
	wait, timeout := jobFlags(fs)
	ids, code, ok := parseVerbFlags(fs, args)
	if !ok {
		return code
	}
	return runJob(ctx, g, "check", *wait, *timeout, stdout, stderr, func(ctx context.Context, b *backend) (string, error) {
		return b.Check(ctx, ids)
	})
}

// runRefresh is "proxypoolctl refresh [--wait]".
func runRefresh(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) int {
	fs := g.verbFlags("refresh", "", stderr)
	wait, timeout := jobFlags(fs)
	if _, code, ok := parseArgs(fs, args, stderr, "refresh", ""); !ok {
		return code
	}
	return runJob(ctx, g, "refresh", *wait, *timeout, stdout, stderr, func(ctx context.Context, b *backend) (string, error) {
		return b.Refresh(ctx)
	})
}

// runJob connects, starts a job and reports it: exit 0 when started (or,
// with --wait, complete), 1 when it ended early or waiting timed out.
func runJob(ctx context.Context, g *globals, verb string, wait bool, timeout time.Duration, stdout, stderr io.Writer,
	start func(ctx context.Context, b *backend) (string, error)) int {
	b, err := connect(ctx, g, verb, false)
	if err != nil {
		return fail(stderr, verb, err)
	}
	defer b.close()
	res, err := startJob(ctx, b, wait, timeout, stderr, func(ctx context.Context) (string, error) { return start(ctx, b) })
	if res.Job == "" && err != nil {
		return fail(stderr, verb, err)
	}
	if g.JSON {
		printJSON(stdout, res)
	} else if err == nil {
		if wait {
			fmt.Fprintf(stdout, "%s done: %d of %d\n", res.Job, res.Done, res.Total)
		} else {
			fmt.Fprintf(stdout, "started %s (proxypoolctl %s --wait shows progress)\n", res.Job, verb)
		}
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintf(stderr, "proxypoolctl %s: stopped waiting; %s goes on in the daemon\n", verb, res.Job)
			return exitFail
		}
		return fail(stderr, verb, err)
	}
	return exitOK
}
