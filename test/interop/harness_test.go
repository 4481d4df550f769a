// Package interop proves every upstream kind end to end against servers
// nobody here wrote: each kind starts an independent implementation on its
// own loopback address, hands back the subscription line a public list
// would carry, and the real proxypoold/proxypoolctl binaries must parse it,
// probe it healthy with the right exit and carry a 5 MiB download through a
// pinned gateway port over SOCKS5 and HTTP CONNECT.
package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/testtool"
)

// Bounds: generous enough for a loaded 2-core machine, short enough that a
// hang fails the level well inside its five minutes.
const (
	readyTimeout    = 20 * time.Second // one server binding its port
	probeTimeout    = 120 * time.Second
	downloadTimeout = 90 * time.Second // one 5 MiB transfer
	downloadSize    = 5 << 20
	ipPool          = 250 // addresses the certificate names and IP() hands out
)

// Kind is one upstream kind to prove end to end.
type Kind struct {
	Name string // unique, e.g. "vless-reality-vision"
	Impl string // server implementation and version
	Form string // how the link is written
	// Setup starts the independent server(s) for this kind inside e and
	// returns the subscription line exactly as a public subscription writes
	// it and the exit IP the judge must see (the IP() the server sends from).
	Setup func(t testing.TB, e *Env) (line string, exitIP string)
}

var (
	kindsMu sync.Mutex
	kinds   []Kind
)

// register adds kinds; each file calls it from init().
func register(k ...Kind) {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	kinds = append(kinds, k...)
}

// strict reports whether a missing tool must fail rather than skip.
func strict() bool {
	return os.Getenv("CI") == "true" || os.Getenv("PROXYPOOL_INTEROP") == "1"
}

