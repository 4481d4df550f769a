package units

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/proxypool/proxypool/internal/testtool"
)

// fakeSystemd keeps unit states in memory and records calls. systemd as PID
// 1 is not available in unit tests; the real manager is exercised in the
// nspawn end-to-end test.
type fakeSystemd struct {
	active  map[string]bool
	enabled map[string]bool
	calls   []string
	failJob string
}

func newFake() *fakeSystemd {
	return &fakeSystemd{active: map[string]bool{}, enabled: map[string]bool{}}
}

func (f *fakeSystemd) ListUnitsByNamesContext(_ context.Context, names []string) ([]sdbus.UnitStatus, error) {
	var out []sdbus.UnitStatus
	for _, n := range names {
		st := "inactive"
		if f.active[n] {
			st = "active"
		}
		out = append(out, sdbus.UnitStatus{Name: n, ActiveState: st})
	}
	return out, nil
}

func (f *fakeSystemd) EnableUnitFilesContext(_ context.Context, files []string, _, _ bool) (bool, []sdbus.EnableUnitFileChange, error) {
	f.calls = append(f.calls, "enable "+strings.Join(files, ","))
	for _, n := range files {
		f.enabled[n] = true
	}
	return true, nil, nil
}

func (f *fakeSystemd) DisableUnitFilesContext(_ context.Context, files []string, _ bool) ([]sdbus.DisableUnitFileChange, error) {
	f.calls = append(f.calls, "disable "+strings.Join(files, ","))
	for _, n := range files {
		delete(f.enabled, n)
	}
	return nil, nil
}

func (f *fakeSystemd) ReloadContext(context.Context) error {
	f.calls = append(f.calls, "daemon-reload")
	return nil
}

func (f *fakeSystemd) job(verb, name string, ch chan<- string, state bool) (int, error) {
	f.calls = append(f.calls, verb+" "+name)
	if name == f.failJob {
		ch <- "failed"
		return 1, nil
	}
	f.active[name] = state
	ch <- "done"
	return 1, nil
}

func (f *fakeSystemd) StartUnitContext(_ context.Context, name, _ string, ch chan<- string) (int, error) {
	return f.job("start", name, ch, true)
}

func (f *fakeSystemd) StopUnitContext(_ context.Context, name, _ string, ch chan<- string) (int, error) {
	return f.job("stop", name, ch, false)
}

func (f *fakeSystemd) ReloadOrRestartUnitContext(_ context.Context, name, _ string, ch chan<- string) (int, error) {
	return f.job("reload", name, ch, true)
}

type fakeUsers struct{ made, removed []string }

func (u *fakeUsers) Ensure(_ context.Context, name, home string) error {
	u.made = append(u.made, name)
	return os.MkdirAll(home, 0o700)
}

func (u *fakeUsers) Remove(_ context.Context, name, home string) error {
	u.removed = append(u.removed, name)
	return os.RemoveAll(home)
}

func TestApplyActsOnlyOnChanges(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	sd, users := newFake(), &fakeUsers{}
	r := &Runner{M: sd, Users: users, Root: root}
	steps := []struct {
		name          string
		want, changed []int
		prep          func()
		calls         []string
	}{
		{"create two", []int{9061, 9060}, []int{9060, 9061}, nil, []string{
			"daemon-reload", "enable tor@9060.service,tor@9061.service", "start tor@9060.service", "start tor@9061.service"}},
		{"no change touches nothing", []int{9060, 9061}, nil, nil, nil},
		{"changed torrc reloads", []int{9060, 9061}, []int{9061}, nil, []string{"reload tor@9061.service"}},
		{"crashed unit is started", []int{9060, 9061}, nil, func() { sd.active["tor@9060.service"] = false }, []string{"start tor@9060.service"}},
		{"gone port stopped and disabled, new one created", []int{9061, 9062}, []int{9062}, nil, []string{
			"stop tor@9060.service", "disable tor@9060.service", "daemon-reload", "enable tor@9062.service", "start tor@9062.service"}},
	}
	for _, s := range steps {
		if s.prep != nil {
			s.prep()
		}
		sd.calls = nil
		if err := r.Apply(ctx, s.want, s.changed); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if strings.Join(sd.calls, "\n") != strings.Join(s.calls, "\n") {
			t.Errorf("%s: calls\n%s\nwant\n%s", s.name, strings.Join(sd.calls, "\n"), strings.Join(s.calls, "\n"))
		}
	}
	owned, _ := r.Owned()
	if fmt.Sprint(owned) != "[9061 9062]" {
		t.Errorf("owned = %v", owned)
	}
	if fmt.Sprint(users.made) != "[_tor-9060 _tor-9061 _tor-9062]" {
		t.Errorf("users made: %v", users.made)
	}
	// The gone port's user and home go with it: afterwards nothing would
	// mark them as ours (the purge finds instances by their stub).
	if fmt.Sprint(users.removed) != "[_tor-9060]" {
		t.Errorf("users removed: %v", users.removed)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/tor-instances/9060")); !os.IsNotExist(err) {
		t.Error("home of the gone port still there")
	}
	// Layout, as tor@.service reads it.
	b, err := os.ReadFile(filepath.Join(root, "etc/tor/instances/9062/torrc"))
	if err != nil || !strings.Contains(string(b), "%include /etc/tor/torrc.9062\n") {
		t.Errorf("stub: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/tor/instances/9060")); !os.IsNotExist(err) {
		t.Error("instance dir of the gone port still there (tor-generator would keep it wanted)")
	}
	if st, err := os.Stat(filepath.Join(root, "var/lib/tor-instances/9062")); err != nil || !st.IsDir() {
		t.Errorf("home dir: %v", err)
	}
}

