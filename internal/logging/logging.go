package logging

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/sirupsen/logrus"
)

// Field names used across proxypool. Under journald each becomes the
// upper-case journal field given by JournalField (FieldUpstream →
// UPSTREAM_ID); the contract names UPSTREAM_ID, SOURCE and GROUP.
const (
	FieldComponent = "component"   // COMPONENT: gateway, probe, refresh, torgen, …
	FieldUpstream  = "upstream_id" // UPSTREAM_ID: upstream.Upstream.ID
	FieldSource    = "source"      // SOURCE: a configured source name
	FieldGroup     = "group"       // GROUP: a configured group name
	FieldCountry   = "country"     // COUNTRY: two-letter exit country
	FieldListen    = "listen"      // LISTEN: a listener address
	FieldPort      = "port"        // PORT: a tor instance or pinned port
	FieldClient    = "client"      // CLIENT: a gateway client address
	FieldTarget    = "target"      // TARGET: the host:port a client asked for
	FieldDuration  = "duration"    // DURATION: how long something took
	FieldCount     = "count"       // COUNT: how many items a summary line covers
	FieldError     = "error"       // ERROR: logrus.ErrorKey, what WithError sets
)

// Formats accepted by Options.Format.
const (
	FormatAuto = "auto"
	FormatText = "text"
	FormatJSON = "json"
)

// Options configure New. The zero value is a usable default: info level,
// automatic format, stderr.
type Options struct {
	// Level is trace, debug, info, warn (warning) or error; "" or an
	// unknown name means info (config validates the name earlier).
	Level string
	// Format is "auto" (or ""), "text" or "json"; see the package doc.
	// Only auto sends to the journal natively; text under journald is
	// text without timestamps on stderr.
	Format string
	// Out is where text and JSON go; nil means os.Stderr. Only os.Stderr
	// is checked for a journal connection.
	Out io.Writer
	// Identifier is SYSLOG_IDENTIFIER for natively sent journal entries;
	// "" means the program's base name.
	Identifier string

	env *env // tests: overrides journal detection
}

// env is what New learned about its surroundings.
type env struct {
	stream bool // Out is the process's stderr and stderr is the journal stream
	native bool // the native journal socket answers
	send   func(msg string, p journal.Priority, vars map[string]string) error
}

func detect(out io.Writer) env {
	if out != os.Stderr {
		return env{}
	}
	stream, err := journal.StderrIsJournalStream()
	if err != nil || !stream {
		return env{}
	}
	return env{stream: true, native: journal.Enabled(), send: journal.Send}
}

// New returns a new logger configured by opts. It never touches logrus's
// global logger.
func New(opts Options) *logrus.Logger {
	out := opts.Out
	if out == nil {
		out = os.Stderr
	}
	var e env
	if opts.env != nil {
		e = *opts.env
	} else if opts.Format != FormatJSON {
		e = detect(out)
	}

	l := logrus.New()
	l.SetOutput(out)
	l.SetLevel(ParseLevel(opts.Level))
	journalText := &logrus.TextFormatter{DisableTimestamp: true, DisableColors: true}

	switch {
	case opts.Format == FormatJSON:
		l.SetFormatter(&logrus.JSONFormatter{})
	case e.stream && e.native && e.send != nil && opts.Format != FormatText:
		ident := opts.Identifier
		if ident == "" {
			ident = filepath.Base(os.Args[0])
		}
		l.SetOutput(io.Discard)
		l.SetFormatter(noFormat{})
		l.AddHook(&journalHook{send: e.send, ident: ident, fallback: out, text: journalText})
	case e.stream:
		l.SetFormatter(journalText)
	default:
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	return l
}

// ParseLevel maps a level name to a logrus level; unknown names are info.
func ParseLevel(s string) logrus.Level {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace":
		return logrus.TraceLevel
	case "debug":
		return logrus.DebugLevel
	case "warn", "warning":
		return logrus.WarnLevel
	case "error":
		return logrus.ErrorLevel
	}
	return logrus.InfoLevel
}

// JournalField returns the journal field name for a logrus field name:
// upper case, every character outside [A-Z0-9_] replaced by '_', prefixed
// with "F_" when it would otherwise start with something other than a
// letter or collide with a field the journal or this package sets
// (MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, …), and cut to 64 bytes.
func JournalField(name string) string {
	b := []byte(strings.ToUpper(name))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	s := string(b)
	if s == "" || s[0] < 'A' || s[0] > 'Z' || reserved[s] || strings.HasPrefix(s, "CODE_") {
		s = "F_" + s
	}
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

var reserved = map[string]bool{
	"MESSAGE": true, "MESSAGE_ID": true, "PRIORITY": true, "SYSLOG_IDENTIFIER": true,
	"SYSLOG_FACILITY": true, "SYSLOG_PID": true, "SYSLOG_TIMESTAMP": true, "ERRNO": true,
	"INVOCATION_ID": true, "USER_INVOCATION_ID": true, "TID": true, "UNIT": true, "USER_UNIT": true,
	"DOCUMENTATION": true,
}

// journalHook sends each entry to the journal natively.
type journalHook struct {
	send     func(msg string, p journal.Priority, vars map[string]string) error
	ident    string
	fallback io.Writer
	text     logrus.Formatter
}

func (h *journalHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h *journalHook) Fire(e *logrus.Entry) error {
	vars := make(map[string]string, len(e.Data)+1)
	for k, v := range e.Data {
		vars[JournalField(k)] = fmt.Sprint(v)
	}
	if h.ident != "" {
		vars["SYSLOG_IDENTIFIER"] = h.ident
	}
	if err := h.send(e.Message, priority(e.Level), vars); err != nil {
		// Keep the line: write it to the stream instead (hooks run under
		// the logger's lock, so this write is serialized).
		if b, ferr := h.text.Format(e); ferr == nil {
			h.fallback.Write(b)
		}
	}
	return nil
}

func priority(l logrus.Level) journal.Priority {
	switch l {
	case logrus.PanicLevel, logrus.FatalLevel:
		return journal.PriCrit
	case logrus.ErrorLevel:
		return journal.PriErr
	case logrus.WarnLevel:
		return journal.PriWarning
	case logrus.InfoLevel:
		return journal.PriInfo
	}
	return journal.PriDebug
}

// noFormat formats nothing: with the journal hook, the entry has already
// gone out natively and the stream must stay silent. io.Discard as the
// output alone would still pay for formatting every entry.
type noFormat struct{}

func (noFormat) Format(*logrus.Entry) ([]byte, error) { return nil, nil }
