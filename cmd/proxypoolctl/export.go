package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/proxypool/proxypool/internal/control"
)

func init() {
	verbs["export"] = verb{run: runExport, summary: "healthy upstreams"}
}

// runExport is "proxypoolctl export --format json|txt|clash [--output FILE]".
// --json is the same as --format json.
func runExport(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) int {
	fs := g.verbFlags("export", "--format json|txt|clash", stderr)
	format := fs.String("format", "", "`FORMAT`: json (live_proxies.json), txt (one proxy URI a line) or clash (mihomo proxies: YAML)")
	output := fs.String("output", "", "write to `FILE` instead of standard output")
	if _, code, ok := parseArgs(fs, args, stderr, "export", ""); !ok {
		return code
	}
	if *format == "" {
		*format = control.FormatTXT
		if g.JSON {
			*format = control.FormatJSON
		}
	}
	switch *format {
	case control.FormatJSON, control.FormatTXT, control.FormatClash:
	default:
		fmt.Fprintf(stderr, "proxypoolctl export: unknown --format %q (want json, txt or clash)\n", *format)
		return exitUsage
	}
	var data []byte
	if code := call(ctx, g, "export", true, stderr, func(b *backend) (err error) {
		data, err = b.Export(ctx, *format)
		return err
	}); code != exitOK {
		return code
	}
	if *output != "" {
		if err := os.WriteFile(*output, data, 0o644); err != nil {
			return fail(stderr, "export", fmt.Errorf("writing %s: %w", *output, err))
		}
		return exitOK
	}
	if _, err := stdout.Write(data); err != nil {
		return fail(stderr, "export", err)
	}
	return exitOK
}
