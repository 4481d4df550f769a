package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/proxypool/proxypool/internal/config"
	"github.com/proxypool/proxypool/internal/top"
)

// runTop is "proxypoolctl top [--metrics URL] [--interval D] [--once]
// [--frames N]": scrape the metrics endpoint every interval, compute rates
// between scrapes, redraw (internal/top does all three). --json prints one
// JSON frame per line instead.
// Exit 1 when --once (or the first of --frames) cannot scrape.
func runTop(ctx context.Context, c *cmd) int {
	url := c.fs.String("metrics", "", "metrics endpoint `URL` (default: http://<metrics.listen from the config>/metrics)")
	interval := c.fs.Duration("interval", 2*time.Second, "refresh every `D`")
	once := c.fs.Bool("once", false, "print one frame and exit (rates need two scrapes: shown as -)")
	frames := c.fs.Int("frames", 0, "exit after `N` frames (0: until interrupted)")
	pos, code, ok := c.parseAny()
	if !ok {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(c.stderr, "proxypoolctl top: unexpected argument %q\n", pos[0])
		c.fs.Usage()
		return exitUsage
	}
	if *interval < 100*time.Millisecond {
		fmt.Fprintf(c.stderr, "proxypoolctl top: --interval %v is too short (at least 100ms)\n", *interval)
		return exitUsage
	}
	if *once {
		*frames = 1
	}
	if *url == "" {
		u, err := metricsURL(c.Config)
		if err != nil {
			fmt.Fprintf(c.stderr, "proxypoolctl top: %v\n", err)
			return exitFail
		}
		*url = u
	}

	client := &http.Client{Timeout: min(*interval, 5*time.Second) + time.Second}
	var prev *top.Sample
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		cur, err := top.Scrape(ctx, client, *url)
		if err != nil && (n == 1 && *frames == 1 || ctx.Err() != nil) {
			if ctx.Err() != nil {
				return exitOK
			}
			fmt.Fprintf(c.stderr, "proxypoolctl top: %v\n", err)
			return exitFail
		}
		f := top.Build(*url, prev, cur, err)
		if c.JSON {
			b, _ := json.Marshal(f)
			fmt.Fprintf(c.stdout, "%s\n", b)
		} else {
			var sb strings.Builder
			if *frames != 1 {
				sb.WriteString(top.ClearScreen)
			}
			top.Render(&sb, f, *interval)
			io.WriteString(c.stdout, sb.String())
		}
		if cur != nil {
			prev = cur
		}
		if *frames > 0 && n >= *frames {
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-tick.C:
		}
	}
}

// metricsURL is the scrape URL from the config's metrics.listen. A missing
// config file means the defaults; a broken one is an error.
func metricsURL(path string) (string, error) {
	cfg, err := config.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		cfg, err = config.Default(), nil
	}
	if err != nil {
		return "", err
	}
	if !cfg.Metrics.Enabled {
		return "", fmt.Errorf("metrics are disabled in %s (metrics.enabled: false); enable them or pass --metrics URL", path)
	}
	host, port, err := net.SplitHostPort(cfg.Metrics.Listen)
	if err != nil {
		return "", fmt.Errorf("%s: metrics.listen %q: %v", path, cfg.Metrics.Listen, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + "/metrics", nil
}