// Env is one interop world: loopback addresses, ports, a CA and cert,
// scratch dir, processes.
type Env struct {
	dir    string
	net    [2]byte // first two octets of the address block, 127.N
	ips    []string
	target string

	mu       sync.Mutex
	nextIP   int
	nextPort int
	portMax  int
	certPEM  string
	keyPEM   string
	procs    map[testing.TB][]*proc
	all      []*proc
	closing  bool
	ctx      context.Context
	cancel   context.CancelFunc
	atClose  []func()
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// newEnv makes a world in t.TempDir(): the address block and port range
// come from PROXYPOOL_INTEROP_NET ("127.61") and PROXYPOOL_INTEROP_PORTS
// ("21000-21999") so that several runs on one machine never collide.
func newEnv(t *testing.T) *Env {
	t.Helper()
	e := &Env{dir: t.TempDir(), procs: map[testing.TB][]*proc{}}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	block := envOr("PROXYPOOL_INTEROP_NET", "127.61")
	var a, b int
	if _, err := fmt.Sscanf(block, "%d.%d", &a, &b); err != nil || a != 127 || b < 0 || b > 255 {
		t.Fatalf("PROXYPOOL_INTEROP_NET=%q: want 127.N", block)
	}
	e.net = [2]byte{byte(a), byte(b)}
	// Servers that drop privileges (squid, tinyproxy, dante's children)
	// read their configs from here.
	for _, d := range []string{e.dir, filepath.Dir(e.dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < ipPool; i++ {
		e.ips = append(e.ips, fmt.Sprintf("127.%d.%d.%d", b, i/250, i%250+2))
	}
	ports := envOr("PROXYPOOL_INTEROP_PORTS", "21000-21999")
	if _, err := fmt.Sscanf(ports, "%d-%d", &e.nextPort, &e.portMax); err != nil || e.nextPort < 1024 || e.portMax >= 32768 || e.nextPort > e.portMax {
		t.Fatalf("PROXYPOOL_INTEROP_PORTS=%q: want LO-HI inside 1024-32767", ports)
	}
	t.Cleanup(e.close)
	e.startTarget(t)
	return e
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// IP returns a fresh 127.x.y.z, one per server: it listens there and sends
// its outbound traffic from it, so the judge sees it as the exit.
func (e *Env) IP() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.nextIP >= len(e.ips) {
		panic("interop: address pool exhausted")
	}
	ip := e.ips[e.nextIP]
	e.nextIP++
	return ip
}

// Port returns a port of the world's range that is free for TCP and UDP on
// every address (bound on the wildcard), so a server may use it for both.
func (e *Env) Port() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	for ; e.nextPort <= e.portMax; e.nextPort++ {
		p := e.nextPort
		tl, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", p))
		if err != nil {
			continue
		}
		ul, err := net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", p))
		tl.Close()
		if err != nil {
			continue
		}
		ul.Close()
		e.nextPort++
		return p
	}
	panic("interop: port range exhausted")
}

// Dir is the world's scratch directory.
func (e *Env) Dir() string { return e.dir }

// Target is "127.0.0.1:PORT" of the download origin: /5m serves 5 MiB of
// deterministic bytes, /sha their sha256 in hex.
func (e *Env) Target() string { return e.target }

// Cert returns the paths of a self-signed certificate and its key made at
// test time; its SANs are DNS "interop.test", 127.0.0.1 and every address
// IP() can hand out.
func (e *Env) Cert() (certPEM, keyPEM string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.certPEM != "" {
		return e.certPEM, e.keyPEM
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("interop: generating a key: %v", err))
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "interop.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"interop.test"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	for _, ip := range e.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(fmt.Sprintf("interop: self-signing: %v", err))
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(fmt.Sprintf("interop: encoding the key: %v", err))
	}
	c, k := filepath.Join(e.dir, "cert.pem"), filepath.Join(e.dir, "key.pem")
	// 0644: servers that drop privileges (squid, tinyproxy) read them too.
	if err := os.WriteFile(c, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		panic(err)
	}
	if err := os.WriteFile(k, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o644); err != nil {
		panic(err)
	}
	e.certPEM, e.keyPEM = c, k
	return c, k
}

// Bin returns the absolute path of a server binary: PATH (plus the sbin
// directories, where Debian puts daemons), then $PROXYPOOL_TOOLS_DIR/bin.
// Missing, it fails under CI=true or PROXYPOOL_INTEROP=1 and skips otherwise.
func (e *Env) Bin(t testing.TB, name string) string {
	t.Helper()
	if p, err := lookBin(name); err == nil {
		return p
	}
	tools := envOr("PROXYPOOL_TOOLS_DIR", "/var/cache/proxypool-tools")
	if strict() {
		t.Fatalf("%s not found in PATH, /usr/sbin or %s/bin: install it (scripts/deps.sh, scripts/interop-tools.sh)", name, tools)
	}
	t.Skipf("%s not installed (PATH, /usr/sbin, %s/bin)", name, tools)
	return ""
}

func lookBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	tools := envOr("PROXYPOOL_TOOLS_DIR", "/var/cache/proxypool-tools")
	for _, d := range []string{"/usr/sbin", "/sbin", filepath.Join(tools, "bin")} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found", name)
}

// Start starts a process that lives until the world ends. ready is
// "tcp:IP:PORT" or "udp:IP:PORT" (it waits, at most 20 s, until that port
// is bound) or "" (no wait). Its output goes to a log in Dir(), printed when
// the kind that started it fails.
func (e *Env) Start(t testing.TB, name string, argv []string, ready string) {
	t.Helper()
	if len(argv) == 0 {
		t.Fatalf("starting %s: empty argv", name)
	}
	e.mu.Lock()
	logPath := filepath.Join(e.dir, fmt.Sprintf("%s-%d.log", sanitize(name), len(e.all)))
	e.mu.Unlock()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = e.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// The servers die with the test binary even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting %s (%s): %v", name, strings.Join(argv, " "), err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); logf.Close(); close(p.done) }()
	e.mu.Lock()
	e.procs[t] = append(e.procs[t], p)
	e.all = append(e.all, p)
	e.mu.Unlock()
	if ready == "" {
		return
	}
	proto, addr, ok := strings.Cut(ready, ":")
	if !ok || (proto != "tcp" && proto != "udp") {
		t.Fatalf("starting %s: ready %q: want tcp:IP:PORT, udp:IP:PORT or \"\"", name, ready)
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		bound, err := portBound(proto, addr)
		if err != nil {
			t.Fatalf("starting %s: checking %s: %v", name, ready, err)
		}
		if bound {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before binding %s: %v\n%s", name, ready, p.err, tailFile(logPath, 40))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not bind %s within %v\n%s", name, ready, readyTimeout, tailFile(logPath, 40))
		}
	}
}

