package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/proxypool/proxypool/internal/control"
)

func init() {
	verbs["tor"] = verb{run: runTor, summary: "the Tor instances"}
}

// runTor is "proxypoolctl tor status|generate [--wait]|newnym [PORT]".
func runTor(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) int {
	fs := g.verbFlags("tor", "status|generate|newnym [PORT]", stderr)
	wait, timeout := jobFlags(fs)
	pos, code, ok := parseVerbFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		fmt.Fprintln(stderr, "proxypoolctl tor: want status, generate or newnym [PORT]")
		fs.Usage()
		return exitUsage
	}
	sub, rest := pos[0], pos[1:]
	switch sub {
	case "status":
		if !noArgs(stderr, "tor status", rest) {
			return exitUsage
		}
		var in []control.TorInstance
		if code := call(ctx, g, "tor status", false, stderr, func(b *backend) (err error) {
			in, err = b.TorStatus(ctx)
			return err
		}); code != exitOK {
			return code
		}
		if g.JSON {
			printJSON(stdout, in)
			return exitOK
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PORT\tGROUP\tUNIT\tSTATE\tEXIT COUNTRY\tEXIT IP")
		for _, i := range in {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", i.Port, dash(i.Group), i.Unit, i.State, dash(i.Country), dash(i.ExitIP))
		}
		tw.Flush()
		if len(in) == 0 {
			fmt.Fprintln(stderr, "no tor instances (tor.enabled in the config; proxypoolctl tor generate)")
		}
		return exitOK
	case "generate":
		if !noArgs(stderr, "tor generate", rest) {
			return exitUsage
		}
		return runJob(ctx, g, "tor generate", *wait, *timeout, stdout, stderr, func(ctx context.Context, b *backend) (string, error) {
			return b.TorGenerate(ctx)
		})
	case "newnym":
		port := 0
		if len(rest) > 1 {
			fmt.Fprintln(stderr, "proxypoolctl tor newnym: want at most one PORT")
			return exitUsage
		}
		if len(rest) == 1 {
			p, err := strconv.Atoi(rest[0])
			if err != nil || p <= 0 || p > 65535 {
				fmt.Fprintf(stderr, "proxypoolctl tor newnym: %q is not a port\n", rest[0])
				return exitUsage
			}
			port = p
		}
		if code := call(ctx, g, "tor newnym", false, stderr, func(b *backend) error {
			return b.TorNewnym(ctx, port)
		}); code != exitOK {
			return code
		}
		if g.JSON {
			printJSON(stdout, struct {
				Port int  `json:"port"`
				OK   bool `json:"ok"`
			}{port, true})
		} else if port == 0 {
			fmt.Fprintln(stdout, "asked every tor instance for new circuits")
		} else {
			fmt.Fprintf(stdout, "asked tor on port %d for new circuits\n", port)
		}
		return exitOK
	}
	fmt.Fprintf(stderr, "proxypoolctl tor: unknown %q (want status, generate or newnym [PORT])\n", sub)
	return exitUsage
}
