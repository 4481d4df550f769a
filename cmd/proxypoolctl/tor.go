package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/proxypool/proxypool/internal/control"
)

// runTor is "proxypoolctl tor status|generate [--wait]|newnym [PORT]".
func runTor(ctx context.Context, c *cmd) int {
	wait, timeout := jobFlags(c.fs)
	pos, code, ok := c.parseAny()
	if !ok {
		return code
	}
	if len(pos) == 0 {
		fmt.Fprintln(c.stderr, "proxypoolctl tor: want status, generate or newnym [PORT]")
		c.fs.Usage()
		return exitUsage
	}
	sub, rest := pos[0], pos[1:]
	c.verb = "tor " + sub // what messages from here on name
	switch sub {
	case "status":
		if !c.noArgs(rest) {
			return exitUsage
		}
		in, code := fetch(ctx, c, false, func(b *backend) ([]control.TorInstance, error) { return b.TorStatus(ctx) })
		if code != exitOK {
			return code
		}
		if c.JSON {
			printJSON(c.stdout, in)
			return exitOK
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PORT\tGROUP\tUNIT\tSTATE\tEXIT COUNTRY\tEXIT IP")
		for _, i := range in {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", i.Port, dash(i.Group), i.Unit, i.State, dash(i.Country), dash(i.ExitIP))
		}
		tw.Flush()
		if len(in) == 0 {
			fmt.Fprintln(c.stderr, "no tor instances (tor.enabled in the config; proxypoolctl tor generate)")
		}
		return exitOK
	case "generate":
		if !c.noArgs(rest) {
			return exitUsage
		}
		return c.runJob(ctx, *wait, *timeout, func(ctx context.Context, b *backend) (string, error) {
			return b.TorGenerate(ctx)
		})
	case "newnym":
		port := 0
		if len(rest) > 1 {
			fmt.Fprintln(c.stderr, "proxypoolctl tor newnym: want at most one PORT")
			return exitUsage
		}
		if len(rest) == 1 {
			p, err := strconv.Atoi(rest[0])
			if err != nil || p <= 0 || p > 65535 {
				fmt.Fprintf(c.stderr, "proxypoolctl tor newnym: %q is not a port\n", rest[0])
				return exitUsage
			}
			port = p
		}
		if code := c.call(ctx, false, func(b *backend) error {
			return b.TorNewnym(ctx, port)
		}); code != exitOK {
			return code
		}
		if c.JSON {
			printJSON(c.stdout, struct {
				Port int  `json:"port"`
				OK   bool `json:"ok"`
			}{port, true})
		} else if port == 0 {
			fmt.Fprintln(c.stdout, "asked every tor instance for new circuits")
		} else {
			fmt.Fprintf(c.stdout, "asked tor on port %d for new circuits\n", port)
		}
		return exitOK
	}
	fmt.Fprintf(c.stderr, "proxypoolctl tor: unknown %q (want status, generate or newnym [PORT])\n", sub)
	return exitUsage
}
