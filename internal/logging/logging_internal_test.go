package logging

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/sirupsen/logrus"
)

type sent struct {
	msg  string
	prio journal.Priority
	vars map[string]string
}

func TestJournalNative(t *testing.T) {
	var got []sent
	var out bytes.Buffer
	l := New(Options{Out: &out, Level: "debug", Identifier: "proxypoold", env: &env{
		stream: true, native: true,
		send: func(msg string, p journal.Priority, vars map[string]string) error {
			got = append(got, sent{msg, p, vars})
			return nil
		},
	}})
	log := l.WithField(FieldComponent, "probe")
	log.WithFields(logrus.Fields{FieldUpstream: "ab12", FieldSource: "free", FieldGroup: "us", "retry after": 5 * time.Second}).
		Warn("upstream failed")
	log.WithError(errors.New("boom")).Error("round failed")
	log.Debug("detail")
	l.Trace("not at this level")

	if out.Len() != 0 {
		t.Errorf("stream got %q; a natively sent entry must not be logged twice", out.String())
	}
	want := []sent{
		{"upstream failed", journal.PriWarning, map[string]string{
			"COMPONENT": "probe", "UPSTREAM_ID": "ab12", "SOURCE": "free", "GROUP": "us",
			"RETRY_AFTER": "5s", "SYSLOG_IDENTIFIER": "proxypoold"}},
		{"round failed", journal.PriErr, map[string]string{
			"COMPONENT": "probe", "ERROR": "boom", "SYSLOG_IDENTIFIER": "proxypoold"}},
		{"detail", journal.PriDebug, map[string]string{"COMPONENT": "probe", "SYSLOG_IDENTIFIER": "proxypoold"}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sent\n%v\nwant\n%v", got, want)
	}
}

func TestJournalSendFailureFallsBackToStream(t *testing.T) {
	var out bytes.Buffer
	l := New(Options{Out: &out, env: &env{stream: true, native: true,
		send: func(string, journal.Priority, map[string]string) error { return errors.New("no socket") }}})
	l.WithField(FieldSource, "s1").Info("fetched")
	if got, want := out.String(), "level=info msg=fetched source=s1\n"; got != want {
		t.Errorf("fallback = %q, want %q", got, want)
	}
}

func TestFormats(t *testing.T) {
	stamp := `time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)" `
	tests := []struct {
		name string
		opts Options
		want string // regexp for the whole output
	}{
		{"pipe or terminal: text with timestamps", Options{env: &env{}},
			`^` + stamp + `level=info msg="hello world" component=gateway\n$`},
		{"journal stream without native socket: no timestamp", Options{env: &env{stream: true}},
			`^level=info msg="hello world" component=gateway\n$`},
		{"json", Options{Format: FormatJSON, env: &env{stream: true, native: true}},
			`^\{"component":"gateway","level":"info","msg":"hello world","time":"[^"]+"\}\n$`},
		{"text under journald: stream, no timestamp, not native", Options{Format: FormatText, env: &env{stream: true, native: true,
			send: func(string, journal.Priority, map[string]string) error { panic("sent natively") }}},
			`^level=info msg="hello world" component=gateway\n$`},
		{"level filters", Options{Level: "warn", env: &env{}}, `^$`},
		{"unknown level is info", Options{Level: "loud", env: &env{stream: true}},
			`^level=info msg="hello world" component=gateway\n$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			tt.opts.Out = &out
			New(tt.opts).WithField(FieldComponent, "gateway").Info("hello world")
			if !regexp.MustCompile(tt.want).MatchString(out.String()) {
				t.Errorf("output %q does not match %s", out.String(), tt.want)
			}
		})
	}
}

// TestDetectJournalStream runs a child whose stderr is a file and whose
// JOURNAL_STREAM names that file, as systemd does for a service's stderr.
func TestDetectJournalStream(t *testing.T) {
	if os.Getenv("LOGGING_TEST_CHILD") == "1" {
		New(Options{}).WithField(FieldUpstream, "u1").Warn("from child")
		os.Exit(0)
	}
	for _, tc := range []struct {
		name   string
		stream bool
		want   string
	}{
		{"journal", true, `^level=warning msg="from child" upstream_id=u1\n$`},
		{"plain file", false, `^time="[^"]+" level=warning msg="from child" upstream_id=u1\n$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.CreateTemp(t.TempDir(), "stderr")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var st syscall.Stat_t
			if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestDetectJournalStream$")
			cmd.Env = append(os.Environ(), "LOGGING_TEST_CHILD=1")
			if tc.stream {
				cmd.Env = append(cmd.Env, fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
			}
			cmd.Stderr = f
			if err := cmd.Run(); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(f.Name())
			// The native socket may exist on a host with systemd; then the
			// entry went to the journal and stderr stays empty.
			if tc.stream && len(b) == 0 && journal.Enabled() {
				t.Skip("native journal socket present: entry was sent natively")
			}
			if !regexp.MustCompile(tc.want).Match(b) {
				t.Errorf("stderr = %q, want match %s", b, tc.want)
			}
		})
	}
}

