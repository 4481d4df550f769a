package upstream

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// DecodeOptions decodes stored options (the JSON json.Marshal writes for
// Upstream.Options) into the map New would have made: encoding/json into
// map[string]any with whole numbers as int. The common shapes take a fast
// path whose strings are substrings of raw.
func DecodeOptions(raw string) (map[string]any, error) {
	if m, ok := fastOptions(raw); ok {
		return m, nil
	}
	return jsonOptions(raw)
}

// jsonOptions is DecodeOptions through encoding/json.
func jsonOptions(raw string) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return nil, fmt.Errorf("decoding options: %w", err)
	}
	for k, o := range m {
		m[k] = wholeNumbers(o)
	}
	return m, nil
}

// fastOptions decodes the JSON object raw exactly as jsonOptions does
// (encoding/json into map[string]any, whole numbers as int) for the text
// json.Marshal writes for upstream options, several times faster and with
// no string allocations: keys and string values are substrings of raw. It
// reports false for anything it does not handle (escapes, invalid UTF-8,
// deep nesting, malformed or unusual input); jsonOptions then decides.
func fastOptions(raw string) (map[string]any, bool) {
	p := optParser{s: raw}
	p.space()
	if p.i >= len(p.s) || p.s[p.i] != '{' {
		return nil, false
	}
	v, ok := p.value(0)
	if !ok {
		return nil, false
	}
	p.space()
	if p.i != len(p.s) {
		return nil, false
	}
	return v.(map[string]any), true
}

type optParser struct {
	s string
	i int
}

const optMaxDepth = 64

func (p *optParser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// next consumes the separator after a member or element: more is true after
// a comma, false after close; anything else is malformed (ok false).
func (p *optParser) next(close byte) (more, ok bool) {
	p.space()
	if p.i >= len(p.s) {
		return false, false
	}
	switch p.s[p.i] {
	case ',':
		p.i++
		return true, true
	case close:
		p.i++
		return false, true
	}
	return false, false
}

func (p *optParser) value(depth int) (any, bool) {
	if p.i >= len(p.s) || depth > optMaxDepth {
		return nil, false
	}
	switch c := p.s[p.i]; {
	case c == '{':
		p.i++
		m := map[string]any{}
		p.space()
		if p.i < len(p.s) && p.s[p.i] == '}' {
			p.i++
			return m, true
		}
		for {
			p.space()
			k, ok := p.str()
			if !ok {
				return nil, false
			}
			p.space()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return nil, false
			}
			p.i++
			p.space()
			v, ok := p.value(depth + 1)
			if !ok {
				return nil, false
			}
			m[k] = v
			if more, ok := p.next('}'); !ok {
				return nil, false
			} else if !more {
				return m, true
			}
		}
	case c == '[':
		p.i++
		a := []any{}
		p.space()
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
			return a, true
		}
		for {
			p.space()
			v, ok := p.value(depth + 1)
			if !ok {
				return nil, false
			}
			a = append(a, v)
			if more, ok := p.next(']'); !ok {
				return nil, false
			} else if !more {
				return a, true
			}
		}
	case c == '"':
		s, ok := p.str()
		return s, ok
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case c == 't':
		return true, p.word("true")
	case c == 'f':
		return false, p.word("false")
	case c == 'n':
		return nil, p.word("null")
	}
	return nil, false
}

func (p *optParser) word(w string) bool {
	if len(p.s)-p.i < len(w) || p.s[p.i:p.i+len(w)] != w {
		return false
	}
	p.i += len(w)
	return true
}

// str reads a string without escapes or control characters, in valid
// UTF-8: what encoding/json returns verbatim.
func (p *optParser) str() (string, bool) {
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return "", false
	}
	start := p.i + 1
	ascii := true
	for j := start; j < len(p.s); j++ {
		switch c := p.s[j]; {
		case c == '"':
			s := p.s[start:j]
			if !ascii && !utf8.ValidString(s) {
				return "", false
			}
			p.i = j + 1
			return s, true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

// number reads a JSON number as encoding/json does (float64) and then as
// wholeNumbers (int when whole).
func (p *optParser) number() (any, bool) {
	s := p.s[p.i:]
	j := 0
	if s[j] == '-' {
		j++
	}
	digits := j
	switch {
	case j < len(s) && s[j] == '0':
		j++
	case j < len(s) && s[j] >= '1' && s[j] <= '9':
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
	default:
		return nil, false
	}
	integer := j-digits <= 15 // exact in a float64, so whole and the same int
	if j < len(s) && s[j] == '.' {
		integer = false
		j++
		k := j
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == k {
			return nil, false
		}
	}
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		integer = false
		j++
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		k := j
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == k {
			return nil, false
		}
	}
	p.i += j
	if integer {
		n := 0
		for _, c := range s[digits:j] {
			n = n*10 + int(c-'0')
		}
		if digits == 1 {
			n = -n
		}
		return n, true
	}
	f, err := strconv.ParseFloat(s[:j], 64)
	if err != nil {
		return nil, false
	}
	return wholeNumbers(f), true
}
