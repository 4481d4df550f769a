package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/parse"
)

// runImport is "proxypoolctl import FILE|URL|-": the input is read here
// (a URL is fetched by proxypoolctl, never by the daemon) and sent to the
// daemon, which parses it and answers line by line. Exit 0 when something
// was imported or nothing failed, 1 when every upstream line failed.
func runImport(ctx context.Context, c *cmd) int {
	maxBytes := c.fs.Int64("max-bytes", 16<<20, "refuse input larger than `N` bytes")
	pos, code, ok := c.parse("one FILE, URL or - (standard input)")
	if !ok {
		return code
	}
	var data []byte
	var err error
	if name := pos[0]; strings.HasPrefix(name, "http://") || strings.HasPrefix(name, "https://") {
		data, err = fetchURL(ctx, name, *maxBytes)
	} else {
		data, err = readInput(name, c.Stdin, *maxBytes)
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "proxypoolctl import: %v\n", err)
		return exitFail
	}
	rep, code := fetch(ctx, c, false, func(b *backend) (control.ImportReport, error) { return b.Import(ctx, string(data)) })
	if code != exitOK {
		return code
	}
	if c.JSON {
		printJSON(c.stdout, rep)
	} else {
		for _, l := range rep.Lines {
			if !l.OK && !l.Skipped {
				fmt.Fprintf(c.stderr, "line %d: %s\n", l.Line, l.Error)
			}
		}
		fmt.Fprintf(c.stdout, "imported %s: %d ok (%d new), %d failed, %d skipped\n", pos[0], rep.OK, rep.New, rep.Failed, rep.Skipped)
	}
	if rep.OK == 0 && rep.Failed > 0 {
		return exitFail
	}
	return exitOK
}

// fetchURL GETs a list, at most max bytes, within a minute.
func fetchURL(ctx context.Context, url string, max int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", url, err)
	}
	req.Header.Set("User-Agent", "proxypoolctl")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", url, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: %w: more than %d bytes (--max-bytes)", url, parse.ErrTooLarge, max)
	}
	return data, nil
}