// portBound reads /proc/net/{tcp,udp}: a listening TCP socket or any UDP
// socket on addr. Reading the table, rather than connecting, leaves the
// server's first connection to the test.
func portBound(proto, addr string) (bool, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false, err
	}
	ip := net.ParseIP(host).To4()
	pn, err := strconv.Atoi(port)
	if ip == nil || err != nil {
		return false, fmt.Errorf("%q: want IPv4:PORT", addr)
	}
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], pn)
	wild := fmt.Sprintf("00000000:%04X", pn)
	f, err := os.Open("/proc/net/" + proto)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 4 || (fs[1] != want && fs[1] != wild) {
			continue
		}
		if proto == "udp" || fs[3] == "0A" { // 0A: TCP_LISTEN
			return true, nil
		}
	}
	return false, sc.Err()
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logsOf prints the output of every process t started.
func (e *Env) logsOf(t testing.TB) string {
	e.mu.Lock()
	ps := append([]*proc(nil), e.procs[t]...)
	e.mu.Unlock()
	var b strings.Builder
	for _, p := range ps {
		state := "running"
		select {
		case <-p.done:
			state = fmt.Sprintf("exited: %v", p.err)
		default:
		}
		fmt.Fprintf(&b, "--- %s (%s), %s:\n%s\n", p.name, state, p.log, tailFile(p.log, 30))
	}
	return b.String()
}

// onClose runs f when the world ends, after its processes stopped.
func (e *Env) onClose(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.atClose = append(e.atClose, f)
}

func (e *Env) close() {
	e.cancel()
	e.mu.Lock()
	ps := append([]*proc(nil), e.all...)
	fs := e.atClose
	e.mu.Unlock()
	defer func() {
		for _, f := range fs {
			f()
		}
	}()
	for _, p := range ps {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
}

// startTarget serves the download origin: 5 MiB from a fixed-seed
// generator, so a truncated or altered transfer shows as a wrong sha256.
func (e *Env) startTarget(t *testing.T) {
	t.Helper()
	data := make([]byte, downloadSize)
	rng := mrand.NewChaCha8([32]byte{'p', 'r', 'o', 'x', 'y', 'p', 'o', 'o', 'l'})
	rng.Read(data)
	sum := sha256.Sum256(data)
	mux := http.NewServeMux()
	mux.HandleFunc("/5m", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "5m", time.Time{}, bytes.NewReader(data))
	})
	mux.HandleFunc("/sha", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, hex.EncodeToString(sum[:])) })
	addr := fmt.Sprintf("127.0.0.1:%d", e.Port())
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("download origin: %v", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e.target = addr
}

// kindResult is one row of the final table.
type kindResult struct {
	Kind
	line, exitIP string
	id           string
	port         int
	skipped      string // why setup skipped
	parse        string
	healthy      string
	exit         string
	socks5       string
	connect      string
	cause        []string
}

// parseRecord is one line of `proxypoolctl parse --json`.
type parseRecord struct {
	Line    int    `json:"line"`
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped"`
	ID      string `json:"id"`
	Type    string `json:"type"`
	Error   string `json:"error"`
}

