package parse

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Result is the outcome for one line (or one YAML/JSON entry, whose Line is
// the line it starts on). A line holding several share links glued together
// gives one Result per link, all with that Line.
type Result struct {
	Line     int
	Upstream upstream.Upstream // valid when Err == nil && !Skipped
	Err      error             // names the cause: "vless: missing uuid"
	Skipped  bool              // blank, comment or banner line: neither ok nor failed

	// Hints the list itself gives (not verified): ISO country code, upper
	// case, and anonymity ("transparent", "anonymous", "elite").
	Country   string
	Anonymity upstream.Anonymity
}

// OK reports whether r carries an upstream.
func (r Result) OK() bool { return r.Err == nil && !r.Skipped }

// Options steer detection.
type Options struct {
	// Format: "auto" (default) | "links" | "socks5" | "socks4" | "http" |
	// "https" | "base64" | "clash" | "json". socks5/socks4/http/https name
	// the scheme of bare host:port lines and otherwise detect like auto;
	// "links" reads line by line without looking for JSON/YAML/base64.
	Format string
	// Hint is where the data came from (a source URL's path, a file name);
	// under "auto" a protocol word in it ("socks5.txt", "/socks4/data.json")
	// types the bare host:port lines a header does not.
	Hint string
	// MaxBytes caps the input (default 64 MiB); larger input is an error.
	MaxBytes int64
	// MaxRecords caps the results (default MaxRecords); more is an error.
	MaxRecords int
}

// Caps. They are part of the contract: errors name them.
const (
	DefaultMaxBytes = 64 << 20 // whole input
	MaxLineBytes    = 64 << 10 // one line
	MaxEntryBytes   = 1 << 20  // one JSON entry
	MaxYAMLBytes    = 16 << 20 // YAML parsed as a whole document
	MaxYAMLDepth    = 64       // nesting inside one proxy entry
	MaxYAMLNodes    = 4 << 20  // nodes converted, aliases expanded
	MaxRecords      = 1 << 20  // results
)

// ErrTooLarge is wrapped by Parse's error when the input as a whole is
// rejected.
var ErrTooLarge = errors.New("input too large")

// untyped is the scheme of bare host:port entries whose protocol nobody
// named: they become upstream.OptDiscover upstreams.
const untyped = "untyped"

var (
	// headerRE is a list header naming its protocol: "SOCKS5 Proxy list
	// updated at …", "# socks4 proxies", "HTTPS proxy list".
	headerRE = regexp.MustCompile(`(?i)^[\s#/;*-]*(socks5|socks4|https?)\s+(prox(y|ies)|list)\b`)
	// nameRE is a protocol word as a part of a path: socks5.txt,
	// /proxies/socks4/data.json, http_proxies.txt.
	nameRE = regexp.MustCompile(`(?i)(?:^|[/_.-])(socks5h?|socks4a?|https?)(?:[/_.-]|$)`)
)

// headerScheme is the protocol the first lines of body (before any
// entry) name, or "".
func headerScheme(body []byte) string {
	for i, line := range strings.SplitN(string(body[:min(len(body), 4096)]), "\n", 21) {
		if i == 20 {
			break
		}
		if m := headerRE.FindStringSubmatch(line); m != nil {
			return strings.ToLower(m[1])
		}
		if strings.Contains(line, "://") || hostPortRE.MatchString(line) {
			return "" // the entries began: a protocol word later is data
		}
	}
	return ""
}

// hostPortRE finds an entry-looking ip:port.
var hostPortRE = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+:\d+`)

// nameScheme is the protocol named in hint's path, or "".
func nameScheme(hint string) string {
	if i := strings.Index(hint, "://"); i >= 0 { // a URL: its path only
		hint = hint[i+3:]
		if j := strings.IndexByte(hint, '/'); j >= 0 {
			hint = hint[j:]
		} else {
			hint = ""
		}
	}
	if m := nameRE.FindAllStringSubmatch(hint, -1); m != nil {
		return strings.ToLower(m[len(m)-1][1]) // the file's, over a directory's
	}
	return ""
}

// Formats lists the accepted Options.Format values.
var Formats = []string{"auto", "links", "socks5", "socks4", "http", "https", "base64", "clash", "json"}

// Parse parses data. The error is non-nil only when the input as a whole is
// rejected (too large, too many records, unknown format); bad lines are
// Results with Err set.
func Parse(data []byte, opts Options) ([]Result, error) {
	silenceMihomo()
	max := opts.MaxBytes
	if max <= 0 {
		max = DefaultMaxBytes
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%w: %d bytes, max %d", ErrTooLarge, len(data), max)
	}
	format := strings.ToLower(strings.TrimSpace(opts.Format))
	if format == "" {
		format = "auto"
	}
	p := &parser{scheme: "", max: opts.MaxRecords}
	if p.max <= 0 {
		p.max = MaxRecords
	}
	switch format {
	case "socks5", "socks4", "http", "https":
		p.scheme = format
	case "auto", "links", "base64", "clash", "json":
	default:
		return nil, fmt.Errorf("unknown format %q (want one of %s)", opts.Format, strings.Join(Formats, ", "))
	}
	body := trimBOM(data)
	if p.scheme == "" {
		// untyped: a header such as "SOCKS5 Proxy list", else the name the
		// data came by; else the probe finds each entry's protocol
		p.scheme = cmp.Or(headerScheme(body), nameScheme(opts.Hint), untyped)
		if p.scheme == "https" {
			// list names say "https" for HTTP proxies that CONNECT, not
			// for TLS to the proxy (fyvri's https.csv)
			p.scheme = "http"
		}
	}
	if format != "links" && format != "base64" && format != "clash" && format != "json" {
		format = Detect(body)
	}
	switch format {
	case "json":
		p.jsonList(body)
	case "clash":
		p.clash(body)
	case "base64":
		dec, err := decodeSubscription(body)
		if err != nil {
			p.add(Result{Line: 1, Err: fmt.Errorf("base64: %v", err)})
		} else {
			p.lines(dec)
		}
	default:
		p.lines(body)
	}
	if p.overflow {
		return nil, fmt.Errorf("%w: more than %d records", ErrTooLarge, p.max)
	}
	return p.out, nil
}

// Detect names the structure of data as Parse's "auto" sees it: "json",
// "clash", "base64" or "links".
func Detect(data []byte) string {
	b := bytes.TrimLeft(trimBOM(data), " \t\r\n")
	if len(b) == 0 {
		return "links"
	}
	switch b[0] {
	case '[':
		return "json"
	case '{':
		return "clash"
	}
	if hasProxiesKey(b) {
		return "clash"
	}
	if looksBase64(b) {
		if _, err := decodeSubscription(b); err == nil {
			return "base64"
		}
	}
	return "links"
}

func trimBOM(b []byte) []byte { return bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) }

// hasProxiesKey reports a line "proxies:" at column 0.
func hasProxiesKey(b []byte) bool {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if bytes.HasPrefix(line, []byte("proxies:")) {
			rest := bytes.TrimSpace(line[len("proxies:"):])
			if len(rest) == 0 || rest[0] == '#' || rest[0] == '[' {
				return true
			}
		}
	}
	return false
}

// parser collects results and enforces the record cap.
type parser struct {
	scheme   string // for bare host:port
	max      int
	out      []Result
	overflow bool
}

func (p *parser) add(r Result) bool {
	if len(p.out) >= p.max {
		p.overflow = true
		return false
	}
	p.out = append(p.out, r)
	return true
}

// lines parses body line by line (numbered from 1).
func (p *parser) lines(body []byte) {
	n := 0
	for len(body) > 0 && !p.overflow {
		n++
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		p.line(n, line)
	}
}

// line parses one line of a list or link file.
func (p *parser) line(n int, raw []byte) {
	if len(raw) > MaxLineBytes {
		p.add(Result{Line: n, Err: fmt.Errorf("line too long (%d bytes, max %d)", len(raw), MaxLineBytes)})
		return
	}
	if !utf8.Valid(raw) {
		p.add(Result{Line: n, Err: errors.New("line is not UTF-8 text (binary data?)")})
		return
	}
	for _, r := range parseText(n, string(raw), p.scheme) {
		if !p.add(r) {
			return
		}
	}
}

// parseText turns one text line into results: skipped, one or more links,
// or one host:port entry.
func parseText(n int, s, scheme string) []Result {
	s = strings.TrimSpace(strings.TrimPrefix(s, "\ufeff"))
	if s == "" || isComment(s) {
		return []Result{{Line: n, Skipped: true}}
	}
	if links := splitLinks(s); len(links) > 0 {
		out := make([]Result, 0, len(links))
		for _, l := range links {
			parts, err := unglueLink(l)
			if err != nil {
				out = append(out, Result{Line: n, Err: err})
				continue
			}
			if parts == nil {
				parts = []string{l}
			}
			for _, l := range parts {
				u, err := safeLink(l)
				out = append(out, Result{Line: n, Upstream: u, Err: err})
			}
		}
		return out
	}
	if sch, ok := leadingScheme(s); ok {
		return []Result{{Line: n, Err: fmt.Errorf("unsupported scheme %q", sch)}}
	}
	return hostPortLine(n, s, scheme)
}

func isComment(s string) bool {
	return s[0] == '#' || s[0] == ';' || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "<!--")
}

// ParseURI parses one share link or scheme://host:port URI (for "add URI").
func ParseURI(s string) (upstream.Upstream, error) {
	silenceMihomo()
	s = strings.TrimSpace(s)
	if len(s) > MaxLineBytes {
		return upstream.Upstream{}, fmt.Errorf("line too long (%d bytes, max %d)", len(s), MaxLineBytes)
	}
	links := splitLinks(s)
	switch {
	case len(links) == 0:
		if sch, ok := leadingScheme(s); ok {
			return upstream.Upstream{}, fmt.Errorf("unsupported scheme %q", sch)
		}
		return upstream.Upstream{}, errors.New("not a proxy URI (want scheme://…)")
	case len(links) > 1:
		return upstream.Upstream{}, fmt.Errorf("%d links glued together, want one", len(links))
	}
	if parts, err := unglueLink(links[0]); err != nil {
		return upstream.Upstream{}, err
	} else if parts != nil {
		return upstream.Upstream{}, fmt.Errorf("%d entries glued together (%s), want one", len(parts), strings.Join(parts, " "))
	}
	return safeLink(links[0])
}
