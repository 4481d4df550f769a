package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/dbustest"
	"github.com/proxypool/proxypool/internal/manager"
	"github.com/proxypool/proxypool/internal/manager/managertest"
	"github.com/proxypool/proxypool/internal/parse"
	"github.com/proxypool/proxypool/internal/source"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/store/pgtest"
	"github.com/proxypool/proxypool/internal/store/storetest"
	"github.com/proxypool/proxypool/internal/upstream"
)

var update = flag.Bool("update", false, "rewrite testdata/golden")

// TestMain doubles as the child that runs proxypoolctl as another user
// (see runAsNobody).
func TestMain(m *testing.M) {
	if os.Getenv("PROXYPOOLCTL_CHILD") != "" {
		args := strings.Split(os.Getenv("PROXYPOOLCTL_ARGS"), "\x1f")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		code := run(ctx, args, strings.NewReader(""), os.Stdout, os.Stderr)
		cancel()
		os.Exit(code)
	}
	os.Exit(pgtest.Main(m))
}

// ctl runs proxypoolctl in-process.
func ctl(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code = run(ctx, args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func mustCtl(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := ctl(t, "", args...)
	if code != 0 {
		t.Fatalf("proxypoolctl %s: exit %d\n%s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// daemon is the probe daemon's control side in miniature: a real store
// file, the real manager, control.Serve on a private bus, a tiny probe
// loop, the real source fetcher for refresh, and a recorded tor.
type daemon struct {
	st     *store.Store
	m      *manager.Manager
	srv    *control.Server
	dbDir  string
	newnym []int
	mu     sync.Mutex
}

func startDaemon(t *testing.T, addr string, opts control.Options, src string) *daemon {
	t.Helper()
	return startDaemonRetiring(t, addr, opts, src, 0)
}

// startDaemonRetiring is startDaemon whose refresh retires after
// retireAfter (refresh.retire-after; 0: never).
func startDaemonRetiring(t *testing.T, addr string, opts control.Options, src string, retireAfter time.Duration) *daemon {
	t.Helper()
	d := &daemon{dbDir: t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())
	var srvMu sync.Mutex
	var srv *control.Server
	st, err := store.Open(ctx, filepath.Join(d.dbDir, "pool.db"), store.Options{FlushInterval: 5 * time.Millisecond,
		OnChange: func(v uint64) {
			srvMu.Lock()
			defer srvMu.Unlock()
			if srv != nil {
				srv.PoolChanged(v)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	d.st = st
	p := managertest.NewProbe(st, 500, func(_ int, u upstream.Upstream) upstream.CheckResult { return resultFor(u) })
	d.m = manager.New(manager.Options{
		Store: st, Checker: p, CheckPoll: 20 * time.Millisecond,
		// The real daemon wakes the probe after a refresh; here only
		// check does, so that the golden counts do not race.
		Refresher: fileRefresher{st: st, url: src, after: func() {}, retireAfter: retireAfter},
		Tor:       d,
		Emit: func(pr control.Progress) {
			srvMu.Lock()
			defer srvMu.Unlock()
			if srv != nil {
				srv.Progress(pr)
			}
		},
	})
	p.Progress = d.m
	go p.Run(ctx)
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	s, err := control.Serve(ctx, conn, d.m, opts)
	if err != nil {
		t.Fatal(err)
	}
	srvMu.Lock()
	srv, d.srv = s, s
	srvMu.Unlock()
	t.Cleanup(func() {
		cancel()
		d.m.Close()
		st.Close()
		conn.Close()
	})
	return d
}

// resultFor is the probe's verdict on u (through managertest's probe
// loop): results depend only on the upstream, so goldens are stable.
func resultFor(u upstream.Upstream) upstream.CheckResult {
	n := u.Port
	for _, c := range u.ID {
		n += int(c)
	}
	// caps as the probe gives them: a tunnel for every kind but http,
	// which may have proved either use or both
	caps := upstream.CapConnect
	if u.Type == upstream.HTTP {
		caps = []upstream.Caps{upstream.CapForward, upstream.CapConnect, upstream.CapConnect | upstream.CapForward}[n%3]
	}
	return upstream.CheckResult{ID: u.ID, At: time.Now(), OK: true, TotalMS: float64(20 + n%80),
		ExitIP: fmt.Sprintf("198.51.100.%d", n%250), Country: []string{"US", "DE", "NL"}[n%3], Anonymity: upstream.AnonElite,
		Caps: caps}
}

// fileRefresher is the daemon's refresh over the real source.Refresher
// (fetcher, retirement).
type fileRefresher struct {
	st          *store.Store
	url         string
	after       func()
	retireAfter time.Duration
}

func (r fileRefresher) Refresh(ctx context.Context, progress func(done, total int)) error {
	rf := &source.Refresher{Sources: []source.Source{{Name: "local", URL: r.url}}, Sink: r.st, RetireAfter: r.retireAfter}
	rf.Refresh(ctx, progress) // a failed source shows in status, as in the daemon
	r.after()
	return nil
}

func (d *daemon) Status(ctx context.Context) ([]control.TorInstance, error) {
	return []control.TorInstance{{Port: 9060, Group: "us", Unit: "tor@9060.service", State: "active", Country: "US", ExitIP: "203.0.113.9"}}, nil
}

func (d *daemon) Newnym(ctx context.Context, port int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.newnym = append(d.newnym, port)
	return nil
}

func (d *daemon) Generate(ctx context.Context, progress func(done, total int)) error {
	for i := 1; i <= 3; i++ {
		progress(i, 3)
	}
	return nil
}

var (
	timeRE    = regexp.MustCompile(`"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)"`)
	jobRE     = regexp.MustCompile(`"(check|refresh|torgen)-[0-9a-f]{4}-\d+"`)
	secondsRE = regexp.MustCompile(`"healthy_seconds": [0-9.e+-]+`)
	versionRE = regexp.MustCompile(`"version": \d+`) // commits batch results as they come
)

// golden compares out, with times and job ids made stable, to
// testdata/golden/name.
func golden(t *testing.T, name, out string) {
	t.Helper()
	out = timeRE.ReplaceAllString(out, `"TIME"`)
	out = jobRE.ReplaceAllString(out, `"$1-JOB"`)
	out = secondsRE.ReplaceAllString(out, `"healthy_seconds": 0`)
	out = versionRE.ReplaceAllString(out, `"version": 1`)
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if string(want) != out {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s", name, out)
	}
}

func sessionDaemon(t *testing.T, src string) *daemon {
	bus := dbustest.StartSession(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus.Addr)
	return startDaemon(t, bus.Addr, control.Options{}, src)
}

// TestVerbsEndToEnd drives every verb through proxypoolctl's own code
// against the daemon on a private bus.
func TestVerbsEndToEnd(t *testing.T) {
	list := filepath.Join(t.TempDir(), "list.txt")
	os.WriteFile(list, []byte("socks5://127.0.0.20:1080\nsocks5://127.0.0.21:1080\nhttp://127.0.0.22:3128\n"), 0o644)
	d := sessionDaemon(t, "file://"+list)

	golden(t, "import.json", mustCtl(t, "--user", "--json", "import", "testdata/links.txt"))
	code, out, errOut := ctl(t, "socks5://127.0.0.30:1\nvmess://not-base64!!\n", "--user", "import", "-")
	if code != 0 || !strings.Contains(out, "1 ok (1 new), 1 failed") || !strings.Contains(errOut, "line 2:") {
		t.Errorf("import from stdin: exit %d\n%s%s", code, out, errOut)
	}

	golden(t, "check-wait.json", mustCtl(t, "--user", "--json", "check", "--wait"))
	golden(t, "refresh-wait.json", mustCtl(t, "--user", "--json", "refresh", "--wait"))
	if out := mustCtl(t, "--user", "refresh", "--wait"); !regexp.MustCompile(`(?m)^local +3 +0 +3 +0 +0 +ok$`).MatchString(out) {
		t.Errorf("refresh --wait lacks its per-source table (listed, new, seen, gone, failed):\n%s", out)
	}
	// refresh's upstreams; --wait ends with what the check changed
	if out := mustCtl(t, "--user", "check", "--wait"); !regexp.MustCompile(`(?m)^unknown +3 +0 +-3$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^healthy +23 +26 +\+3$`).MatchString(out) {
		t.Errorf("check --wait lacks its state table:\n%s", out)
	}
	golden(t, "list.json", mustCtl(t, "--user", "--json", "list"))
	golden(t, "list-source.txt", stripAgo(mustCtl(t, "--user", "list", "--source", "local")))
	golden(t, "status.json", mustCtl(t, "--user", "--json", "status"))
	golden(t, "export.json", mustCtl(t, "--user", "export", "--format", "json"))
	golden(t, "export.txt", mustCtl(t, "--user", "export", "--format", "txt"))
	// filters: the same healthy set cut by what the probe found
	all := mustCtl(t, "--user", "export", "--format", "txt")
	de := mustCtl(t, "--user", "export", "--format", "txt", "--country", "de", "--anonymity", "elite")
	if n, m := strings.Count(de, "\n"), strings.Count(all, "\n"); n == 0 || n >= m {
		t.Errorf("export --country de: %d lines of %d\n%s", n, m, de)
	}
	if out := mustCtl(t, "--user", "export", "--format", "json", "--anonymity", "transparent"); strings.TrimSpace(out) != "[]" {
		t.Errorf("export --anonymity transparent of an all-elite pool: %s", out)
	}
	if out := mustCtl(t, "--user", "list", "--anonymity", "elite", "--min-score", "1"); !strings.Contains(out, "ANON") || !strings.Contains(out, " elite ") {
		t.Errorf("list --anonymity elite lacks the ANON column or its rows:\n%s", out)
	}
	if code, _, errOut := ctl(t, "", "--user", "list", "--anonymity", "great"); code != exitUsage || !strings.Contains(errOut, "unknown --anonymity") {
		t.Errorf("list --anonymity great: exit %d, %s", code, errOut)
	}
	clash := mustCtl(t, "--user", "export", "--format", "clash")
	golden(t, "export-clash.yaml", clash)
	if res, err := parse.Parse([]byte(clash), parse.Options{}); err != nil {
		t.Errorf("clash export: %v", err)
	} else {
		for _, r := range res {
			if r.Err != nil {
				t.Errorf("clash export line %d: %v", r.Line, r.Err)
			}
		}
	}
	status := mustCtl(t, "--user", "status")
	for _, want := range []string{"pool: 26 upstreams: 26 healthy", "exits:", "SOURCE", "manual", "local", "COUNTRY"} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}

	golden(t, "add.json", mustCtl(t, "--user", "--json", "add", "socks5://127.0.0.40:1080"))
	out = mustCtl(t, "--user", "add", "socks5://127.0.0.40:1080")
	if !strings.Contains(out, "already in the pool") {
		t.Errorf("add twice: %s", out)
	}
	golden(t, "remove.json", mustCtl(t, "--user", "--json", "remove", "socks5://127.0.0.40:1080"))
	code, _, errOut = ctl(t, "", "--user", "remove", "socks5://127.0.0.40:1080")
	if code != exitNotFound || !strings.Contains(errOut, "no upstream") {
		t.Errorf("remove of a removed upstream: exit %d, %s", code, errOut)
	}
	code, _, errOut = ctl(t, "", "--user", "add", "gopher://nope")
	if code != exitUsage {
		t.Errorf("add of junk: exit %d, %s", code, errOut)
	}

	golden(t, "tor-status.json", mustCtl(t, "--user", "--json", "tor", "status"))
	mustCtl(t, "--user", "tor", "newnym", "9060")
	mustCtl(t, "--user", "tor", "newnym")
	d.mu.Lock()
	newnym := fmt.Sprint(d.newnym)
	d.mu.Unlock()
	if newnym != "[9060 0]" {
		t.Errorf("newnym calls %v", newnym)
	}
	golden(t, "tor-generate.json", mustCtl(t, "--user", "--json", "tor", "generate", "--wait"))

	// Without --wait a job only starts.
	out = mustCtl(t, "--user", "check")
	if !strings.HasPrefix(out, "started check-") {
		t.Errorf("check: %q", out)
	}
}

var agoRE = regexp.MustCompile(`\d+s ago`)

func stripAgo(s string) string { return agoRE.ReplaceAllString(s, "Ns ago") }

// addBulk adds n upstreams of type typ, on distinct addresses of
// 127.net.0.0/16, to d's store as source "bulk".
func (d *daemon) addBulk(t *testing.T, n int, typ string, net, port int) []upstream.Upstream {
	t.Helper()
	ups := make([]upstream.Upstream, n)
	for i := range ups {
		ups[i] = upstream.MustNew(map[string]any{"type": typ, "server": fmt.Sprintf("127.%d.%d.%d", net, i/250, i%250+1), "port": port})
	}
	start := time.Now()
	if _, err := d.st.Add(context.Background(), "bulk", ups...); err != nil {
		t.Fatal(err)
	}
	t.Logf("adding %d upstreams: %s", n, time.Since(start))
	return ups
}

// TestWaitShowsProgress: --wait prints plain progress lines when stderr is
// not a terminal and ends with the job's totals.
func TestWaitShowsProgress(t *testing.T) {
	d := sessionDaemon(t, "file:///nonexistent")
	ups := d.addBulk(t, 1200, "socks5", 2, 1080)
	code, out, errOut := ctl(t, "", "--user", "check", "--wait")
	if code != 0 || !strings.Contains(out, "done: 1200 of 1200") || !strings.Contains(errOut, "/1200\n") {
		t.Fatalf("check --wait: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	ids := []string{ups[0].ID, ups[5].ID}
	code, out, errOut = ctl(t, "", "--user", "check", "--wait", ids[0], ids[1])
	if code != 0 || !strings.Contains(out, "done: 2 of 2") {
		t.Fatalf("check --wait IDs: exit %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = ctl(t, "", "--user", "check", "nope")
	if code != exitNotFound {
		t.Fatalf("check of an unknown id: exit %d %s", code, errOut)
	}
}

// TestPagingTenThousand: list pages through 10k upstreams quickly.
func TestPagingTenThousand(t *testing.T) {
	d := sessionDaemon(t, "file:///nonexistent")
	d.addBulk(t, 10000, "http", 3, 8080)
	start := time.Now()
	out := mustCtl(t, "--user", "--json", "list")
	took := time.Since(start)
	if n := strings.Count(out, "\n"); n != 10000 {
		t.Fatalf("list --json printed %d lines, want 10000", n)
	}
	code, tab, errOut := ctl(t, "", "--user", "list", "--state", "unknown", "--limit", "7000")
	if code != 0 || strings.Count(tab, "\n") != 7001 || !strings.Contains(errOut, "7000 of 10000 upstreams") {
		t.Fatalf("list --limit: exit %d, %d lines, %s", code, strings.Count(tab, "\n"), errOut)
	}
	t.Logf("list --json of 10000 upstreams over the bus: %s", took)
	if took > 15*time.Second { // 2.8 s measured on a loaded 2-core machine; catches a hang, not noise
		t.Errorf("listing 10000 upstreams took %s", took)
	}
}

// TestDBModeWhileWriting: --db reads a store that a daemon is writing,
// a SQLite file or a PostgreSQL database (--db postgres://…).
func TestDBModeWhileWriting(t *testing.T) {
	for _, b := range storetest.Backends {
		t.Run(b.Name, func(t *testing.T) { testDBModeWhileWriting(t, b.Database(t)) })
	}
}

func testDBModeWhileWriting(t *testing.T, path string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, path, store.Options{FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the daemon: keeps adding and checking
		defer wg.Done()
		for i := 0; ctx.Err() == nil && i < 4000; i++ {
			u := upstream.MustNew(map[string]any{"type": "socks5", "server": fmt.Sprintf("127.4.%d.%d", i/250, i%250+1), "port": 1080})
			st.Add(ctx, "writer", u)
			st.Submit(resultFor(u))
		}
	}()
	for i := 0; i < 5; i++ {
		for _, args := range [][]string{
			{"--db", path, "--json", "status"},
			{"--db", path, "list", "--limit", "50"},
			{"--db", path, "export", "--format", "txt"},
		} {
			if code, _, errOut := ctl(t, "", args...); code != 0 {
				t.Fatalf("%v while the store is written: exit %d %s", args, code, errOut)
			}
		}
	}
	cancel()
	wg.Wait()
	st.Flush(context.Background())
	var s control.Status
	if err := json.Unmarshal([]byte(mustCtl(t, "--db", path, "--json", "status")), &s); err != nil || s.States[upstream.Healthy] == 0 {
		t.Fatalf("status --db: %+v %v", s, err)
	}
	code, _, errOut := ctl(t, "", "--db", path, "add", "socks5://127.0.0.1:1")
	if code != exitUsage || !strings.Contains(errOut, "needs the daemon") {
		t.Errorf("add --db: exit %d %s", code, errOut)
	}
}

// TestNotRunning: clear words and exit 3 when nobody owns the name or the
// bus is missing.
func TestNotRunning(t *testing.T) {
	bus := dbustest.StartSession(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus.Addr)
	code, _, errOut := ctl(t, "", "--user", "status")
	if code != exitNotRunning || !strings.Contains(errOut, "proxypool is not running on the session bus (systemctl --user status proxy-probe)") {
		t.Errorf("status without a daemon: exit %d %q", code, errOut)
	}
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "nobus"))
	code, _, errOut = ctl(t, "", "status")
	if code != exitNotRunning || !strings.Contains(errOut, "system bus") {
		t.Errorf("status without a bus: exit %d %q", code, errOut)
	}
	code, _, _ = ctl(t, "", "list", "--state", "sleepy")
	if code != exitUsage {
		t.Errorf("bad --state: exit %d", code)
	}
}

// TestUnprivilegedDenied runs proxypoolctl as nobody against a system-like
// bus with the shipped policy: reading works, changing is refused with
// exit 4 and words that say what to do.
func TestUnprivilegedDenied(t *testing.T) {
	bus := dbustest.StartSystem(t, "../../packaging/dbus/"+control.BusName+".conf")
	if os.Getuid() != 0 {
		t.Skip("needs root: the shipped policy lets only root or proxypool own the name")
	}
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.Addr)
	d := startDaemon(t, bus.Addr, control.Options{AllowedGIDs: []uint32{}}, "file:///nonexistent")
	mustCtl(t, "add", "socks5://127.0.0.50:1080") // root may

	code, out, errOut := runAsNobody(t, bus.Addr, "--json", "status")
	if code != 0 || !strings.Contains(out, `"states"`) {
		t.Errorf("nobody status: exit %d %s %s", code, out, errOut)
	}
	for _, args := range [][]string{{"add", "socks5://127.0.0.51:1080"}, {"remove", "socks5://127.0.0.50:1080"}, {"check"}, {"refresh"}} {
		code, _, errOut := runAsNobody(t, bus.Addr, args...)
		if code != exitDenied || !strings.Contains(errOut, "needs root or membership in group proxypool") {
			t.Errorf("nobody %v: exit %d %q, want %d and what to do", args, code, errOut, exitDenied)
		}
	}
	if n, _ := d.st.Counts(context.Background()); n.Total != 1 {
		t.Errorf("store holds %d upstreams after nobody's calls, want 1", n.Total)
	}
}

// runAsNobody re-executes the test binary as nobody running proxypoolctl
// with args, the way internal/control's tests do.
func runAsNobody(t *testing.T, addr string, args ...string) (int, string, string) {
	t.Helper()
	return runAsNobodyIn(t, addr, "", args...)
}

// runAsNobodyIn is runAsNobody with supplementary groups (setpriv's
// --groups list; "" for none).
func runAsNobodyIn(t *testing.T, addr, groups string, args ...string) (int, string, string) {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not installed (util-linux)")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	self, _ := os.Executable()
	bin := filepath.Join(dir, "proxypoolctl.test")
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	outf, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(outf, in)
	in.Close()
	outf.Close()
	groupArg := "--clear-groups"
	if groups != "" {
		groupArg = "--groups=" + groups
	}
	cmd := exec.Command(setpriv, "--reuid=nobody", "--regid=nogroup", groupArg, "--", bin)
	cmd.Env = []string{"PROXYPOOLCTL_CHILD=1", "PROXYPOOLCTL_ARGS=" + strings.Join(args, "\x1f"), "DBUS_SYSTEM_BUS_ADDRESS=" + addr}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("child: %v", err)
	}
	return code, stdout.String(), stderr.String()
}

// dbWithChecks writes a store file for --db holding a socks5 upstream
// on each of servers (port 1080, source local), each with the check
// result check(i, its id) gives it; it returns the file and the ids in
// servers' order.
func dbWithChecks(t *testing.T, servers []string, check func(i int, id string) upstream.CheckResult) (string, []string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pool.db")
	st, err := store.Open(ctx, path, store.Options{FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var ids []string
	for i, server := range servers {
		u := upstream.MustNew(map[string]any{"type": "socks5", "server": server, "port": 1080})
		if _, err := st.Add(ctx, "local", u); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
		st.Submit(check(i, u.ID))
	}
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return path, ids
}

// TestListLastError: `list` shows why an upstream last failed as "cause:
// detail", one row per upstream whatever the detail holds, and `list
// --json` gives both fields.
func TestListLastError(t *testing.T) {
	tests := []struct {
		server string
		cause  upstream.Cause
		detail string
		row    string // what the LAST ERROR column shows
	}{
		{"127.73.0.1", upstream.CauseCertificate, "x509: certificate signed by unknown authority", "certificate: x509: certificate signed by unknown authority"},
		{"127.73.0.2", upstream.CauseRoutesLocally, "exit 127.73.0.2 is in our own network", "routes_locally: exit 127.73.0.2 is in our own network"},
		{"127.73.0.3", upstream.CauseRefused, "", "refused"},
		{"127.73.0.4", upstream.CauseOther, "judge answered\r\n\tgarbage", "other: judge answered   garbage"},
	}
	var servers []string
	for _, tt := range tests {
		servers = append(servers, tt.server)
	}
	path, _ := dbWithChecks(t, servers, func(i int, id string) upstream.CheckResult {
		return upstream.CheckResult{ID: id, At: time.Now(), Cause: tests[i].cause, Detail: tests[i].detail}
	})

	out := mustCtl(t, "--db", path, "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1+len(tests) || !strings.HasSuffix(strings.TrimSpace(lines[0]), "LAST ERROR") {
		t.Fatalf("list: want a header ending LAST ERROR and %d rows:\n%s", len(tests), out)
	}
	for _, tt := range tests {
		found := false
		for _, l := range lines[1:] {
			if strings.Contains(l, tt.server+":1080") {
				found = true
				if !strings.HasSuffix(l, tt.row) {
					t.Errorf("row of %s: %q, want it to end %q", tt.server, l, tt.row)
				}
			}
		}
		if !found {
			t.Errorf("no row for %s:\n%s", tt.server, out)
		}
	}

	for _, l := range strings.Split(strings.TrimSpace(mustCtl(t, "--db", path, "--json", "list")), "\n") {
		var r struct {
			Server    string `json:"server"`
			LastCause string `json:"last_cause"`
			LastError string `json:"last_error"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("list --json line %q: %v", l, err)
		}
		for _, tt := range tests {
			if r.Server == tt.server && (r.LastCause != tt.cause.String() || r.LastError != tt.detail) {
				t.Errorf("%s: last_cause %q last_error %q, want %q %q", tt.server, r.LastCause, r.LastError, tt.cause, tt.detail)
			}
		}
	}
}

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