// listRecord is the part of `proxypoolctl list --json` the harness asserts.
type listRecord struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	State     string `json:"state"`
	ExitIP    string `json:"exit_ip"`
	Anonymity string `json:"anonymity"`
	Untrusted bool   `json:"untrusted"`
	Checks    int    `json:"checks"`
	LastError string `json:"last_error"`
}

// TestInterop is the level: every registered kind at once through one real
// proxypoold run.
func TestInterop(t *testing.T) {
	if !strict() {
		t.Skip("interop level: set PROXYPOOL_INTEROP=1 (needs the servers scripts/deps.sh installs)")
	}
	started := time.Now()
	bins := buildBinaries(t)
	curl := mustBin(t, "curl")
	e := newEnv(t)
	judge, err := fleet.StartJudge(e.ctx, fmt.Sprintf("127.0.0.1:%d", e.Port()))
	if err != nil {
		t.Fatal(err)
	}

	kindsMu.Lock()
	all := append([]Kind(nil), kinds...)
	kindsMu.Unlock()
	if len(all) == 0 {
		t.Fatal("no kinds registered")
	}
	results := make([]*kindResult, len(all))
	seen := map[string]bool{}
	for i, k := range all {
		if seen[k.Name] {
			t.Fatalf("kind %q registered twice", k.Name)
		}
		seen[k.Name] = true
		results[i] = &kindResult{Kind: k, parse: "-", healthy: "-", exit: "-", socks5: "-", connect: "-"}
	}
	defer func() { printTable(t, results, time.Since(started)) }()

	// 1. Setup: every kind starts its servers (in parallel: most of the
	// time is servers starting up).
	t.Run("setup", func(t *testing.T) {
		for _, r := range results {
			t.Run(r.Name, func(t *testing.T) {
				t.Parallel()
				r.skipped = "setup failed"
				t.Cleanup(func() {
					switch {
					case t.Skipped():
						r.skipped = "skipped: a server binary is missing"
					case t.Failed():
						r.cause = append(r.cause, "setup failed (see its subtest)")
						t.Logf("server output:\n%s", e.logsOf(t))
					}
				})
				r.line, r.exitIP = r.Setup(t, e)
				if r.line == "" {
					t.Fatalf("setup returned no line")
				}
				// The exit must tell this server apart from the daemon's
				// own address, or the exit check proves nothing.
				if ip := net.ParseIP(r.exitIP); ip == nil || ip.Equal(net.IPv4(127, 0, 0, 1)) {
					t.Fatalf("setup returned exit %q: want the server's own IP()", r.exitIP)
				}
				r.skipped = ""
			})
		}
	})
	for _, r := range results {
		if r.skipped != "" {
			r.parse = "skip"
		}
	}

	// 2. Parse: each line in its own file source, so that a Clash YAML
	// document stays whole and one bad line names one kind.
	var sources strings.Builder
	var ports strings.Builder
	for i, r := range results {
		if r.skipped != "" {
			continue
		}
		path := filepath.Join(e.Dir(), fmt.Sprintf("source-%02d.txt", i))
		if err := os.WriteFile(path, []byte(r.line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		recs, err := parseFile(e.ctx, bins, path)
		switch {
		case err != nil:
			r.parse, r.cause = "FAIL", append(r.cause, "parse: "+err.Error())
		case len(recs) != 1 || !recs[0].OK:
			r.parse = "FAIL"
			r.cause = append(r.cause, fmt.Sprintf("parse: want one ok record, got %+v", recs))
		case recs[0].ID == "":
			r.parse, r.cause = "FAIL", append(r.cause, "parse: ok record without an id")
		default:
			r.parse, r.id = "ok", recs[0].ID
			r.port = e.Port()
			fmt.Fprintf(&sources, "  - {name: k%02d, url: \"file://%s\", format: auto}\n", i, path)
			fmt.Fprintf(&ports, "    - {listen: \"127.0.0.1:%d\", upstream: %s}\n", r.port, r.id)
		}
	}
	if sources.Len() == 0 {
		t.Fatal("no kind got past parse")
	}

	// 3. The real daemon: refresh reads the sources, the probe checks each
	// upstream against the judge, one pinned gateway port per upstream.
	db := filepath.Join(e.Dir(), "pp.db")
	cfg := fmt.Sprintf(`database: %s
sources:
%sprobe:
  judges: [%s/get]
  timeout: 10s
  interval: 10m
  failing-interval: 2s
  max-failures: 100
  real-ip: 127.0.0.1
  geoip: ""
  geoip6: ""
  uplink-check: false
gateway:
  listen: 127.0.0.1:%d
  dial-timeout: 10s
  client-timeout: 15s
  total-timeout: 30s
  ports:
%smetrics:
  listen: 127.0.0.1:%d
  gateway-listen: ""
slo: {min-healthy: 0}
log: {level: info, format: text}
`, db, sources.String(), judge.URL, e.Port(), ports.String(), e.Port())
	cfgPath := filepath.Join(e.Dir(), "proxypool.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	daemon := startDaemon(t, e, bins, cfgPath)

	// 4. One probe pass: wait until each upstream is healthy or has been
	// checked twice (a slow first handshake on a loaded machine gets a
	// second chance 2 s later, a broken kind does not hold the level).
	recs := waitProbed(t, e, bins, db, results, daemon)

	// 5. Per kind: what a user would notice.
	for _, r := range results {
		t.Run(r.Name, func(t *testing.T) {
			defer func() {
				if t.Failed() {
					for _, c := range r.cause {
						t.Log(c)
					}
				}
			}()
			if r.skipped != "" {
				if strict() {
					t.Fatalf("setup: %s", r.skipped)
				}
				t.Skipf("setup: %s", r.skipped)
			}
			t.Logf("line: %s", r.line)
			if r.parse != "ok" {
				t.Fatalf("proxypoolctl parse did not read the line")
			}
			rec, ok := recs[r.id]
			if !ok {
				r.healthy = "FAIL"
				r.cause = append(r.cause, "list: upstream "+r.id+" not in the store (refresh did not load it)")
				t.FailNow()
			}
			if rec.State != "healthy" || rec.Untrusted || rec.Anonymity == "transparent" {
				r.healthy = "FAIL"
				r.cause = append(r.cause, fmt.Sprintf("probe: state %s after %d checks, anonymity %q, untrusted %v, cause %q",
					rec.State, rec.Checks, rec.Anonymity, rec.Untrusted, rec.LastError))
				t.Fail()
			} else {
				r.healthy = "ok"
			}
			switch {
			case rec.ExitIP == r.exitIP:
				r.exit = "ok"
			case rec.ExitIP == "":
				r.exit = "-"
			default:
				r.exit = "FAIL"
				r.cause = append(r.cause, fmt.Sprintf("exit: judge saw %s, want %s", rec.ExitIP, r.exitIP))
				t.Fail()
			}
			want := fetchSHA(t, e)
			for _, via := range []struct {
				name string
				res  *string
				args []string
			}{
				{"socks5", &r.socks5, []string{"-x", fmt.Sprintf("socks5h://127.0.0.1:%d", r.port)}},
				{"connect", &r.connect, []string{"-p", "-x", fmt.Sprintf("http://127.0.0.1:%d", r.port)}},
			} {
				got, err := download(e.ctx, curl, e.Dir(), r.Name+"-"+via.name, via.args, "http://"+e.Target()+"/5m")
				switch {
				case err != nil:
					*via.res = "FAIL"
					r.cause = append(r.cause, fmt.Sprintf("%s: %v", via.name, err))
					t.Fail()
				case got != want:
					*via.res = "FAIL"
					r.cause = append(r.cause, fmt.Sprintf("%s: sha256 %s, want %s", via.name, got, want))
					t.Fail()
				default:
					*via.res = "ok"
				}
			}
			if t.Failed() {
				t.Logf("server output:\n%s", e.logsOfKind(r.Name))
			}
		})
	}
	daemon.stop(t)
}

// logsOfKind prints the output of the processes the setup of kind started.
func (e *Env) logsOfKind(name string) string {
	e.mu.Lock()
	var key testing.TB
	for tb := range e.procs {
		if strings.HasSuffix(tb.Name(), "/setup/"+sanitizeTestName(name)) {
			key = tb
		}
	}
	e.mu.Unlock()
	if key == nil {
		return "(no processes)"
	}
	return e.logsOf(key)
}

// sanitizeTestName is how the testing package rewrites a subtest name.
func sanitizeTestName(s string) string { return strings.ReplaceAll(s, " ", "_") }

func mustBin(t *testing.T, name string) string {
	t.Helper()
	p, err := lookBin(name)
	if err != nil {
		t.Fatalf("%s is needed by the interop level: %v", name, err)
	}
	return p
}

// binaries are the programs under test.
type binaries struct{ daemon, ctl string }

// buildBinaries builds proxypoold and proxypoolctl from this tree into a
// temp dir, or takes them from $PROXYPOOL_BIN_DIR.
func buildBinaries(t *testing.T) binaries {
	t.Helper()
	if d := os.Getenv("PROXYPOOL_BIN_DIR"); d != "" {
		b := binaries{filepath.Join(d, "proxypoold"), filepath.Join(d, "proxypoolctl")}
		for _, p := range []string{b.daemon, b.ctl} {
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("PROXYPOOL_BIN_DIR: %v", err)
			}
		}
		return b
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out+"/", "./cmd/proxypoold", "./cmd/proxypoolctl")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building proxypoold, proxypoolctl: %v\n%s", err, b)
	}
	return binaries{filepath.Join(out, "proxypoold"), filepath.Join(out, "proxypoolctl")}
}

func parseFile(ctx context.Context, b binaries, path string) ([]parseRecord, error) {
	all, err := ctlJSON[parseRecord](ctx, b, "parse", "--json", path)
	if err != nil {
		return nil, err
	}
	var recs []parseRecord
	for _, r := range all {
		if r.Error != "" {
			return nil, fmt.Errorf("line %d: %s", r.Line, r.Error)
		}
		if !r.Skipped {
			recs = append(recs, r)
		}
	}
	return recs, nil
}

// ctlJSON runs proxypoolctl with args (within 30 s, off the session bus)
// and decodes the JSON records it prints, one a line.
func ctlJSON[T any](ctx context.Context, b binaries, args ...string) ([]T, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, b.ctl, args...)
	cmd.Env = testtool.WithoutBus(os.Environ())
	cmd.Stderr = &stderr
	what := "proxypoolctl " + strings.Join(args, " ")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %v: %s", what, err, strings.TrimSpace(stderr.String()))
	}
	var recs []T
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var r T
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			return recs, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %v in %q", what, err, out[:min(len(out), 300)])
		}
		recs = append(recs, r)
	}
}

type daemonProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startDaemon(t *testing.T, e *Env, b binaries, cfgPath string) *daemonProc {
	t.Helper()
	d := &daemonProc{log: filepath.Join(e.Dir(), "proxypoold.log"), done: make(chan struct{})}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(b.daemon, "--config", cfgPath, "run")
	d.cmd.Dir = e.Dir()
	d.cmd.Env = testtool.WithoutBus(os.Environ())
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting proxypoold run: %v", err)
	}
	go func() { d.err = d.cmd.Wait(); logf.Close(); close(d.done) }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("proxypoold log (warnings, errors and the last lines):\n%s", daemonLog(d.log))
		}
	})
	return d
}

// daemonLog keeps what explains a failure out of a log that is mostly one
// "listening" line per pinned port: warnings, errors and the tail.
func daemonLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	var keep []string
	for i, l := range lines {
		if i >= len(lines)-15 || strings.Contains(l, "level=warn") || strings.Contains(l, "level=error") || strings.Contains(l, "level=fatal") || strings.Contains(l, "panic") {
			keep = append(keep, l)
		}
	}
	if len(keep) > 120 {
		keep = keep[len(keep)-120:]
	}
	return strings.Join(keep, "\n")
}

// stop sends SIGTERM: the daemon must exit 0 within 20 s.
func (d *daemonProc) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		if d.err != nil {
			t.Errorf("proxypoold run after SIGTERM: %v", d.err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("proxypoold run did not stop within 20s of SIGTERM")
	}
}

