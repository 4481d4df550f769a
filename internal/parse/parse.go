// Package parse turns what users have (share links, host:port lists, JSON
// proxy lists, base64 subscriptions, Clash/mihomo YAML) into upstreams, one
// result per input line or entry. It never panics and caps what it reads.
package parse

import "github.com/proxypool/proxypool/internal/upstream"

// Result is the outcome for one line (or one YAML/JSON entry, whose Line is
// the line it starts on).
type Result struct {
	Line     int
	Upstream upstream.Upstream // valid when Err == nil && !Skipped
	Err      error             // names the cause: "vless: missing uuid"
	Skipped  bool              // blank, comment or banner line: neither ok nor failed
}

// Options steer detection.
type Options struct {
	// Format: "auto" (default) | "links" | "socks5" | "socks4" | "http" |
	// "https" | "base64" | "clash" | "json". socks5/socks4/http/https name
	// the scheme of bare host:port lines.
	Format string
	// MaxBytes caps the input (default 64 MiB); larger input is an error.
	MaxBytes int64
}

// Parse parses data. The error is non-nil only when the input as a whole is
// rejected (too large); bad lines are Results with Err set.
func Parse(data []byte, opts Options) ([]Result, error) {
	return nil, nil // TODO(parse helper): implement
}
