package main

import (
	"context"
	"fmt"
	"io"
)

func init() {
	verbs["add"] = verb{run: runAdd, summary: "add one upstream"}
	verbs["remove"] = verb{run: runRemove, summary: "remove one upstream"}
}

// runAdd is "proxypoolctl add URI": exit 0 when the upstream is in the pool
// afterwards (new or already there), 2 when URI does not parse.
func runAdd(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) int {
	fs := g.verbFlags("add", "URI", stderr)
	pos, code, ok := parseArgs(fs, args, stderr, "add", "exactly one URI (a share link or scheme://host:port)")
	if !ok {
		return code
	}
	var id string
	var created bool
	if code := call(ctx, g, "add", false, stderr, func(b *backend) (err error) {
		id, created, err = b.Add(ctx, pos[0])
		return err
	}); code != exitOK {
		return code
	}
	switch {
	case g.JSON:
		printJSON(stdout, struct {
			ID      string `json:"id"`
			Created bool   `json:"created"`
		}{id, created})
	case created:
		fmt.Fprintf(stdout, "added %s (source manual; the probe checks it within seconds)\n", id)
	default:
		fmt.Fprintf(stdout, "already in the pool: %s (now also listed by source manual)\n", id)
	}
	return exitOK
}

// runRemove is "proxypoolctl remove ID|URI": exit 5 when no such upstream.
func runRemove(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) int {
	fs := g.verbFlags("remove", "ID|URI", stderr)
	pos, code, ok := parseArgs(fs, args, stderr, "remove", "exactly one ID or URI (see proxypoolctl list)")
	if !ok {
		return code
	}
	var n int
	if code := call(ctx, g, "remove", false, stderr, func(b *backend) (err error) {
		n, err = b.Remove(ctx, pos[0])
		return err
	}); code != exitOK {
		return code
	}
	if g.JSON {
		printJSON(stdout, struct {
			Removed int `json:"removed"`
		}{n})
	} else {
		fmt.Fprintf(stdout, "removed %s\n", pos[0])
	}
	return exitOK
}