// waitProbed polls `proxypoolctl --db DB list --json` until every parsed
// upstream is healthy or was checked twice, and returns the records by id.
func waitProbed(t *testing.T, e *Env, b binaries, db string, results []*kindResult, d *daemonProc) map[string]listRecord {
	t.Helper()
	deadline := time.Now().Add(probeTimeout)
	var recs map[string]listRecord
	var lastErr error
	for {
		recs, lastErr = list(e.ctx, b, db)
		if lastErr == nil {
			done := true
			for _, r := range results {
				if r.id == "" {
					continue
				}
				rec, ok := recs[r.id]
				if !ok || (rec.State != "healthy" && rec.Checks < 2) {
					done = false
				}
			}
			if done {
				return recs
			}
		}
		select {
		case <-d.done:
			t.Fatalf("proxypoold run exited early: %v\n%s", d.err, tailFile(d.log, 60))
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Logf("probe pass not complete within %v (last list error: %v); asserting what the store holds", probeTimeout, lastErr)
			return recs
		}
	}
}

func list(ctx context.Context, b binaries, db string) (map[string]listRecord, error) {
	if _, err := os.Stat(db); err != nil {
		return nil, err
	}
	all, err := ctlJSON[listRecord](ctx, b, "--db", db, "list", "--json")
	if err != nil {
		return nil, err
	}
	recs := map[string]listRecord{}
	for _, r := range all {
		recs[r.ID] = r
	}
	return recs, nil
}

