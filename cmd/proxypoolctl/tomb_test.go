package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/dbustest"
)

// TestRemoveRestoreRetire drives remove, restore and retirement through
// proxypoolctl against the daemon on a private bus, as an operator sees
// them: a removed upstream its source still lists stays removed across
// refreshes until restore, and one whose line left the list is retired
// at the refresh after refresh.retire-after.
func TestRemoveRestoreRetire(t *testing.T) {
	list := filepath.Join(t.TempDir(), "list.txt")
	write := func(lines ...string) {
		if err := os.WriteFile(list, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, b := "socks5://127.85.1.1:1080", "socks5://127.85.1.2:1080"
	write(a, b)
	bus := dbustest.StartSession(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus.Addr)
	startDaemonRetiring(t, bus.Addr, control.Options{}, "file://"+list, 50*time.Millisecond)
	mustCtl(t, "--user", "refresh", "--wait")
	mustCtl(t, "--user", "check", "--wait")
	idOf := func(uri string) string {
		t.Helper()
		out := mustCtl(t, "--user", "list", "--source", "local")
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 2 && f[2] == strings.TrimPrefix(uri, "socks5://") {
				return f[0]
			}
		}
		t.Fatalf("%s not in list:\n%s", uri, out)
		return ""
	}
	idA, idB := idOf(a), idOf(b)
	exported := func() string { return mustCtl(t, "--user", "export", "--format", "txt") }
	if e := exported(); !strings.Contains(e, "127.85.1.1:1080") || !strings.Contains(e, "127.85.1.2:1080") {
		t.Fatalf("export before remove:\n%s", e)
	}

	// remove a: it leaves the pool and stays out across a refresh
	if out := mustCtl(t, "--user", "remove", a); !strings.Contains(out, "stays removed") || !strings.Contains(out, "restore") {
		t.Errorf("remove says %q; want it to tell the tombstone and restore", out)
	}
	out := mustCtl(t, "--user", "refresh", "--wait")
	if !regexp.MustCompile(`(?m)^local +2 +0 +1 +0 +0 +ok, 1 listed but removed by the operator$`).MatchString(out) {
		t.Errorf("refresh --wait after remove does not count the removed upstream:\n%s", out)
	}
	mustCtl(t, "--user", "check", "--wait")
	if e := exported(); strings.Contains(e, "127.85.1.1:1080") || !strings.Contains(e, "127.85.1.2:1080") {
		t.Errorf("export after remove and refresh serves the removed upstream (or lost the other):\n%s", e)
	}
	if l := mustCtl(t, "--user", "list"); strings.Contains(l, idA) {
		t.Errorf("list shows the removed upstream:\n%s", l)
	}
	who := "removed by uid " + strconv.Itoa(os.Getuid())
	if l := mustCtl(t, "--user", "list", "--state", "removed"); !strings.Contains(l, idA) || !strings.Contains(l, who) {
		t.Errorf("list --state removed lacks %s %q:\n%s", idA, who, l)
	}
	if s := mustCtl(t, "--user", "status"); !strings.Contains(s, "pool: 1 upstreams") || !strings.Contains(s, "removed: 1 (by the operator), retired: 0") {
		t.Errorf("status after remove:\n%s", s)
	}

	// restore a: back in the pool; a second restore finds nothing
	if out := mustCtl(t, "--user", "restore", idA); !strings.Contains(out, "restored 1 of 1") {
		t.Errorf("restore says %q", out)
	}
	mustCtl(t, "--user", "check", "--wait")
	if e := exported(); !strings.Contains(e, "127.85.1.1:1080") {
		t.Errorf("export after restore lacks it:\n%s", e)
	}
	if code, _, errOut := ctl(t, "", "--user", "restore", idA); code != exitNotFound || !strings.Contains(errOut, "no removed or retired upstream") {
		t.Errorf("restore of an upstream in the pool: exit %d, %s", code, errOut)
	}
	if code, _, _ := ctl(t, "", "--user", "restore"); code != exitUsage {
		t.Errorf("restore with no id: exit %d, want %d", code, exitUsage)
	}

	// b leaves the list: retired at the first refresh after retire-after
	write(a)
	mustCtl(t, "--user", "refresh", "--wait")
	time.Sleep(100 * time.Millisecond)
	mustCtl(t, "--user", "refresh", "--wait")
	if e := exported(); strings.Contains(e, "127.85.1.2:1080") {
		t.Errorf("export serves the retired upstream:\n%s", e)
	}
	if s := mustCtl(t, "--user", "status"); !strings.Contains(s, "retired: 1 (no source lists them") {
		t.Errorf("status does not count the retired upstream:\n%s", s)
	}
	if l := mustCtl(t, "--user", "list", "--state", "retired"); !strings.Contains(l, idB) || !strings.Contains(l, "no source lists it") {
		t.Errorf("list --state retired lacks %s:\n%s", idB, l)
	}
	// restored, a retired upstream is kept as added by hand
	mustCtl(t, "--user", "restore", b)
	time.Sleep(100 * time.Millisecond)
	mustCtl(t, "--user", "refresh", "--wait")
	mustCtl(t, "--user", "check", "--wait")
	if l := mustCtl(t, "--user", "list", "--source", "manual"); !strings.Contains(l, idB) {
		t.Errorf("restored retired upstream is not kept under source manual:\n%s", l)
	}
	if e := exported(); !strings.Contains(e, "127.85.1.2:1080") {
		t.Errorf("export after restoring the retired upstream lacks it:\n%s", e)
	}
}
