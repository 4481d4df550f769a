package control

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/proxypool/proxypool/internal/dbustest"
	"github.com/proxypool/proxypool/internal/upstream"
)

var update = flag.Bool("update", false, "rewrite packaging/dbus/"+Interface+".xml")

const (
	xmlFile    = "../../packaging/dbus/" + Interface + ".xml"
	policyFile = "../../packaging/dbus/" + BusName + ".conf"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv("PROXYPOOL_CONTROL_CHILD"); addr != "" {
		os.Exit(childMain(addr, strings.Split(os.Getenv("PROXYPOOL_CONTROL_CALLS"), ",")))
	}
	os.Exit(m.Run())
}

func TestInterfaceXMLFile(t *testing.T) {
	want := InterfaceXML()
	if *update {
		if err := os.WriteFile(xmlFile, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(xmlFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is stale; run: go test ./internal/control -run TestInterfaceXMLFile -update", xmlFile)
	}
}

// The handler's exported methods, the introspection, the two method lists
// and the shipped policy must all name the same methods.
func TestMethodListsAgree(t *testing.T) {
	var introspected []string
	for _, m := range managerInterface().Methods {
		introspected = append(introspected, m.Name)
	}
	var exported []string
	ht := reflect.TypeOf(handler{})
	for i := range ht.NumMethod() {
		exported = append(exported, ht.Method(i).Name)
	}
	all := append(slices.Clone(ReadOnlyMethods), MutatingMethods...)
	for _, l := range [][]string{introspected, exported, all} {
		sort.Strings(l)
	}
	if !slices.Equal(introspected, exported) || !slices.Equal(introspected, all) {
		t.Fatalf("introspection %v, exported %v, read-only+mutating %v", introspected, exported, all)
	}

	var conf struct {
		Policies []struct {
			Context string `xml:"context,attr"`
			Allow   []struct {
				Dest   string `xml:"send_destination,attr"`
				Iface  string `xml:"send_interface,attr"`
				Member string `xml:"send_member,attr"`
			} `xml:"allow"`
		} `xml:"policy"`
	}
	raw, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(strings.NewReader(string(raw)))
	d.Strict = false
	if err := d.Decode(&conf); err != nil {
		t.Fatalf("parsing %s: %v", policyFile, err)
	}
	var allowed []string
	for _, p := range conf.Policies {
		for _, a := range p.Allow {
			if a.Dest != "" && a.Dest != BusName {
				t.Errorf("policy rule for foreign destination %q", a.Dest)
			}
			if p.Context == "default" && a.Iface == Interface {
				allowed = append(allowed, a.Member)
			}
			if p.Context == "default" && a.Iface == "" {
				t.Errorf("default policy allows every interface of %s", a.Dest)
			}
		}
	}
	ro := slices.Clone(ReadOnlyMethods)
	sort.Strings(ro)
	sort.Strings(allowed)
	if !slices.Equal(ro, allowed) {
		t.Fatalf("policy lets everyone call %v, ReadOnlyMethods is %v", allowed, ro)
	}
}

type world struct {
	bus  *dbustest.Bus
	fake *fakeManager
	srv  *Server
	cli  *Client
}

func connect(t *testing.T, addr string) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatalf("connecting to %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func serve(t *testing.T, bus *dbustest.Bus, opts Options) *world {
	t.Helper()
	w := &world{bus: bus, fake: newFake()}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var err error
	w.srv, err = Serve(ctx, connect(t, bus.Addr), w.fake, opts)
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	w.cli = NewClient(connect(t, bus.Addr), true)
	return w
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCallsOnPrivateBus(t *testing.T) {
	w := serve(t, dbustest.StartSession(t), Options{})
	ctx := ctxT(t)

	id, created, err := w.cli.Add(ctx, "socks5://127.0.0.2:1080")
	if err != nil || !created || id == "" {
		t.Fatalf("Add = %q %v %v", id, created, err)
	}
	if _, created, _ := w.cli.Add(ctx, "socks5://127.0.0.2:1080"); created {
		t.Error("adding the same upstream twice created it twice")
	}
	if _, _, err := w.cli.Add(ctx, "not a uri"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Add(bad) = %v, want ErrInvalid", err)
	}

	rep, err := w.cli.Import(ctx, "# list\nhttp://127.0.0.3:8080\n\nbogus\nsocks5://127.0.0.2:1080\n")
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK != 2 || rep.New != 1 || rep.Failed != 1 || rep.Skipped != 3 || len(rep.Lines) != 6 {
		t.Errorf("Import report = %+v", rep)
	}
	if l := rep.Lines[3]; l.Line != 4 || l.OK || !strings.Contains(l.Error, "bogus") {
		t.Errorf("line 4 = %+v, want an error naming the input", l)
	}

	st, err := w.cli.Status(ctx)
	if err != nil || st.Version != 7 || st.States[upstream.Unknown] != 2 {
		t.Errorf("Status = %+v, %v", st, err)
	}

	if n, err := w.cli.Remove(ctx, "http://127.0.0.3:8080"); n != 1 || err != nil {
		t.Errorf("Remove = %d, %v", n, err)
	}
	_, err = w.cli.Remove(ctx, "0123456789abcdef")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "0123456789abcdef") {
		t.Errorf("Remove(unknown) = %v, want ErrNotFound naming the id", err)
	}
	if n, err := w.cli.Restore(ctx, []string{"http://127.0.0.3:8080", "0123456789abcdef"}); n != 1 || err != nil {
		t.Errorf("Restore = %d, %v; want 1", n, err)
	}
	if n, err := w.cli.Restore(ctx, []string{"0123456789abcdef"}); !errors.Is(err, ErrNotFound) || n != 0 {
		t.Errorf("Restore(not removed) = %d, %v; want ErrNotFound", n, err)
	}

	for name, f := range map[string]func(context.Context) (string, error){
		"check":   func(ctx context.Context) (string, error) { return w.cli.Check(ctx, nil) },
		"refresh": w.cli.Refresh,
		"torgen":  w.cli.TorGenerate,
	} {
		if job, err := f(ctx); err != nil || !strings.HasPrefix(job, name+"-") {
			t.Errorf("%s job = %q, %v", name, job, err)
		}
	}
	if _, err := w.cli.Export(ctx, "xml"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "json, txt or clash") {
		t.Errorf("Export(xml) = %v", err)
	}
	if _, err := w.cli.Export(ctx, FormatTXT); err != nil {
		t.Errorf("Export(txt) = %v", err)
	}
	if in, err := w.cli.TorStatus(ctx); err != nil || len(in) != 1 || in[0].Unit != "tor@9060.service" {
		t.Errorf("TorStatus = %+v, %v", in, err)
	}
	if err := w.cli.TorNewnym(ctx, 9070); !errors.Is(err, ErrNotFound) {
		t.Errorf("TorNewnym(9070) = %v", err)
	}
	if err := w.cli.TorNewnym(ctx, 0); err != nil {
		t.Errorf("TorNewnym(all) = %v", err)
	}
	if _, err := w.cli.List(ctx, ListQuery{State: "sleepy"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("List(state=sleepy) = %v", err)
	}
}

func TestListPagesThousands(t *testing.T) {
	w := serve(t, dbustest.StartSession(t), Options{})
	ctx := ctxT(t)
	var lines []string
	for i := range 3000 {
		lines = append(lines, fmt.Sprintf("socks5://127.1.%d.%d:1080", i/250, i%250+1))
	}
	if rep, err := w.cli.Import(ctx, strings.Join(lines, "\n")); err != nil || rep.New != 3000 {
		t.Fatalf("Import = %d new, %v", rep.New, err)
	}
	page, err := w.cli.List(ctx, ListQuery{})
	if err != nil || len(page.Records) != DefaultListLimit || page.Total != 3000 {
		t.Fatalf("first page: %d records of %d, %v", len(page.Records), page.Total, err)
	}
	page, _ = w.cli.List(ctx, ListQuery{Limit: 100000})
	if len(page.Records) != MaxListLimit && len(page.Records) != 3000 {
		t.Fatalf("limit 100000 gave %d records", len(page.Records))
	}
	seen := map[string]bool{}
	pages := 0
	err = ListAll(ctx, w.cli, ListQuery{Limit: 700}, func(p ListPage) error {
		pages++
		for _, r := range p.Records {
			seen[r.ID] = true
		}
		return nil
	})
	if err != nil || len(seen) != 3000 || pages != 5 {
		t.Fatalf("ListAll: %d distinct records in %d pages, %v", len(seen), pages, err)
	}
}

func TestSignalsAndProperties(t *testing.T) {
	w := serve(t, dbustest.StartSession(t), Options{})
	ctx := ctxT(t)
	changed, err := w.cli.WatchPoolChanged(ctx)
	if err != nil {
		t.Fatal(err)
	}
	progress, err := w.cli.WatchProgress(ctx, "check-1")
	if err != nil {
		t.Fatal(err)
	}
	// A stranger emitting a look-alike signal must not reach the watcher.
	stranger := connect(t, w.bus.Addr)
	if err := stranger.Emit(Path, Interface+".PoolChanged", uint64(666)); err != nil {
		t.Fatal(err)
	}
	w.srv.PoolChanged(41)
	w.srv.Progress(Progress{Job: "other", Done: 1, Total: 2})
	w.srv.Progress(Progress{Job: "check-1", Done: 3, Total: 10})
	select {
	case v := <-changed:
		if v != 41 {
			t.Errorf("PoolChanged delivered %d, want 41 (the stranger's 666 must be dropped)", v)
		}
	case <-ctx.Done():
		t.Fatal("no PoolChanged")
	}
	select {
	case p := <-progress:
		if p != (Progress{Job: "check-1", Done: 3, Total: 10}) {
			t.Errorf("Progress = %+v", p)
		}
	case <-ctx.Done():
		t.Fatal("no Progress")
	}

	w.srv.SetCounts(Counts{Version: 9, Total: 5, Healthy: 3, Dead: 2})
	c, err := w.cli.Counts(ctx)
	if err != nil || c != (Counts{Version: 9, Total: 5, Healthy: 3, Dead: 2}) {
		t.Errorf("Counts = %+v, %v", c, err)
	}

	// The introspection on the bus carries exactly the shipped interface.
	n, err := introspect.Call(connect(t, w.bus.Addr).Object(BusName, Path))
	if err != nil {
		t.Fatal(err)
	}
	var fileNode introspect.Node
	raw, _ := os.ReadFile(xmlFile)
	if err := xml.Unmarshal(raw, &fileNode); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, i := range n.Interfaces {
		if seen[i.Name] {
			t.Errorf("interface %s introspected twice", i.Name)
		}
		seen[i.Name] = true
	}
	// busctl's strict parser is what operators use.
	if busctl, err := execLookPath("busctl"); err == nil {
		out, err := execCommand(busctl, "--address="+w.bus.Addr, "introspect", BusName, string(Path)).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ".PoolChanged") {
			t.Errorf("busctl introspect: %v\n%s", err, out)
		}
	}
	var found bool
	for _, i := range n.Interfaces {
		if i.Name == Interface {
			found = reflect.DeepEqual(i, fileNode.Interfaces[0])
		}
	}
	if !found {
		t.Errorf("bus introspection of %s differs from %s", Interface, xmlFile)
	}
}

func TestNotRunningAndSecondOwner(t *testing.T) {
	bus := dbustest.StartSession(t)
	ctx := ctxT(t)
	_, err := NewClient(connect(t, bus.Addr), true).Status(ctx)
	if !errors.Is(err, ErrNotRunning) || err.Error() != "proxypool is not running on the system bus (systemctl status proxy-probe)" {
		t.Fatalf("Status without daemon = %v", err)
	}
	_, err = NewClient(connect(t, bus.Addr), false).Status(ctx)
	if !strings.Contains(err.Error(), "systemctl --user status proxy-probe") {
		t.Fatalf("session wording = %v", err)
	}
	serve(t, bus, Options{})
	if _, err := Serve(ctx, connect(t, bus.Addr), newFake(), Options{}); err == nil || !strings.Contains(err.Error(), "already owned") {
		t.Fatalf("second Serve = %v, want already owned", err)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	bus := dbustest.StartSession(t)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := Serve(ctx, connect(t, bus.Addr), newFake(), Options{}); err != nil {
		t.Fatal(err)
	}
	cli := NewClient(connect(t, bus.Addr), true)
	if _, err := cli.Status(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := cli.Status(ctxT(t))
		if errors.Is(err, ErrNotRunning) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still answering after cancel: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// childResult is one line the unprivileged child prints.
type childResult struct {
	Call   string `json:"call"`
	OK     bool   `json:"ok"`
	Denied bool   `json:"denied"`
	Err    string `json:"err,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// childMain runs in the test binary re-executed as another user.
func childMain(addr string, calls []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := dbus.Connect(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: connecting:", err)
		return 2
	}
	defer conn.Close()
	cli := NewClient(conn, true)
	enc := json.NewEncoder(os.Stdout)
	for _, c := range calls {
		var err error
		switch c {
		case "Status":
			_, err = cli.Status(ctx)
		case "List":
			_, err = cli.List(ctx, ListQuery{})
		case "Export":
			_, err = cli.Export(ctx, FormatJSON)
		case "TorStatus":
			_, err = cli.TorStatus(ctx)
		case "Counts":
			_, err = cli.Counts(ctx)
		case "Introspect":
			_, err = introspect.Call(conn.Object(BusName, Path))
		case "Add":
			_, _, err = cli.Add(ctx, "socks5://127.0.0.9:1080")
		case "Import":
			_, err = cli.Import(ctx, "socks5://127.0.0.9:1081")
		case "Remove":
			_, err = cli.Remove(ctx, "socks5://127.0.0.9:1080")
		case "Restore":
			_, err = cli.Restore(ctx, []string{"socks5://127.0.0.9:1080"})
		case "Check":
			_, err = cli.Check(ctx, nil)
		case "Refresh":
			_, err = cli.Refresh(ctx)
		case "TorNewnym":
			err = cli.TorNewnym(ctx, 0)
		case "TorGenerate":
			_, err = cli.TorGenerate(ctx)
		case "Own":
			var r dbus.RequestNameReply
			r, err = conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
			if err == nil && r != dbus.RequestNameReplyPrimaryOwner {
				err = fmt.Errorf("not primary owner: %d", r)
			}
		default:
			err = fmt.Errorf("unknown call %q", c)
		}
		r := childResult{Call: c, OK: err == nil, Denied: errors.Is(err, ErrAccessDenied)}
		if err != nil {
			r.Err = err.Error()
			var ce *Error
			if errors.As(err, &ce) {
				r.Detail = ce.Detail
			}
		}
		enc.Encode(r)
	}
	return 0
}

// runAs re-executes this test binary as nobody (with extra supplementary
// groups when given) and returns the child's result per call.
func runAs(t *testing.T, addr string, groups string, calls ...string) map[string]childResult {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	setpriv, err := execLookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not installed (util-linux)")
	}
	// The go test binary lives in a 0700 build dir: copy it where nobody can run it.
	dir, err := os.MkdirTemp("", "control-child-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	self, _ := os.Executable()
	bin := filepath.Join(dir, "control.test")
	if err := copyFile(self, bin); err != nil {
		t.Fatal(err)
	}
	args := []string{"--reuid=nobody", "--regid=nogroup"}
	if groups == "" {
		args = append(args, "--clear-groups")
	} else {
		args = append(args, "--groups="+groups)
	}
	cmd := execCommand(setpriv, append(args, "--", bin)...)
	cmd.Env = []string{"PROXYPOOL_CONTROL_CHILD=" + addr, "PROXYPOOL_CONTROL_CALLS=" + strings.Join(calls, ",")}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	res := map[string]childResult{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var r childResult
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("child output %q: %v", out, err)
		}
		res[r.Call] = r
	}
	if len(res) != len(calls) {
		t.Fatalf("child answered %d of %d calls: %s", len(res), len(calls), out)
	}
	return res
}

var readOnlyCalls = []string{"Status", "List", "Export", "TorStatus", "Counts", "Introspect"}

// TestSystemPolicy runs the shipped policy file in a system-like bus: root
// owns the name and may call everything; nobody may only read, and is
// stopped by the bus itself before the daemon sees the call.
func TestSystemPolicy(t *testing.T) {
	bus := dbustest.StartSystem(t, policyFile)
	if os.Getuid() != 0 {
		t.Skip("the shipped policy lets only root or proxypool own the name")
	}
	w := serve(t, bus, Options{AllowedGIDs: []uint32{}})
	ctx := ctxT(t)
	if _, _, err := w.cli.Add(ctx, "socks5://127.0.0.9:1080"); err != nil {
		t.Fatalf("root Add: %v", err)
	}
	if _, err := w.cli.Check(ctx, nil); err != nil {
		t.Fatalf("root Check: %v", err)
	}
	calls := append(slices.Clone(readOnlyCalls), MutatingMethods...)
	res := runAs(t, bus.Addr, "", append(calls, "Own")...)
	for _, c := range readOnlyCalls {
		if !res[c].OK {
			t.Errorf("nobody %s: %s", c, res[c].Err)
		}
	}
	for _, c := range MutatingMethods {
		r := res[c]
		if r.OK || !r.Denied || !strings.Contains(r.Detail, "Rejected send message") {
			t.Errorf("nobody %s: %+v, want denied by the bus policy", c, r)
		}
		if !strings.Contains(r.Err, "needs root or membership in group proxypool") {
			t.Errorf("nobody %s: message %q does not say what to do", c, r.Err)
		}
	}
	if res["Own"].OK {
		t.Error("nobody could own " + BusName)
	}
	if n := len(w.fake.recs); n != 1 {
		t.Errorf("store holds %d upstreams after nobody's calls, want 1", n)
	}
}

// TestUIDRecheck uses an allow-all bus, so only the daemon's own check
// stands between nobody and the mutating methods; membership in an allowed
// group opens them.
func TestUIDRecheck(t *testing.T) {
	bus := dbustest.StartSession(t)
	w := serve(t, bus, Options{AllowedGIDs: []uint32{4242}})
	res := runAs(t, bus.Addr, "", append([]string{"Status"}, MutatingMethods...)...)
	if !res["Status"].OK {
		t.Errorf("nobody Status: %s", res["Status"].Err)
	}
	for _, c := range MutatingMethods {
		r := res[c]
		if r.OK || !r.Denied || !strings.Contains(r.Detail, "permission denied for uid 65534") {
			t.Errorf("nobody %s: %+v, want denied by the daemon", c, r)
		}
	}
	if len(w.fake.recs) != 0 {
		t.Fatalf("nobody changed the store: %d upstreams", len(w.fake.recs))
	}
	res = runAs(t, bus.Addr, "4242", "Add", "Check")
	if !res["Add"].OK || !res["Check"].OK {
		t.Errorf("member of allowed gid 4242: %+v", res)
	}
}

// TestCallerReachesManager: every call's context tells the Manager who
// called, read-only calls included, so that it can keep credentials from
// the unprivileged: root and members of an allowed group are privileged,
// nobody is not.
func TestCallerReachesManager(t *testing.T) {
	bus := dbustest.StartSession(t)
	w := serve(t, bus, Options{AllowedGIDs: []uint32{4242}})
	if _, err := w.cli.List(ctxT(t), ListQuery{}); err != nil {
		t.Fatal(err)
	}
	runAs(t, bus.Addr, "", "List", "Export")
	runAs(t, bus.Addr, "4242", "List")
	w.fake.mu.Lock()
	got := slices.Clone(w.fake.callers)
	w.fake.mu.Unlock()
	want := []Caller{{UID: uint32(os.Getuid()), Privileged: true}, {UID: 65534}, {UID: 65534}, {UID: 65534, Privileged: true}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("callers %+v, want %+v", got, want)
	}
}