func fetchSHA(t *testing.T, e *Env) string {
	t.Helper()
	resp, err := http.Get("http://" + e.Target() + "/sha")
	if err != nil {
		t.Fatalf("origin /sha: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// download runs curl with its defaults plus the proxy arguments and returns
// the sha256 of what arrived; the error carries curl's own message.
func download(ctx context.Context, curl, dir, name string, proxyArgs []string, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, downloadTimeout+10*time.Second)
	defer cancel()
	out := filepath.Join(dir, "download-"+sanitize(name))
	defer os.Remove(out)
	args := append([]string{"-sS", "--fail", "--max-time", strconv.Itoa(int(downloadTimeout / time.Second)), "-o", out}, proxyArgs...)
	args = append(args, url)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, curl, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("curl %s: %v: %s", strings.Join(proxyArgs, " "), err, strings.TrimSpace(stderr.String()))
	}
	f, err := os.Open(out)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", err
	}
	if n != downloadSize {
		return "", fmt.Errorf("curl %s: %d bytes arrived, want %d", strings.Join(proxyArgs, " "), n, downloadSize)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func printTable(t *testing.T, results []*kindResult, took time.Duration) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "kind\t| impl\t| form\t| parse\t| healthy\t| exit\t| socks5\t| connect")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\n", r.Name, r.Impl, r.Form, r.parse, r.healthy, r.exit, r.socks5, r.connect)
	}
	tw.Flush()
	for _, r := range results {
		for _, c := range r.cause {
			fmt.Fprintf(&b, "%s: %s\n", r.Name, c)
		}
	}
	t.Logf("interop level: %d kinds in %v\n%s", len(results), took.Round(time.Second), b.String())
}
