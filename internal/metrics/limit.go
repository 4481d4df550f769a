package metrics

import (
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Other is the label value that stands for every value past a label's bound
// (an unconfigured source, the 51st country, …).
const Other = "other"

// maxValueLen caps one label value's length.
const maxValueLen = 64

// limiter bounds one label's values. With an allow-list only its values
// pass; without one the first max distinct values pass. Everything else
// becomes Other. Empty values become empty (a label's "none" spelling).
type limiter struct {
	empty   string
	max     int
	allowed map[string]bool // fixed allow-list; nil = dynamic

	// seen is copied on write: values are added a handful of times, read
	// on every connection.
	seen atomic.Pointer[map[string]bool]
	mu   sync.Mutex // serialises writers
}

func newLimiter(max int, empty string, allow []string) *limiter {
	l := &limiter{empty: empty, max: max}
	l.seen.Store(&map[string]bool{})
	if len(allow) > 0 {
		l.allowed = map[string]bool{}
		for _, a := range allow {
			l.allowed[clean(a)] = true
		}
	}
	return l
}

// value returns v as a label value within the bound.
func (l *limiter) value(v string) string {
	if v == "" {
		return l.empty
	}
	if l.allowed != nil {
		if v = clean(v); l.allowed[v] {
			return v
		}
		return Other
	}
	if (*l.seen.Load())[v] { // fast path: v is clean, it was stored so
		return v
	}
	v = clean(v)
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := *l.seen.Load()
	if seen[v] {
		return v
	}
	if len(seen) >= l.max {
		return Other
	}
	next := make(map[string]bool, len(seen)+1)
	for k := range seen {
		next[k] = true
	}
	next[v] = true
	l.seen.Store(&next)
	return v
}

// clean makes v a valid, short label value (client_golang panics on
// invalid UTF-8).
func clean(v string) string {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "?")
	}
	if len(v) > maxValueLen {
		v = v[:maxValueLen]
		for !utf8.ValidString(v) {
			v = v[:len(v)-1]
		}
	}
	return v
}
