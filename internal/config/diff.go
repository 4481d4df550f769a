package config

import (
	"reflect"
	"sort"
	"strings"
)

// Diff lists the keys whose values differ between a and b, in the file's
// spelling ("gateway.strategy", "groups.us.min-healthy"; a list such as
// "sources" or "gateway.ports" as a whole), sorted. A config reload logs
// it and applies what its parts take without a restart.
func Diff(a, b *Config) []string {
	var out []string
	diffValue(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "", &out)
	sort.Strings(out)
	return out
}

func diffValue(a, b reflect.Value, path string, out *[]string) {
	switch a.Kind() {
	case reflect.Struct:
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" || name == "" {
				continue // File, positions: not keys
			}
			diffValue(a.Field(i), b.Field(i), join(path, name), out)
		}
	case reflect.Map:
		keys := map[string]bool{}
		for _, k := range a.MapKeys() {
			keys[k.String()] = true
		}
		for _, k := range b.MapKeys() {
			keys[k.String()] = true
		}
		for k := range keys {
			av, bv := a.MapIndex(reflect.ValueOf(k)), b.MapIndex(reflect.ValueOf(k))
			if !av.IsValid() || !bv.IsValid() {
				*out = append(*out, join(path, k)) // added or removed
				continue
			}
			diffValue(av, bv, join(path, k), out)
		}
	default:
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, path)
		}
	}
}
