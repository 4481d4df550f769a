package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/api/apitest"
	"github.com/proxypool/proxypool/internal/fleet"
)

// apiSecret is the e2e daemon's api.secret.
const apiSecret = "e2e-s3cret"

// apiDaemon is `proxypoold run` with its API on a free port of this
// package's block (127.86.0.0/16), no bus at all, a fleet as its source.
type apiDaemon struct {
	base, cfgPath, dir string
	fleetList          string // the fleet's list file, for import
	gw                 string // the gateway's main port
	fleet              *fleet.Fleet
	hc                 *http.Client
}

func startAPIDaemon(t *testing.T) *apiDaemon {
	t.Helper()
	return startAPIDaemonWith(t, []fleet.MemberSpec{
		{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: "US"},
		{Kind: fleet.HTTP, Behavior: fleet.Good, Country: "DE"},
	}, "")
}

// startAPIDaemonWith is startAPIDaemon over a fleet of members; extra
// follows api.secret in the config (more api keys, then top-level ones).
func startAPIDaemonWith(t *testing.T, members []fleet.MemberSpec, extra string) *apiDaemon {
	t.Helper()
	judge := fleet.StartJudgeT(t)
	f := fleet.StartT(t, fleet.Spec{Members: members})
	dir := t.TempDir()
	list, geo := f.WriteFilesT(t, dir)
	ports := freePorts(t, 2)
	apiAddr := freeAPIAddr(t)
	cfg := fleetConfig(dir, list, judge.URL, geo, fmt.Sprintf(`gateway:
  listen: 127.0.0.1:%d
metrics:
  listen: 127.0.0.1:%d
  gateway-listen: ""
api:
  listen: %s
  secret: %s
%s`, ports[0], ports[1], apiAddr, apiSecret, extra))
	d := &apiDaemon{base: "http://" + apiAddr, cfgPath: filepath.Join(dir, "proxypool.yaml"), dir: dir, fleetList: list,
		gw: fmt.Sprintf("127.0.0.1:%d", ports[0]), fleet: f,
		hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}}
	if err := os.WriteFile(d.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startDaemon(t, dir, d.cfgPath, noBusEnv(dir)...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := d.do(t, "GET", "/api/v1/status", apiSecret, "", "")
		if code == 200 {
			break
		}
		select {
		case err := <-p.exited:
			p.stopped = true
			t.Fatalf("proxypoold exited before its API answered: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("API at %s never answered", d.base)
		}
	}
	return d
}

// noBusEnv is a world without D-Bus: no session bus, a system bus address
// that leads nowhere.
func noBusEnv(dir string) []string {
	return []string{"DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + filepath.Join(dir, "no-system-bus")}
}

// freeAPIAddr finds a free port in 21000-21499 on 127.86.0.1: fixed
// ports below the ephemeral range, in this package's own block.
func freeAPIAddr(t *testing.T) string {
	t.Helper()
	for p := 21000 + os.Getpid()%400; p < 21500; p++ {
		addr := fmt.Sprintf("127.86.0.1:%d", p)
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port in 127.86.0.1:21000-21499")
	return ""
}

// do calls the API with secret ("" none); code 0 is no answer.
func (d *apiDaemon) do(t *testing.T, method, path, secret, ctype, body string) (int, []byte) {
	t.Helper()
	code, _, b := d.doH(t, method, path, secret, ctype, body)
	return code, b
}

func (d *apiDaemon) doH(t *testing.T, method, path, secret, ctype, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, d.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return 0, nil, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// TestAPIE2E drives every documented /api/v1 operation of the real
// daemon in `run` mode without D-Bus: first without the secret (each is
// refused), then with it, each answer checked against
// docs/api/openapi.yaml (status, content type, JSON types and required
// fields) and against what the operation should have done.
func TestAPIE2E(t *testing.T) {
	spec, err := apitest.Load("../../docs/api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := startAPIDaemon(t)
	fill := strings.NewReplacer("{id}", "x")
	for _, op := range spec.Operations() {
		meth, path, _ := strings.Cut(op, " ")
		for _, secret := range []string{"", "wrong"} {
			code, body := d.do(t, meth, fill.Replace(path), secret, "", "")
			if code != 401 || strings.TrimSpace(string(body)) != `{"message":"Unauthorized"}` {
				t.Errorf("%s with secret %q: %d %s, want 401 Unauthorized", op, secret, code, body)
			}
		}
	}
	for _, path := range []string{"/version", "/proxies", "/traffic"} { // the Clash paths too
		if code, _ := d.do(t, "GET", path, "", "", ""); code != 401 {
			t.Errorf("GET %s without the secret: %d, want 401", path, code)
		}
	}

	// A list the daemon fetches for {"url": …}.
	listBody, err := os.ReadFile(d.fleetList)
	if err != nil {
		t.Fatal(err)
	}
	lists := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(listBody) }))
	defer lists.Close()

	seen := map[string]bool{}
	call := func(op string, path, ctype, body string, want int) []byte {
		t.Helper()
		meth, _, _ := strings.Cut(op, " ")
		code, h, b := d.doH(t, meth, path, apiSecret, ctype, body)
		seen[op] = true
		if code != want {
			t.Errorf("%s %s: %d %s, want %d", meth, path, code, b, want)
			return b
		}
		if err := spec.Check(op, code, h.Get("Content-Type"), b); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		return b
	}
	var add struct{ ID string }
	json.Unmarshal(call("POST /api/v1/upstreams", "/api/v1/upstreams", "application/json", `{"uri":"socks5://ann:pw1@127.0.0.1:1"}`, 201), &add)
	call("POST /api/v1/upstreams", "/api/v1/upstreams", "application/json", `{"uri":"socks5://ann:pw1@127.0.0.1:1"}`, 200)
	if b := call("GET /api/v1/upstreams/{id}", "/api/v1/upstreams/"+add.ID, "", "", 200); !bytes.Contains(b, []byte(`"password":"pw1"`)) {
		t.Errorf("GET upstream with the secret: %s, want its password", b)
	}
	call("GET /api/v1/upstreams/{id}", "/api/v1/upstreams/nope", "", "", 404)
	var imp struct{ OK, New int }
	json.Unmarshal(call("POST /api/v1/import", "/api/v1/import", "text/plain", "socks5://127.0.0.1:2\nhttp://127.0.0.1:3\n", 200), &imp)
	if imp.OK != 2 || imp.New != 2 {
		t.Errorf("import of 2 lines: %+v", imp)
	}
	json.Unmarshal(call("POST /api/v1/import", "/api/v1/import", "application/json", fmt.Sprintf(`{"url":%q}`, lists.URL+"/list.txt"), 200), &imp)
	if imp.OK != 2 {
		t.Errorf("import of the fleet's list by URL: %+v, want its 2 upstreams", imp)
	}
	var job struct{ Job string }
	json.Unmarshal(call("POST /api/v1/refresh", "/api/v1/refresh", "", "", 202), &job)
	json.Unmarshal(call("POST /api/v1/check", "/api/v1/check", "application/json", `{}`, 202), &job)
	d.waitJob(t, job.Job)
	call("GET /api/v1/jobs/{id}", "/api/v1/jobs/"+job.Job, "", "", 200)
	if b := call("GET /api/v1/jobs/{id}/events", "/api/v1/jobs/"+job.Job+"/events", "", "", 200); !bytes.Contains(b, []byte(`"ended":true`)) {
		t.Errorf("events of an ended job: %q, want its last state", b)
	}
	d.eventsSeeJob(t, &seen)
	var page struct {
		Records []struct{ State string }
		Total   int
	}
	json.Unmarshal(call("GET /api/v1/upstreams", "/api/v1/upstreams?state=healthy&limit=1", "", "", 200), &page)
	if page.Total < 2 || len(page.Records) != 1 || page.Records[0].State != "healthy" {
		t.Errorf("list healthy, limit 1: %+v, want 1 of the fleet's 2+", page)
	}
	call("GET /api/v1/upstreams", "/api/v1/upstreams?min-score=x", "", "", 400)
	for _, f := range []string{"json", "txt", "clash"} {
		if b := call("GET /api/v1/export", "/api/v1/export?format="+f, "", "", 200); len(b) == 0 {
			t.Errorf("export %s is empty", f)
		}
	}
	call("GET /api/v1/status", "/api/v1/status", "", "", 200)
	call("GET /api/v1/counts", "/api/v1/counts", "", "", 200)
	call("GET /api/v1/version", "/api/v1/version", "", "", 200)
	call("GET /api/v1/groups", "/api/v1/groups", "", "", 200)
	if b := call("GET /api/v1/sources", "/api/v1/sources", "", "", 200); !bytes.Contains(b, []byte(`"name":"fleet"`)) {
		t.Errorf("sources: %s, want fleet", b)
	}
	// tor.enabled is false here: the tor operations say so, as documented.
	for _, op := range []string{"GET /api/v1/tor", "POST /api/v1/tor/newnym", "POST /api/v1/tor/generate"} {
		_, path, _ := strings.Cut(op, " ")
		if b := call(op, path, "", "", 500); !bytes.Contains(b, []byte("tor is not enabled")) {
			t.Errorf("%s: %s, want tor is not enabled", op, b)
		}
	}
	var rm struct{ Removed int }
	json.Unmarshal(call("DELETE /api/v1/upstreams/{id}", "/api/v1/upstreams/"+add.ID, "", "", 200), &rm)
	if rm.Removed != 1 {
		t.Errorf("remove: %+v", rm)
	}
	// a source's upstream removed is a tombstone, and restore brings it
	// back; naming nothing is refused
	listed := d.listedURI(t)
	json.Unmarshal(call("DELETE /api/v1/upstreams/{id}", "/api/v1/upstreams/"+url.PathEscape(listed), "", "", 200), &rm)
	var rs struct{ Restored int }
	json.Unmarshal(call("POST /api/v1/restore", "/api/v1/restore", "application/json", fmt.Sprintf(`{"ids":[%q]}`, listed), 200), &rs)
	if rs.Restored != 1 {
		t.Errorf("restore: %+v, want restored 1", rs)
	}
	if b := call("POST /api/v1/restore", "/api/v1/restore", "application/json", `{"ids":[]}`, 400); !bytes.Contains(b, []byte("ids:")) {
		t.Errorf("restore of nothing: %s", b)
	}
	for _, op := range spec.Operations() {
		if !seen[op] {
			t.Errorf("%s is documented but this test never called it", op)
		}
	}
}

// listedURI is the first upstream of the fleet's list: one a source
// lists, so removing it leaves a tombstone that restore undoes.
func (d *apiDaemon) listedURI(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(d.fleetList)
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(line)
}

// waitJob polls GET /api/v1/jobs/{id} until the job ends.
func (d *apiDaemon) waitJob(t *testing.T, id string) {
	t.Helper()
	for i := 0; i < 300; i++ {
		code, b := d.do(t, "GET", "/api/v1/jobs/"+id, apiSecret, "", "")
		var jb struct{ Ended, Complete bool }
		if code == 200 && json.Unmarshal(b, &jb) == nil && jb.Ended {
			if !jb.Complete {
				t.Errorf("job %s ended short: %s", id, b)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("job %s did not end within 30s", id)
}

// eventsSeeJob subscribes to GET /api/v1/events, starts a check and reads
// the stream until that job's last report.
func (d *apiDaemon) eventsSeeJob(t *testing.T, seen *map[string]bool) {
	t.Helper()
	(*seen)["GET /api/v1/events"] = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", d.base+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+apiSecret)
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("GET /api/v1/events: %d %s", resp.StatusCode, ct)
	}
	_, b := d.do(t, "POST", "/api/v1/check", apiSecret, "application/json", `{}`)
	var job struct{ Job string }
	json.Unmarshal(b, &job)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		var jb struct {
			ID    string
			Ended bool
		}
		if ok && json.Unmarshal([]byte(data), &jb) == nil && jb.ID == job.Job && jb.Ended {
			return
		}
	}
	t.Errorf("the event stream ended (%v) before job %s's last report", sc.Err(), job.Job)
}

// TestCtlOverAPI runs every proxypoolctl verb against `proxypoold run`
// with no D-Bus at all: the API address and secret come from the config
// (or --api and PROXYPOOL_API_SECRET), and the verbs answer as they do
// over the bus.
func TestCtlOverAPI(t *testing.T) {
	d := startAPIDaemon(t)
	bin := filepath.Join(t.TempDir(), "proxypoolctl")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/proxypool/proxypool/cmd/proxypoolctl").CombinedOutput(); err != nil {
		t.Fatalf("building proxypoolctl: %v\n%s", err, out)
	}
	listFile := filepath.Join(d.dir, "more.txt")
	if err := os.WriteFile(listFile, []byte("socks5://127.0.0.1:5\nnope://x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	listed := d.listedURI(t)
	env := append(noBusEnv(d.dir), "PROXYPOOL_CONFIG="+d.cfgPath, "PATH="+os.Getenv("PATH"), "HOME="+d.dir)
	tests := []struct {
		name     string
		args     []string
		env      []string
		wantCode int
		wantOut  string // in stdout+stderr
	}{
		{"add", []string{"add", "socks5://127.0.0.1:4"}, nil, 0, "added"},
		{"add again", []string{"add", "socks5://127.0.0.1:4"}, nil, 0, ""},
		{"import", []string{"import", listFile}, nil, 0, "1 ok (1 new), 1 failed"},
		{"refresh --wait", []string{"refresh", "--wait"}, nil, 0, ""},
		{"check --wait", []string{"--json", "check", "--wait"}, nil, 0, `"complete": true`},
		{"list", []string{"list", "--state", "healthy"}, nil, 0, "healthy"},
		{"status", []string{"status"}, nil, 0, "healthy"},
		{"--user without a session bus", []string{"--user", "status"}, nil, 0, "healthy"},
		{"export", []string{"export", "--format", "txt"}, nil, 0, ":"},
		{"remove", []string{"remove", "socks5://127.0.0.1:4"}, nil, 0, "removed"},
		{"remove unknown", []string{"remove", "socks5://127.0.0.1:4"}, nil, 5, "no upstream"},
		{"remove a listed one", []string{"remove", listed}, nil, 0, "stays removed"},
		{"restore", []string{"restore", listed}, nil, 0, "restored 1 of 1"},
		{"restore again", []string{"restore", listed}, nil, 5, "no removed or retired upstream"},
		{"tor status", []string{"tor", "status"}, nil, 1, "tor is not enabled"},
		{"parse", []string{"parse", listFile}, nil, 0, "127.0.0.1"},
		{"--api and the env secret", []string{"--api", d.base, "status"}, []string{"PROXYPOOL_CONFIG=/nonexistent", "PROXYPOOL_API_SECRET=" + apiSecret}, 0, "healthy"},
		{"wrong secret", []string{"--api", d.base, "--api-secret", "nope", "status"}, nil, 4, "refused the secret"},
		{"nothing there", []string{"--api", "http://127.86.0.1:21499", "status"}, nil, 3, "not answering"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tt.args...)
			cmd.Env = append(append([]string{}, env...), tt.env...)
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tt.wantCode || !strings.Contains(string(out), tt.wantOut) {
				t.Errorf("proxypoolctl %s: exit %d\n%s\nwant exit %d and %q", strings.Join(tt.args, " "), code, out, tt.wantCode, tt.wantOut)
			}
			if strings.Contains(string(out), "dbus-launch") {
				t.Errorf("proxypoolctl %s talks of dbus-launch:\n%s", strings.Join(tt.args, " "), out)
			}
		})
	}
}

// TestProbeServesAPIFromSocket: under systemd the probe serves the API on
// the socket proxy-api.socket passes (FileDescriptorName=api), whatever
// address api.listen names, so the unit's address wins and a restart
// refuses no client. Run the way systemd starts it: fd 3, LISTEN_PID its
// own pid.
func TestProbeServesAPIFromSocket(t *testing.T) {
	dir := t.TempDir()
	passed, err := net.Listen("tcp", freeAPIAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	f, err := passed.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	passedAddr := passed.Addr().String()
	passed.Close()
	unused := strings.Replace(freeAPIAddr(t), "127.86.0.1", "127.86.0.2", 1)
	cfgPath := filepath.Join(dir, "proxypool.yaml")
	cfg := fmt.Sprintf("database: %s\nsources: []\nprobe: {judges: [\"http://127.86.0.9:1/get\"], geoip: \"\", geoip6: \"\", uplink-check: false}\nmetrics: {enabled: false}\napi: {listen: %q, secret: %s}\nlog: {level: info, format: text}\n",
		filepath.Join(dir, "pp.db"), unused, apiSecret)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, os.Args[0], "-test.run=^TestTorE2EHelper$", "-test.count=1")
	cmd.Env = append(noBusEnv(dir), "PATH="+os.Getenv("PATH"), helperEnv+"=1", helperArgsEnv+"=--config\n"+cfgPath+"\nprobe",
		"LISTEN_FDS=1", "LISTEN_FDNAMES="+apiSocket)
	cmd.ExtraFiles = []*os.File{f}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	err = cmd.Start()
	f.Close() // the child holds its own copy: a socket it does not serve must refuse, not queue
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	d := &apiDaemon{base: "http://" + passedAddr, hc: &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}}
	var code int
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && code != 200; {
		if code, _ = d.do(t, "GET", "/api/v1/counts", apiSecret, "", ""); code != 200 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if code != 200 {
		t.Fatalf("the probe did not answer on the passed socket %s (last %d); log:\n%s", passedAddr, code, log.String())
	}
	if code, _ := d.do(t, "GET", "/api/v1/counts", "", "", ""); code != 401 {
		t.Errorf("without the secret: %d, want 401", code)
	}
	// the Clash controller is mounted here too; a pin would hold in this
	// process only (the gateway is proxy-gateway.service), so it is
	// refused with the reason
	if code, b := d.do(t, "GET", "/proxies/GLOBAL", apiSecret, "", ""); code != 200 || !bytes.Contains(b, []byte(`"127.0.0.1:8000"`)) {
		t.Errorf("GET /proxies/GLOBAL from the probe: %d %s, want 200 listing the main port", code, b)
	}
	if code, b := d.do(t, "PUT", "/proxies/"+url.PathEscape("127.0.0.1:8000"), apiSecret, "application/json", `{"name":"x"}`); code != 503 || !bytes.Contains(b, []byte("proxypoold run")) {
		t.Errorf("PUT /proxies/{main port} from the probe: %d %s, want 503 saying pins apply under proxypoold run", code, b)
	}
	if c, err := net.DialTimeout("tcp", unused, time.Second); err == nil {
		c.Close()
		t.Errorf("the probe also listens on api.listen %s; it should take the passed socket only", unused)
	}
}