func TestJournalField(t *testing.T) {
	for in, want := range map[string]string{
		FieldUpstream:           "UPSTREAM_ID",
		FieldSource:             "SOURCE",
		FieldGroup:              "GROUP",
		FieldComponent:          "COMPONENT",
		FieldError:              "ERROR",
		"retry-after":           "RETRY_AFTER",
		"message":               "F_MESSAGE",
		"priority":              "F_PRIORITY",
		"_pid":                  "F__PID",
		"9lives":                "F_9LIVES",
		"":                      "F_",
		"code_line":             "F_CODE_LINE",
		"ünï":                   "F___N__", // each byte of a non-ASCII rune becomes _
		strings.Repeat("a", 70): strings.Repeat("A", 64),
	} {
		if got := JournalField(in); got != want {
			t.Errorf("JournalField(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := Every(time.Minute)
	l.now = func() time.Time { return now }
	type step struct {
		advance        time.Duration
		key            string
		ok             bool
		wantSuppressed int
	}
	for i, s := range []step{
		{0, "a", true, 0},
		{time.Second, "a", false, 0},
		{time.Second, "a", false, 0},
		{0, "b", true, 0}, // keys are independent
		{time.Minute, "a", true, 2},
		{time.Minute, "a", true, 0},
		{30 * time.Second, "b", true, 0},
	} {
		now = now.Add(s.advance)
		ok, n := l.Allow(s.key)
		if ok != s.ok || n != s.wantSuppressed {
			t.Errorf("step %d: Allow(%q) = %v, %d; want %v, %d", i, s.key, ok, n, s.ok, s.wantSuppressed)
		}
	}
}

func TestLimiterBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	l := Every(time.Minute)
	l.now = func() time.Time { return now }
	for i := range 3 * maxKeys {
		l.Allow(fmt.Sprint(i))
	}
	if len(l.keys) > maxKeys {
		t.Errorf("limiter holds %d keys, want at most %d", len(l.keys), maxKeys)
	}
}

func TestLimiterWarnf(t *testing.T) {
	var out bytes.Buffer
	log := New(Options{Out: &out, env: &env{stream: true}})
	now := time.Unix(1000, 0)
	l := Every(time.Minute)
	l.now = func() time.Time { return now }
	for range 3 {
		l.Warnf(log, "judge", "judge %s unreachable", "j1")
	}
	now = now.Add(time.Minute)
	l.Warnf(log, "judge", "judge %s unreachable", "j1")
	want := "level=warning msg=\"judge j1 unreachable\"\n" +
		"level=warning msg=\"judge j1 unreachable\" suppressed=2\n"
	if out.String() != want {
		t.Errorf("output\n%s\nwant\n%s", out.String(), want)
	}
}
