package dbustest

import (
	"os"
	"strings"
	"testing"
)

func TestSystemConfigKeepsPolicyDropsHostBits(t *testing.T) {
	raw, err := os.ReadFile(SystemConf)
	if err != nil {
		t.Skip(err)
	}
	got, err := SystemConfig(string(raw), "/x/sock", "/x/system.d")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<listen>unix:path=/x/sock</listen>", "<includedir>/x/system.d</includedir>", `<deny send_type="method_call"/>`} {
		if !strings.Contains(got, want) {
			t.Errorf("rewritten config lacks %s", want)
		}
	}
	for _, bad := range []string{"<user>", "<fork/>", "/etc/dbus-1", "/run/dbus"} {
		if strings.Contains(got, bad) {
			t.Errorf("rewritten config still holds %s", bad)
		}
	}
	if _, err := SystemConfig("<busconfig/>", "/x", "/y"); err == nil {
		t.Error("a config without <listen> was accepted")
	}
}

func TestBusesStart(t *testing.T) {
	for name, start := range map[string]func(testing.TB) *Bus{"session": StartSession, "system": func(t testing.TB) *Bus { return StartSystem(t) }} {
		t.Run(name, func(t *testing.T) {
			b := start(t)
			if !strings.HasPrefix(b.Addr, "unix:path="+b.Dir) {
				t.Fatalf("address %q not under %s", b.Addr, b.Dir)
			}
		})
	}
}
