// Package apitest holds the API's test helpers: a small checker of
// answers against docs/api/openapi.yaml (paths, methods, status codes,
// JSON types, required fields, enums), enough to hold the server and its
// documentation together without a full OpenAPI library.
package apitest

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Spec is a loaded OpenAPI 3 document.
type Spec struct {
	doc map[string]any
}

// Load reads an OpenAPI 3 YAML file.
func Load(path string) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	if _, ok := doc["paths"].(map[string]any); !ok {
		return nil, fmt.Errorf("%s: no paths", path)
	}
	return &Spec{doc: doc}, nil
}

var methods = []string{"get", "put", "post", "delete", "patch", "head", "options"}

// Operations lists "METHOD /path" for every documented operation, sorted,
// the path as written ("/api/v1/upstreams/{id}").
func (s *Spec) Operations() []string {
	var out []string
	for path, item := range s.doc["paths"].(map[string]any) {
		m, _ := item.(map[string]any)
		for _, meth := range methods {
			if _, ok := m[meth]; ok {
				out = append(out, strings.ToUpper(meth)+" "+path)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Check reports how an answer (status, content type, body) of operation
// "METHOD /path" departs from the document: an undocumented status, a
// content type it does not list, or JSON whose types, required fields or
// enums differ from the schema.
func (s *Spec) Check(op string, status int, ctype string, body []byte) error {
	meth, path, _ := strings.Cut(op, " ")
	item, _ := s.doc["paths"].(map[string]any)[path].(map[string]any)
	o, _ := item[strings.ToLower(meth)].(map[string]any)
	if o == nil {
		return fmt.Errorf("%s is not documented", op)
	}
	resps, _ := o["responses"].(map[string]any)
	r, ok := resps[strconv.Itoa(status)]
	if !ok {
		return fmt.Errorf("%s answered %d, not documented (%s)", op, status, keys(resps))
	}
	resp := s.resolve(r)
	content, _ := resp["content"].(map[string]any)
	if len(content) == 0 {
		if len(body) > 0 {
			return fmt.Errorf("%s %d: documented without a body, got %d bytes", op, status, len(body))
		}
		return nil
	}
	mt := strings.TrimSpace(strings.Split(ctype, ";")[0])
	media, ok := content[mt].(map[string]any)
	if !ok {
		return fmt.Errorf("%s %d: content type %q not documented (%s)", op, status, ctype, keys(content))
	}
	if mt != "application/json" {
		return nil
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("%s %d: body is not JSON: %v", op, status, err)
	}
	if err := s.value(v, s.resolve(media["schema"]), "$"); err != nil {
		return fmt.Errorf("%s %d: %w", op, status, err)
	}
	return nil
}

// resolve follows a local $ref.
func (s *Spec) resolve(n any) map[string]any {
	m, _ := n.(map[string]any)
	for i := 0; i < 16; i++ {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		var cur any = s.doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cm, _ := cur.(map[string]any)
			cur = cm[part]
		}
		m, _ = cur.(map[string]any)
	}
	return m
}

func (s *Spec) value(v any, schema map[string]any, at string) error {
	if schema == nil {
		return nil
	}
	typ, _ := schema["type"].(string)
	switch typ {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object, got %T", at, v)
		}
		req, _ := schema["required"].([]any)
		for _, k := range req {
			if _, ok := obj[k.(string)]; !ok {
				return fmt.Errorf("%s: required field %q missing", at, k)
			}
		}
		props, _ := schema["properties"].(map[string]any)
		for k, pv := range obj {
			if ps, ok := props[k]; ok {
				if err := s.value(pv, s.resolve(ps), at+"."+k); err != nil {
					return err
				}
			} else if ap, ok := schema["additionalProperties"]; ok {
				if err := s.value(pv, s.resolve(ap), at+"."+k); err != nil {
					return err
				}
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array, got %T", at, v)
		}
		for i, e := range arr {
			if err := s.value(e, s.resolve(schema["items"]), fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: want a string, got %T", at, v)
		}
		if enum, ok := schema["enum"].([]any); ok && !containsAny(enum, str) {
			return fmt.Errorf("%s: %q is not one of %v", at, str, enum)
		}
	case "integer", "number":
		f, ok := v.(float64)
		if !ok {
			return fmt.Errorf("%s: want a %s, got %T", at, typ, v)
		}
		if typ == "integer" && f != float64(int64(f)) {
			return fmt.Errorf("%s: want an integer, got %v", at, f)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: want a boolean, got %T", at, v)
		}
	}
	return nil
}

func containsAny(list []any, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func keys(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}
