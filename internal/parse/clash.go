package parse

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// clash parses a Clash/mihomo config (YAML or JSON) and returns one result
// per entry of its top-level "proxies:" list. Entries that are mappings are
// proxies; entries that are strings are lines (fyvri's "- host:port").
// Invalid YAML (as published by some aggregators) and documents larger than
// MaxYAMLBytes are read line by line instead (clashLines).
func (p *parser) clash(body []byte) {
	if len(body) > MaxYAMLBytes {
		p.clashLines(body)
		return
	}
	var doc yaml.Node
	if err := safeYAML(body, &doc); err != nil {
		p.clashLines(body)
		return
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	if len(bytes.TrimSpace(body)) == 0 || root.Kind == yaml.DocumentNode {
		return // empty document
	}
	if root.Kind != yaml.MappingNode {
		p.add(Result{Line: max(root.Line, 1), Err: errors.New("clash: document is not a mapping with a proxies list")})
		return
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "proxies" {
			list = root.Content[i+1]
		}
	}
	if list == nil {
		p.add(Result{Line: max(root.Line, 1), Err: errors.New("clash: no proxies list")})
		return
	}
	if list.Kind == yaml.AliasNode && list.Alias != nil {
		list = list.Alias
	}
	if list.Kind != yaml.SequenceNode {
		if list.Tag == "!!null" {
			return // "proxies:" with nothing under it
		}
		p.add(Result{Line: max(list.Line, 1), Err: errors.New("clash: proxies is not a list")})
		return
	}
	conv := &yconv{budget: MaxYAMLNodes}
	for _, item := range list.Content {
		if p.overflow {
			return
		}
		p.add(p.clashEntry(conv, item))
	}
}

// safeYAML unmarshals into a node tree; a panic in the YAML parser becomes
// an error.
func safeYAML(b []byte, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml parser panicked: %v", r)
		}
	}()
	return yaml.Unmarshal(b, n)
}

func (p *parser) clashEntry(conv *yconv, item *yaml.Node) Result {
	line := max(item.Line, 1)
	v, err := conv.value(item, 0)
	if err != nil {
		return Result{Line: line, Err: fmt.Errorf("clash: %v", err)}
	}
	switch t := v.(type) {
	case string:
		rs := parseText(line, t, p.scheme)
		if len(rs) == 1 {
			return rs[0]
		}
		return Result{Line: line, Err: errors.New("clash: entry holds several links")}
	case map[string]any:
		u, err := build(t)
		return Result{Line: line, Upstream: u, Err: err}
	case nil:
		return Result{Line: line, Skipped: true}
	}
	return Result{Line: line, Err: fmt.Errorf("clash: entry is a %T, want a mapping", v)}
}

// yconv turns YAML nodes into plain Go values, expanding aliases and merge
// keys within a node budget and a depth cap.
type yconv struct{ budget int }

func (c *yconv) value(n *yaml.Node, depth int) (any, error) {
	if depth > MaxYAMLDepth {
		return nil, fmt.Errorf("nesting deeper than %d levels", MaxYAMLDepth)
	}
	c.budget--
	if c.budget < 0 {
		return nil, fmt.Errorf("more than %d YAML nodes (alias bomb?)", MaxYAMLNodes)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return c.value(n.Content[0], depth+1)
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, errors.New("dangling alias")
		}
		return c.value(n.Alias, depth+1)
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return n.Value, nil
		}
		return v, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, e := range n.Content {
			v, err := c.value(e, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, vn := n.Content[i], n.Content[i+1]
			v, err := c.value(vn, depth+1)
			if err != nil {
				return nil, err
			}
			if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.Tag == "!!merge" {
				if err := merge(out, v); err != nil {
					return nil, err
				}
				continue
			}
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: mapping key is not a scalar", k.Line)
			}
			out[k.Value] = v
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown YAML node kind %d", n.Kind)
}

func merge(dst map[string]any, v any) error {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if _, ok := dst[k]; !ok {
				dst[k] = e
			}
		}
	case []any:
		for _, e := range t {
			if err := merge(dst, e); err != nil {
				return err
			}
		}
	default:
		return errors.New("merge key value is not a mapping")
	}
	return nil
}

// clashLines reads the proxies section of a Clash file one line at a time:
// "- {name: …, type: …}" flow mappings and "- host:port" strings. It is the
// fallback for files no YAML parser accepts as a whole (one bad entry then
// fails only its own line) and for very large files.
func (p *parser) clashLines(body []byte) {
	in := false
	n := 0
	conv := &yconv{budget: MaxYAMLNodes}
	for len(body) > 0 && !p.overflow {
		n++
		raw := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			raw, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		if len(raw) > MaxLineBytes {
			if in {
				p.add(Result{Line: n, Err: fmt.Errorf("line too long (%d bytes, max %d)", len(raw), MaxLineBytes)})
			}
			continue
		}
		s := strings.TrimRight(string(raw), " \t\r")
		trim := strings.TrimSpace(s)
		switch {
		case strings.HasPrefix(s, "proxies:"):
			in = true
			continue
		case !in || trim == "" || trim[0] == '#':
			continue
		case s[0] != ' ' && s[0] != '\t' && s[0] != '-':
			in = false // the next top-level key ends the section
			continue
		case !strings.HasPrefix(trim, "-"):
			continue // continuation of a block-style entry: not handled here
		}
		item := strings.TrimSpace(trim[1:])
		if strings.HasPrefix(item, "{") {
			p.add(p.flowEntry(conv, n, item))
			continue
		}
		var str string
		if yaml.Unmarshal([]byte(item), &str) != nil {
			str = item
		}
		for _, r := range parseText(n, str, p.scheme) {
			if !p.add(r) {
				return
			}
		}
	}
}

// itemLine is the "line N: " yaml.v3 puts in front of a message: for one
// entry parsed alone it counts within the entry (and from 0 or 1 by the
// stage that failed), so flowEntry drops it; the Result's Line says where.
var itemLine = regexp.MustCompile(`^line \d+: `)

func (p *parser) flowEntry(conv *yconv, n int, item string) Result {
	var node yaml.Node
	if err := safeYAML([]byte(item), &node); err != nil {
		msg := itemLine.ReplaceAllString(strings.TrimPrefix(err.Error(), "yaml: "), "")
		return Result{Line: n, Err: fmt.Errorf("clash: %s", msg)}
	}
	r := p.clashEntry(conv, &node)
	r.Line = n
	return r
}
