package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/dbustest"
	"github.com/proxypool/proxypool/internal/parse"
	"github.com/proxypool/proxypool/internal/upstream"
)

// plainSecrets and allSecrets are the credentials of testdata/secrets.txt:
// every output holds every kind's (the exports' links encode some of them,
// so those are read back through the parser first).
var (
	plainSecrets = []string{"alice-user", "SECRET-socks", "bob-user", "SECRET-http"}
	allSecrets   = append(append([]string{}, plainSecrets...), "SECRET-trojan", "5ec2e7a1-5ec2-4000-8000-00000000a001",
		"SECRET-ss", "SECRET-hy2", "SECRET-obfs", "5ec2e7a1-5ec2-4000-8000-00000000a002", "SECRET-tuic",
		"U0VDUkVUd2dwcml2YXRla2V5MDEyMzQ1Njc4OWFiYyE=", "U0VDUkVUd2dwcmVzaGFyZWRrZXkwMTIzNDU2Nzg5ISE=")
)

// TestSecretsOnlyForThePrivileged runs `proxypoolctl --json list` and
// `export` on a system-like bus with the shipped policy, against the real
// manager and store: as nobody no password, uuid, key or obfs password
// comes back (REDACTED stands in their place); as root and as a member of
// an allowed group every one does.
func TestSecretsOnlyForThePrivileged(t *testing.T) {
	bus := dbustest.StartSystem(t, "../../packaging/dbus/"+control.BusName+".conf")
	if os.Getuid() != 0 {
		t.Skip("needs root: the shipped policy lets only root or proxypool own the name")
	}
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Addr)
	startDaemon(t, bus.Addr, control.Options{AllowedGIDs: []uint32{4242}}, "file:///nonexistent")
	if out := mustCtl(t, "import", "testdata/secrets.txt"); !strings.Contains(out, "8 ok (8 new)") {
		t.Fatalf("import: %s", out)
	}
	mustCtl(t, "check", "--wait") // healthy: export has them all

	calls := []struct {
		args    []string
		secrets []string
	}{
		{[]string{"--json", "list"}, allSecrets},
		{[]string{"export", "--format", "clash"}, allSecrets},
		{[]string{"export", "--format", "json"}, allSecrets},
		{[]string{"export", "--format", "txt"}, allSecrets},
	}
	as := []struct {
		who    string
		run    func(args ...string) (int, string, string)
		secret bool
	}{
		{"root", func(args ...string) (int, string, string) { return ctl(t, "", args...) }, true},
		{"nobody", func(args ...string) (int, string, string) { return runAsNobodyIn(t, bus.Addr, "", args...) }, false},
		{"nobody in allowed group 4242", func(args ...string) (int, string, string) { return runAsNobodyIn(t, bus.Addr, "4242", args...) }, true},
	}
	for _, who := range as {
		for _, c := range calls {
			code, out, errOut := who.run(c.args...)
			if code != 0 || strings.Count(out, "127.76.0.1") < 2 {
				t.Errorf("%s %v: exit %d, %s %s", who.who, c.args, code, out, errOut)
				continue
			}
			if c.args[0] == "export" && c.args[2] != "clash" {
				out += decoded(t, out) // links carry ss and wireguard keys encoded
			}
			for _, s := range c.secrets {
				if strings.Contains(out, s) != who.secret {
					t.Errorf("%s %v: holds %q: %v, want %v", who.who, c.args, s, !who.secret, who.secret)
				}
			}
			if strings.Contains(out, upstream.RedactedValue) == who.secret {
				t.Errorf("%s %v: %s marker present: %v, want %v", who.who, c.args, upstream.RedactedValue, !who.secret, who.secret)
			}
		}
	}
}

// decoded is every upstream an export reads back as, options and all, as
// JSON: what the links in it carry.
func decoded(t *testing.T, export string) string {
	t.Helper()
	rs, err := parse.Parse([]byte(export), parse.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range rs {
		if r.OK() {
			j, _ := json.Marshal(r.Upstream.Options)
			b.Write(j)
		}
	}
	return b.String()
}
