package main

import (
	"context"
	"fmt"
)

// runAdd is "proxypoolctl add URI": exit 0 when the upstream is in the pool
// afterwards (new or already there), 2 when URI does not parse.
func runAdd(ctx context.Context, c *cmd) int {
	pos, code, ok := c.parse("exactly one URI (a share link or scheme://host:port)")
	if !ok {
		return code
	}
	var id string
	var created bool
	if code := c.call(ctx, false, func(b *backend) (err error) {
		id, created, err = b.Add(ctx, pos[0])
		return err
	}); code != exitOK {
		return code
	}
	switch {
	case c.JSON:
		printJSON(c.stdout, struct {
			ID      string `json:"id"`
			Created bool   `json:"created"`
		}{id, created})
	case created:
		fmt.Fprintf(c.stdout, "added %s (source manual; the probe checks it within seconds)\n", id)
	default:
		fmt.Fprintf(c.stdout, "already in the pool: %s (now also listed by source manual)\n", id)
	}
	return exitOK
}

// runRemove is "proxypoolctl remove ID|URI": exit 5 when no such upstream.
func runRemove(ctx context.Context, c *cmd) int {
	return runCounted(ctx, c, "exactly one ID or URI (see proxypoolctl list)", "removed",
		func(b *backend, pos []string) (int, error) { return b.Remove(ctx, pos[0]) },
		func(n int, pos []string) string {
			return fmt.Sprintf("removed %s (if a source still lists it, it stays removed: proxypoolctl restore undoes it)", pos[0])
		})
}

// runRestore is "proxypoolctl restore ID|URI...": removed (tombstoned) or
// retired upstreams back into the pool; exit 5 when none of them was.
func runRestore(ctx context.Context, c *cmd) int {
	return runCounted(ctx, c, "one or more IDs or URIs (see proxypoolctl list --state removed)", "restored",
		func(b *backend, pos []string) (int, error) { return b.Restore(ctx, pos) },
		func(n int, pos []string) string {
			return fmt.Sprintf("restored %d of %d (back in the pool; the probe checks them within seconds)", n, len(pos))
		})
}

// runCounted runs a verb whose call answers how many upstreams it changed:
// with --json {"<key>": n}, else the line text words.
func runCounted(ctx context.Context, c *cmd, operands, key string, call func(b *backend, pos []string) (int, error),
	text func(n int, pos []string) string) int {
	pos, code, ok := c.parse(operands)
	if !ok {
		return code
	}
	n, code := fetch(ctx, c, false, func(b *backend) (int, error) { return call(b, pos) })
	if code != exitOK {
		return code
	}
	if c.JSON {
		printJSON(c.stdout, map[string]int{key: n})
	} else {
		fmt.Fprintln(c.stdout, text(n, pos))
	}
	return exitOK
}
