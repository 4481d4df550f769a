package parse

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/proxypool/proxypool/internal/upstream"
)

// jsonList parses a JSON array of proxies. Entries may be strings (a line:
// link or host:port), Clash-style mappings ({type, server, port, …}),
// monosans records ({protocol, username, password, host, port, …}) or
// proxifly records ({proxy: "http://…", protocol, ip, port, …}), or our own
// export ({uri, …} or {clash: {…}, …}). Line is the line on which the entry
// starts.
func (p *parser) jsonList(body []byte) {
	dec := json.NewDecoder(bytes.NewReader(body))
	lc := lineCounter{data: body, line: 1}
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('[') {
		if b := bytes.TrimSpace(body); len(b) > 0 && b[0] == '{' {
			p.clash(body)
			return
		}
		p.add(Result{Line: 1, Err: fmt.Errorf("json: want a list of proxies: %v", jsonErr(err, tok))})
		return
	}
	for dec.More() && !p.overflow {
		line := lc.lineAt(skipSep(body, int(dec.InputOffset())))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			p.add(Result{Line: line, Err: fmt.Errorf("json: %v", err)})
			return // the decoder cannot resynchronise
		}
		if len(raw) > MaxEntryBytes {
			p.add(Result{Line: line, Err: fmt.Errorf("json: entry too large (%d bytes, max %d)", len(raw), MaxEntryBytes)})
			continue
		}
		p.add(p.jsonEntry(line, raw))
	}
}

func jsonErr(err error, tok json.Token) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("found %v", tok)
}

// skipSep moves past whitespace and a comma to where the next value starts.
func skipSep(b []byte, off int) int {
	for off < len(b) {
		switch b[off] {
		case ' ', '\t', '\r', '\n', ',':
			off++
			continue
		}
		break
	}
	return off
}

// lineCounter maps increasing byte offsets to 1-based line numbers.
type lineCounter struct {
	data []byte
	off  int
	line int
}

func (c *lineCounter) lineAt(off int) int {
	if off > len(c.data) {
		off = len(c.data)
	}
	if off > c.off {
		c.line += bytes.Count(c.data[c.off:off], []byte{'\n'})
		c.off = off
	}
	return c.line
}

func (p *parser) jsonEntry(line int, raw json.RawMessage) Result {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		rs := parseText(line, s, p.scheme)
		if len(rs) == 1 {
			return rs[0]
		}
		return Result{Line: line, Err: errors.New("json: entry holds several links")}
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return Result{Line: line, Err: errors.New("json: entry is neither a string nor an object")}
	}
	var r Result
	switch clash, _ := m["clash"].(map[string]any); {
	case str(m["uri"]) != "":
		// our own export (live_proxies.json): the link says it all, the
		// other fields are what the probe found
		r = parseText(line, str(m["uri"]), p.scheme)[0]
	case clash != nil:
		u, err := build(clash) // our export of a kind with no link form
		r = Result{Upstream: u, Err: err}
	case m["type"] != nil && m["server"] != nil:
		u, err := build(m)
		r = Result{Upstream: u, Err: err}
	case str(m["proxy"]) != "":
		r = parseText(line, str(m["proxy"]), p.scheme)[0]
	case (m["host"] != nil || m["ip"] != nil) && m["port"] != nil:
		host := str(m["host"])
		if host == "" {
			host = str(m["ip"])
		}
		scheme := strings.ToLower(str(m["protocol"]))
		if scheme == "" {
			scheme = p.scheme
		}
		switch scheme {
		case "http", "https", "socks4", "socks4a", "socks5", "socks5h", "socks", untyped:
		default:
			return Result{Line: line, Err: fmt.Errorf("json: unsupported protocol %q", scheme)}
		}
		u, err := build(plainMapping(scheme, host, str(m["port"]), str(m["username"]), str(m["password"])))
		r = Result{Upstream: u, Err: err}
	default:
		return Result{Line: line, Err: errors.New("json: entry has no type+server, proxy, or host/ip+port")}
	}
	r.Line = line
	jsonHints(m, &r)
	return r
}

// str renders a JSON scalar as a string ("" for null and containers).
func str(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(t)
	}
	return ""
}

// jsonHints reads monosans' geolocation.country.iso_code and proxifly's
// geolocation.country / anonymity.
func jsonHints(m map[string]any, r *Result) {
	if geo, ok := m["geolocation"].(map[string]any); ok {
		switch c := geo["country"].(type) {
		case string:
			r.Country = strings.ToUpper(c)
		case map[string]any:
			r.Country = strings.ToUpper(str(c["iso_code"]))
		}
	}
	switch strings.ToLower(str(m["anonymity"])) {
	case "transparent":
		r.Anonymity = upstream.AnonTransparent
	case "anonymous":
		r.Anonymity = upstream.AnonAnonymous
	case "elite":
		r.Anonymity = upstream.AnonElite
	}
}
