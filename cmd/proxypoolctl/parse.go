package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/proxypool/proxypool/internal/parse"
)

// parse JSON records, one per result. Skipped lines are included
// ({"line":N,"skipped":true}) so that every line read is accounted for.
type okRecord struct {
	Line      int    `json:"line"`
	OK        bool   `json:"ok"`
	ID        string `json:"id"`
	Type      string `json:"type"`
	Server    string `json:"server"`
	Port      int    `json:"port"`
	Name      string `json:"name"`
	Country   string `json:"country,omitempty"`
	Anonymity string `json:"anonymity,omitempty"`
}

type failRecord struct {
	Line  int    `json:"line"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

type skipRecord struct {
	Line    int  `json:"line"`
	Skipped bool `json:"skipped"`
}

// runParse is "proxypoolctl parse [--format F] [--max-bytes N] [FILE|-]":
// exit 0 when the input was read and gave an upstream or had nothing to
// give (some lines may have failed), 1 when it could not be read, is too
// large, or every line that was not skipped failed, 2 on usage errors.
func runParse(_ context.Context, c *cmd) int {
	format := c.fs.String("format", "auto", "input format: "+strings.Join(parse.Formats, "|"))
	maxBytes := c.fs.Int64("max-bytes", parse.DefaultMaxBytes, "refuse input larger than `N` bytes")
	pos, code, ok := c.parseAny()
	if !ok {
		return code
	}
	if len(pos) > 1 {
		fmt.Fprintln(c.stderr, "proxypoolctl parse: want at most one FILE")
		c.fs.Usage()
		return exitUsage
	}
	if !validFormat(*format) {
		fmt.Fprintf(c.stderr, "proxypoolctl parse: unknown --format %q (want %s)\n", *format, strings.Join(parse.Formats, "|"))
		return exitUsage
	}
	name := "-"
	if len(pos) == 1 {
		name = pos[0]
	}
	data, err := readInput(name, c.Stdin, *maxBytes)
	if err != nil {
		fmt.Fprintf(c.stderr, "proxypoolctl parse: %v\n", err)
		return exitFail
	}
	results, err := parse.Parse(data, parse.Options{Format: *format, MaxBytes: *maxBytes})
	if err != nil {
		fmt.Fprintf(c.stderr, "proxypoolctl parse: %s: %v\n", name, err)
		return exitFail
	}
	if c.JSON {
		writeJSON(c.stdout, results)
	} else {
		writeTable(c.stdout, c.stderr, results)
	}
	var okN, failed, skipped int
	for _, r := range results {
		switch {
		case r.Skipped:
			skipped++
		case r.Err != nil:
			failed++
		default:
			okN++
		}
	}
	fmt.Fprintf(c.stderr, "parsed %d lines: %d ok, %d failed, %d skipped\n", len(results), okN, failed, skipped)
	if okN == 0 && failed > 0 {
		return exitFail // a script must not take "all failed" for success
	}
	return exitOK
}

func validFormat(f string) bool {
	for _, x := range parse.Formats {
		if strings.EqualFold(f, x) {
			return true
		}
	}
	return false
}

// readInput reads FILE or stdin ("-"), refusing more than max bytes.
func readInput(name string, stdin io.Reader, max int64) ([]byte, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("reading input: %w", err)
		}
		defer f.Close()
		r = f
	}
	if r == nil {
		return nil, errors.New("reading input: no standard input")
	}
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", name, parse.ErrTooLarge, max)
	}
	return data, nil
}

func writeJSON(w io.Writer, results []parse.Result) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, r := range results {
		switch {
		case r.Skipped:
			_ = enc.Encode(skipRecord{Line: r.Line, Skipped: true})
		case r.Err != nil:
			_ = enc.Encode(failRecord{Line: r.Line, Error: r.Err.Error()})
		default:
			u := r.Upstream
			_ = enc.Encode(okRecord{Line: r.Line, OK: true, ID: u.ID, Type: string(u.Type), Server: u.Server,
				Port: u.Port, Name: u.Name, Country: r.Country, Anonymity: string(r.Anonymity)})
		}
	}
}

// writeTable prints ok records aligned on stdout and failures on stderr.
func writeTable(stdout, stderr io.Writer, results []parse.Result) {
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LINE\tTYPE\tSERVER:PORT\tNAME\tID")
	for _, r := range results {
		if !r.OK() {
			continue
		}
		u := r.Upstream
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.Line, u.Type, u.Addr(), cleanName(u.Name), u.ID)
	}
	_ = tw.Flush()
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintf(stderr, "line %d: %v\n", r.Line, r.Err)
		}
	}
}

// cleanName keeps names on one table row: control characters and tabs
// become spaces, and very long names are cut.
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 40 {
		s = string(r[:39]) + "…"
	}
	if s == "" {
		s = "-"
	}
	return s
}
