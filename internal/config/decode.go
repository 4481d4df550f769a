package config

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decoder walks a yaml.Node tree onto typed Go values, recording the line of
// every key it sees so that validation can name it later. Unlike
// yaml.Node.Decode it reports every problem as file:line: key: problem, and
// unknown keys with a suggestion.
type decoder struct {
	pos  map[string]int // key path ("gateway.ports[1].group") → line
	errs []*Error
	file string
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	byteSizeType = reflect.TypeOf(ByteSize(0))
)

func (d *decoder) fail(n *yaml.Node, key, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// resolve follows aliases (bounded: yaml.v3 rejects self-referencing anchors).
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

// decode stores n into v (addressable). A null leaves v as it was, so that
// absent and empty keys keep their defaults. newItem makes the starting
// value of list elements and map values of struct type.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if sv, ok := v.Addr().Interface().(scalarValue); ok {
		if s, ok := d.scalar(n, path, "a value"); ok {
			if err := sv.setScalar(s); err != nil {
				d.fail(n, path, "%v", err)
			}
		}
		return
	}
	switch v.Type() {
	case durationType:
		s, ok := d.scalar(n, path, "a duration")
		if !ok {
			return
		}
		dur, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			d.fail(n, path, "%q is not a duration (use 30s, 5m)", s)
			return
		}
		v.SetInt(int64(dur))
		return
	case byteSizeType:
		s, ok := d.scalar(n, path, "a size")
		if !ok {
			return
		}
		b, err := ParseByteSize(s)
		if err != nil {
			d.fail(n, path, "%v", err)
			return
		}
		v.SetInt(int64(b))
		return
	}
	switch v.Kind() {
	case reflect.String:
		if s, ok := d.scalar(n, path, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		s, ok := d.scalar(n, path, "true or false")
		if !ok {
			return
		}
		switch strings.ToLower(s) {
		case "true", "yes", "on":
			v.SetBool(true)
		case "false", "no", "off":
			v.SetBool(false)
		default:
			d.fail(n, path, "%q is not true or false", s)
		}
	case reflect.Int:
		s, ok := d.scalar(n, path, "a whole number")
		if !ok {
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, strconv.IntSize)
		if err != nil {
			d.fail(n, path, "%q is not a whole number", s)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		// a share: 0.1, or 10%
		s, ok := d.scalar(n, path, "a number")
		if !ok {
			return
		}
		t, scale := strings.TrimSpace(s), 1.0
		if strings.HasSuffix(t, "%") {
			t, scale = strings.TrimSpace(strings.TrimSuffix(t, "%")), 0.01
		}
		f, err := strconv.ParseFloat(t, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail(n, path, "%q is not a number (use 0.1 or 10%%)", s)
			return
		}
		v.SetFloat(f * scale)
	case reflect.Slice:
		d.slice(n, v, path)
	case reflect.Map:
		d.mapping(n, v, path)
	case reflect.Struct:
		d.strukt(n, v, path)
	default:
		panic("config: unsupported field type " + v.Type().String())
	}
}

func (d *decoder) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "expected %s, got %s", want, kindName(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) slice(n *yaml.Node, v reflect.Value, path string) {
	elems := n.Content
	if n.Kind == yaml.ScalarNode && v.Type().Elem().Kind() == reflect.String {
		elems = []*yaml.Node{n} // "judges: http://x" is a list of one
	} else if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "expected a list, got %s", kindName(n))
		return
	}
	out := reflect.MakeSlice(v.Type(), 0, len(elems))
	for i, e := range elems {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.pos[p] = e.Line
		ev := newItem(v.Type().Elem())
		if isNull(resolve(e)) && ev.Kind() != reflect.Struct {
			d.fail(e, p, "empty list item")
			continue
		}
		d.decode(e, ev, p)
		out = reflect.Append(out, ev)
	}
	v.Set(out)
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping of names, got %s", kindName(n))
		return
	}
	out := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "names must be plain strings, got %s", kindName(k))
			continue
		}
		p := path + "." + k.Value
		if first, dup := seen[k.Value]; dup {
			d.fail(k, p, "duplicate name (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		d.pos[p] = k.Line
		ev := newItem(v.Type().Elem())
		d.decode(val, ev, p)
		out.SetMapIndex(reflect.ValueOf(k.Value), ev)
	}
	v.Set(out)
}

func (d *decoder) strukt(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		what := "section"
		if path == "" {
			what = "file"
		}
		d.fail(n, path, "expected a mapping of keys (this %s has keys like %s), got %s",
			what, strings.Join(firstKeys(v.Type(), 3), ", "), kindName(n))
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "keys must be plain names, got %s", kindName(k))
			continue
		}
		p := join(path, k.Value)
		idx, ok := fields[k.Value]
		if !ok {
			d.fail(k, p, "unknown key%s", suggest(k.Value, v.Type()))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k, p, "duplicate key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		d.pos[p] = k.Line
		d.decode(val, v.Field(idx), p)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldsOf maps yaml key → field index for a struct type.
func fieldsOf(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		m[tag] = i
	}
	return m
}

func keysOf(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("yaml"); tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}

func firstKeys(t reflect.Type, n int) []string {
	k := keysOf(t)
	if len(k) > n {
		k = k[:n]
	}
	return k
}

// suggest returns ` (did you mean "x"?)` for the closest known key, or the
// list of valid keys when none is close.
func suggest(key string, t reflect.Type) string {
	keys := keysOf(t)
	norm := strings.ToLower(strings.ReplaceAll(key, "_", "-"))
	best, bestD := "", 1<<30
	for _, k := range keys {
		dist := levenshtein(norm, k)
		if dist < bestD {
			best, bestD = k, dist
		}
	}
	if best != "" && (bestD <= 2 || bestD <= len(best)/3) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	sorted := append([]string(nil), keys...)
	sort.Strings(sorted)
	return "; valid keys here: " + strings.Join(sorted, ", ")
}

func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 20
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// newItem returns an addressable starting value for a list element or map
// value: the documented per-item defaults for struct types.
func newItem(t reflect.Type) reflect.Value {
	v := reflect.New(t).Elem()
	switch t {
	case reflect.TypeOf(Source{}):
		v.Set(reflect.ValueOf(defaultSource()))
	case reflect.TypeOf(TargetCheck{}):
		v.Set(reflect.ValueOf(defaultTargetCheck()))
	}
	return v
}

// ParseByteSize parses a size: a whole number of bytes (65536) or a number
// with a unit: B, K/KB (1000), KiB (1024), M/MB, MiB, G/GB, GiB. Units are
// case-insensitive; "64MiB" and "64 MiB" are the same.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '_') {
		i++
	}
	num, unit := strings.ReplaceAll(t[:i], "_", ""), strings.ToLower(strings.TrimSpace(t[i:]))
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || num == "" {
		return 0, fmt.Errorf("%q is not a size (use 65536, 512KiB, 64MiB)", s)
	}
	mult := map[string]int64{
		"": 1, "b": 1,
		"k": 1000, "kb": 1000, "kib": 1 << 10,
		"m": 1000 * 1000, "mb": 1000 * 1000, "mib": 1 << 20,
		"g": 1000 * 1000 * 1000, "gb": 1000 * 1000 * 1000, "gib": 1 << 30,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("%q is not a size (use 65536, 512KiB, 64MiB)", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return ByteSize(n * mult), nil
}

func reflectValue(c *Config) reflect.Value { return reflect.ValueOf(c).Elem() }
