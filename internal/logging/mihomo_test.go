package logging_test

import (
	"bytes"
	"regexp"
	"testing"

	mihomolog "github.com/metacubex/mihomo/log"
	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/logging"
)

// TestMihomoDoesNotChangeOurLogger: importing mihomo's log package runs an
// init that rewrites logrus's GLOBAL logger (stdout, debug level, nanosecond
// timestamps). Our loggers are logrus.New() values and must not notice.
func TestMihomoDoesNotChangeOurLogger(t *testing.T) {
	if logrus.StandardLogger().Level != logrus.DebugLevel {
		t.Fatal("mihomo's init did not run: this test would prove nothing")
	}
	mihomolog.SetLevel(mihomolog.SILENT)

	var out bytes.Buffer
	l := logging.New(logging.Options{Out: &out, Format: logging.FormatText})
	l.WithField(logging.FieldUpstream, "id1").Info("hello")
	l.Debug("hidden: our level is info")
	mihomolog.Infoln("mihomo says hi") // goes to mihomo's sink, not ours

	want := regexp.MustCompile(`^time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)" level=info msg=hello upstream_id=id1\n$`)
	if !want.MatchString(out.String()) {
		t.Errorf("output %q, want one RFC 3339 (not nanosecond) text line at info", out.String())
	}
	if l.Out == logrus.StandardLogger().Out {
		t.Error("our logger shares the global logger's output")
	}
}
