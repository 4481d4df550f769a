package clashapi

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// levelRank orders mihomo's log level names (log.LogLevelMapping).
var levelRank = map[string]int{"debug": 0, "info": 1, "warning": 2, "error": 3, "silent": 4}

// LogEntry is one log line as GET /logs sends it.
type LogEntry struct {
	Time    time.Time
	Level   string // mihomo's name: debug, info, warning, error
	Message string // the message and its fields, key=value
}

// LogHub is a logrus hook that hands every line to the /logs streams
// open at the time. A slow reader loses lines rather than slowing the
// logger: each subscriber has a small buffer and a full one is skipped.
type LogHub struct {
	mu   sync.Mutex
	subs map[chan LogEntry]struct{}
}

// NewLogHub returns a hook; add it to the daemon's logger with AddHook.
func NewLogHub() *LogHub { return &LogHub{subs: map[chan LogEntry]struct{}{}} }

// Levels is every level: /logs filters per stream.
func (l *LogHub) Levels() []logrus.Level { return logrus.AllLevels }

// Fire passes e on to the open streams.
func (l *LogHub) Fire(e *logrus.Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.subs) == 0 {
		return nil
	}
	le := LogEntry{Time: e.Time, Level: mihomoLevel(e.Level), Message: withFields(e)}
	for ch := range l.subs {
		select {
		case ch <- le:
		default:
		}
	}
	return nil
}

func (l *LogHub) subscribe() (<-chan LogEntry, func()) {
	ch := make(chan LogEntry, 256)
	l.mu.Lock()
	l.subs[ch] = struct{}{}
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}
}

func mihomoLevel(lv logrus.Level) string {
	switch {
	case lv >= logrus.DebugLevel:
		return "debug"
	case lv == logrus.InfoLevel:
		return "info"
	case lv == logrus.WarnLevel:
		return "warning"
	}
	return "error"
}

// withFields is the message followed by its fields in key order, as the
// text formatter writes them.
func withFields(e *logrus.Entry) string {
	if len(e.Data) == 0 {
		return e.Message
	}
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(e.Message)
	for _, k := range keys {
		b.WriteString(" " + k + "=")
		switch v := e.Data[k].(type) {
		case error:
			b.WriteString(v.Error())
		case string:
			b.WriteString(v)
		default:
			b.WriteString(strings.TrimSpace(strings.ReplaceAll(fmtAny(v), "\n", " ")))
		}
	}
	return b.String()
}

func fmtAny(v any) string { return fmt.Sprint(v) }