func TestApplyLeavesForeignInstancesAlone(t *testing.T) {
	root := t.TempDir()
	own := filepath.Join(root, "etc/tor/instances/9070")
	os.MkdirAll(own, 0o755)
	os.WriteFile(filepath.Join(own, "torrc"), []byte("+SocksPort auto\n"), 0o644)
	sd := newFake()
	r := &Runner{M: sd, Users: &fakeUsers{}, Root: root}
	// Not wanted: ignored (not ours), never stopped.
	if err := r.Apply(context.Background(), nil, nil); err != nil || len(sd.calls) != 0 {
		t.Fatalf("calls %v err %v", sd.calls, err)
	}
	// Wanted: refused rather than overwritten.
	err := r.Apply(context.Background(), []int{9070}, nil)
	if err == nil || !strings.Contains(err.Error(), "not proxypool's") {
		t.Fatalf("err = %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(own, "torrc"))
	if string(b) != "+SocksPort auto\n" {
		t.Errorf("foreign torrc changed: %q", b)
	}
}

func TestApplyReportsFailedJob(t *testing.T) {
	sd := newFake()
	sd.failJob = "tor@9080.service"
	r := &Runner{M: sd, Users: &fakeUsers{}, Root: t.TempDir()}
	err := r.Apply(context.Background(), []int{9080, 9081}, nil)
	if err == nil || !strings.Contains(err.Error(), "start tor@9080.service: job failed") {
		t.Fatalf("err = %v", err)
	}
	if !sd.active["tor@9081.service"] {
		t.Error("one failed start kept the other from starting")
	}
	var target interface{ Unwrap() []error }
	if !errors.As(err, &target) {
		t.Log("single error")
	}
}

// The stub, read the way Debian's tor@.service reads it (instance defaults
// with @@NAME@@ substituted, -f /etc/tor/instances/<port>/torrc), yields the
// generated torrc.<port>'s settings. The User line is dropped: _tor-<port>
// exists only after a real install (proven in the nspawn test).
func TestStubIncludesGeneratedTorrc(t *testing.T) {
	const defaults = "/usr/share/tor/tor-service-defaults-torrc-instances"
	tmpl, err := os.ReadFile(defaults)
	if err != nil {
		t.Skipf("Debian tor package not installed (%v)", err)
	}
	tor := testtool.Need(t, "tor", "apt-get install -y tor")
	dir := t.TempDir()
	torrcDir := filepath.Join(dir, "etc")
	os.MkdirAll(torrcDir, 0o755)
	os.WriteFile(filepath.Join(torrcDir, "torrc.9060"), []byte("SocksPort 127.0.0.1:9060\nExitNodes {us}\nStrictNodes 1\n"), 0o644)
	r := &Runner{M: newFake(), Users: &fakeUsers{}, Root: dir, TorrcDir: torrcDir}
	if err := r.Apply(context.Background(), []int{9060}, nil); err != nil {
		t.Fatal(err)
	}
	var def []string
	for _, l := range strings.Split(strings.ReplaceAll(string(tmpl), "@@NAME@@", "9060"), "\n") {
		if !strings.HasPrefix(l, "User ") {
			def = append(def, l)
		}
	}
	dp := filepath.Join(dir, "9060.defaults")
	os.WriteFile(dp, []byte(strings.Join(def, "\n")), 0o644)
	out, err := exec.Command(tor, "--defaults-torrc", dp, "-f", filepath.Join(dir, "etc/tor/instances/9060/torrc"), "--dump-config", "short", "--hush").CombinedOutput()
	if err != nil {
		t.Fatalf("tor: %v\n%s", err, out)
	}
	for _, want := range []string{"SocksPort 127.0.0.1:9060", "ExitNodes {us}", "StrictNodes 1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("effective config lacks %q:\n%s", want, out)
		}
	}
}

// An instance whose stop failed still runs as its user: nothing of it is
// removed, so the next run tries again.
func TestApplyKeepsInstanceWhoseStopFailed(t *testing.T) {
	ctx := context.Background()
	sd, users := newFake(), &fakeUsers{}
	r := &Runner{M: sd, Users: users, Root: t.TempDir()}
	if err := r.Apply(ctx, []int{9090}, nil); err != nil {
		t.Fatal(err)
	}
	sd.failJob = "tor@9090.service"
	err := r.Apply(ctx, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "stop tor@9090.service") {
		t.Fatalf("err = %v", err)
	}
	if owned, _ := r.Owned(); fmt.Sprint(owned) != "[9090]" {
		t.Errorf("owned after a failed stop = %v", owned)
	}
	if len(users.removed) != 0 {
		t.Errorf("removed the user of a running instance: %v", users.removed)
	}
	sd.failJob = ""
	if err := r.Apply(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	if owned, _ := r.Owned(); len(owned) != 0 || fmt.Sprint(users.removed) != "[_tor-9090]" {
		t.Errorf("retry: owned %v, removed %v", owned, users.removed)
	}
}
