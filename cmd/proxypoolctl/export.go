package main

import (
	"context"
	"fmt"
	"os"

	"github.com/proxypool/proxypool/internal/control"
)

// runExport is "proxypoolctl export --format json|txt|clash [--output FILE]".
// --json is the same as --format json.
func runExport(ctx context.Context, c *cmd) int {
	format := c.fs.String("format", "", "`FORMAT`: json (live_proxies.json), txt (one proxy URI a line) or clash (mihomo proxies: YAML)")
	output := c.fs.String("output", "", "write to `FILE` instead of standard output")
	if _, code, ok := c.parse(""); !ok {
		return code
	}
	if *format == "" {
		*format = control.FormatTXT
		if c.JSON {
			*format = control.FormatJSON
		}
	}
	switch *format {
	case control.FormatJSON, control.FormatTXT, control.FormatClash:
	default:
		fmt.Fprintf(c.stderr, "proxypoolctl export: unknown --format %q (want json, txt or clash)\n", *format)
		return exitUsage
	}
	data, code := fetch(ctx, c, true, func(b *backend) ([]byte, error) { return b.Export(ctx, *format) })
	if code != exitOK {
		return code
	}
	if *output != "" {
		if err := os.WriteFile(*output, data, 0o644); err != nil {
			return c.fail(fmt.Errorf("writing %s: %w", *output, err))
		}
		return exitOK
	}
	if _, err := c.stdout.Write(data); err != nil {
		return c.fail(err)
	}
	return exitOK
}
