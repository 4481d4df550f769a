package tornet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvFlag enables the heavy tests that start a network.
const EnvFlag = "PROXYPOOL_TORNET"

// Exit is one exit relay of the network.
type Exit struct {
	Name        string `json:"name"` // exit1…exit4
	Nickname    string `json:"nickname"`
	Address     string `json:"address"` // advertised, in 127.0.N.0/24
	Country     string `json:"country"` // in the private GeoIP file
	Fingerprint string `json:"fingerprint"`
}

type relay struct {
	name, role, nick string
	addr, country    string
	fp, v3ident      string
	dir              string
	cmd              *exec.Cmd
	done             chan struct{}
}

// Network is a running private Tor network.
type Network struct {
	Dir       string
	Subnet    string        // "127.0.N"
	ORPort    int           // every relay's ORPort (each on its own address)
	DirPort   int           // authorities' DirPort
	CtlPort   int           // auth1's control port (cookie auth, GeoIP loaded)
	Bootstrap time.Duration // from key generation to "every exit holds the consensus"
	Shim      bool          // LD_PRELOAD bind shim in use (else /proc lookup)

	relays []*relay
	target *http.Server
	tgtLn  net.Listener
	logf   func(string, ...any)
	closed sync.Once
}

// Available reports why a network cannot start here ("" if it can).
func Available() string {
	for _, b := range []string{"tor", "tor-gencert"} {
		if _, err := exec.LookPath(b); err != nil {
			return b + " not installed (apt-get install -y tor)"
		}
	}
	return ""
}

// StartT starts a network for a test and stops it at cleanup. It skips the
// test when tor is missing or PROXYPOOL_TORNET is not 1.
func StartT(t testing.TB) *Network {
	t.Helper()
	if os.Getenv(EnvFlag) != "1" {
		t.Skipf("private Tor network test: set %s=1 (make test does) to run it", EnvFlag)
	}
	if why := Available(); why != "" {
		t.Skipf("private Tor network test: %s", why)
	}
	dir, err := os.MkdirTemp("", "tornet-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n, err := Start(ctx, dir, t.Logf)
	if err != nil {
		if n != nil {
			t.Log(n.Logs(20))
			n.Close()
		}
		os.RemoveAll(dir)
		t.Fatalf("starting private tor network: %v", err)
	}
	t.Cleanup(func() {
		n.Close()
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("tornet: kept %s for inspection", dir)
		}
	})
	t.Logf("tornet: ready in %v (subnet %s.0/24, shim %v)", n.Bootstrap.Round(100*time.Millisecond), n.Subnet, n.Shim)
	return n
}

// Start builds the network in dir (which must exist), starts it and waits
// until clients can use it. logf may be nil. On error the returned network
// (if non-nil) must still be closed.
func Start(ctx context.Context, dir string, logf func(string, ...any)) (*Network, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	began := time.Now()
	n := &Network{Dir: dir, logf: logf}
	if err := n.pickAddresses(); err != nil {
		return nil, err
	}
	names := []struct{ name, role, country string }{
		{"auth1", "auth", "SE"}, {"auth2", "auth", "SE"}, {"auth3", "auth", "SE"},
		{"middle1", "middle", "SE"}, {"middle2", "middle", "SE"},
		{"exit1", "exit", "US"}, {"exit2", "exit", "US"}, {"exit3", "exit", "DE"}, {"exit4", "exit", "NL"},
	}
	tag := filepath.Base(dir)
	tag = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, tag)
	if len(tag) > 6 {
		tag = tag[len(tag)-6:]
	}
	for _, x := range names {
		r := &relay{name: x.name, role: x.role, country: x.country,
			nick: "tn" + x.name + tag, addr: relayAddr(n.Subnet, x.name),
			dir: filepath.Join(dir, x.name)}
		if err := os.MkdirAll(filepath.Join(r.dir, "keys"), 0o700); err != nil {
			return nil, err
		}
		n.relays = append(n.relays, r)
	}
	if err := n.startTarget(); err != nil {
		return n, err
	}
	// TORNET_NO_SHIM=1 forces the /proc peer lookup (to test it; gcc is present wherever cgo builds).
	n.Shim = os.Getenv("TORNET_NO_SHIM") != "1" && n.buildShim() == nil
	if err := n.makeKeys(ctx); err != nil {
		return n, err
	}
	logf("tornet: keys made in %v", time.Since(began).Round(100*time.Millisecond))
	if err := n.writeFiles(); err != nil {
		return n, err
	}
	// Trap: in the first voting round authorities vote 4 s before each 10 s
	// boundary; one started after that votes with almost no descriptors.
	if err := sleepCtx(ctx, time.Duration((12-time.Now().Unix()%10)%10)*time.Second); err != nil {
		return n, err
	}
	launch := time.Now()
	for _, r := range n.relays {
		if err := n.startRelay(r); err != nil {
			return n, err
		}
	}
	if err := n.waitReady(ctx, launch); err != nil {
		return n, err
	}
	n.Bootstrap = time.Since(began)
	return n, nil
}

// relayAddr is a relay's advertised address: sub.<host>, except exit2,
// which lives in 127.1.N.0/24 so that the two US exits fall in two /16s
// (tor.mode grouped gives each a slot of its own); DE and NL share exit1's,
// so only ExcludeExitNodes keeps a US grouped instance off them.
func relayAddr(sub, name string) string {
	hosts := map[string]int{"auth1": 11, "auth2": 12, "auth3": 13, "middle1": 14, "middle2": 15, "exit1": 21, "exit2": 22, "exit3": 23, "exit4": 24}
	if name == "exit2" {
		return fmt.Sprintf("127.1.%s.%d", strings.TrimPrefix(sub, "127.0."), hosts[name])
	}
	return fmt.Sprintf("%s.%d", sub, hosts[name])
}

func (n *Network) pickAddresses() error {
	for try := 0; try < 50; try++ {
		sub := fmt.Sprintf("127.0.%d", 1+rand.IntN(200))
		base := 20000 + rand.IntN(30000)
		ok := true
		for _, name := range []string{"auth1", "auth2", "auth3", "middle1", "middle2", "exit1", "exit2", "exit3", "exit4"} {
			for _, p := range []int{base, base + 1, base + 2} {
				ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", relayAddr(sub, name), p))
				if err != nil {
					ok = false
					break
				}
				ln.Close()
			}
			if !ok {
				break
			}
		}
		if ok {
			n.Subnet, n.ORPort, n.DirPort, n.CtlPort = sub, base, base+1, base+2
			return nil
		}
	}
	return errors.New("no free loopback subnet/port range for the network")
}

func (n *Network) buildShim() error {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return err
	}
	src := filepath.Join(n.Dir, "bindshim.c")
	if err := os.WriteFile(src, []byte(shimSource), 0o644); err != nil {
		return err
	}
	out, err := exec.Command(gcc, "-shared", "-fPIC", "-O2", "-o", filepath.Join(n.Dir, "bindshim.so"), src, "-ldl").CombinedOutput()
	if err != nil {
		n.logf("tornet: bind shim not built (%v: %s); using the /proc peer lookup", err, out)
		return err
	}
	return nil
}

func (n *Network) auths() []*relay { return n.relays[:3] }

func (n *Network) makeKeys(ctx context.Context) error {
	empty := filepath.Join(n.Dir, "empty.torrc")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		return err
	}
	errs := make(chan error, len(n.relays))
	for _, r := range n.relays {
		go func() {
			if r.role == "auth" {
				k := filepath.Join(r.dir, "keys")
				cmd := exec.CommandContext(ctx, "tor-gencert", "--create-identity-key", "-m", "12",
					"-a", fmt.Sprintf("%s:%d", r.addr, n.DirPort),
					"-i", filepath.Join(k, "authority_identity_key"),
					"-s", filepath.Join(k, "authority_signing_key"),
					"-c", filepath.Join(k, "authority_certificate"),
					"--passphrase-fd", "0")
				cmd.Stdin = strings.NewReader("")
				if out, err := cmd.CombinedOutput(); err != nil {
					errs <- fmt.Errorf("tor-gencert %s: %v: %s", r.name, err, out)
					return
				}
				cert, err := os.ReadFile(filepath.Join(k, "authority_certificate"))
				if err != nil {
					errs <- err
					return
				}
				for _, l := range strings.Split(string(cert), "\n") {
					if v, ok := strings.CutPrefix(l, "fingerprint "); ok {
						r.v3ident = strings.TrimSpace(v)
					}
				}
			}
			cmd := exec.CommandContext(ctx, "tor", "--list-fingerprint", "--defaults-torrc", empty, "-f", empty,
				"--DataDirectory", r.dir, "--ORPort", fmt.Sprintf("%s:%d", r.addr, n.ORPort),
				"--Nickname", r.nick, "--Address", r.addr, "--Log", "err stderr")
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("tor --list-fingerprint %s: %v: %s", r.name, err, out)
				return
			}
			b, err := os.ReadFile(filepath.Join(r.dir, "fingerprint"))
			if err != nil {
				errs <- err
				return
			}
			f := strings.Fields(string(b))
			if len(f) < 2 {
				errs <- fmt.Errorf("%s: bad fingerprint file %q", r.name, b)
				return
			}
			r.fp = strings.ToUpper(f[1])
			errs <- nil
		}()
	}
	var first error
	for range n.relays {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return first
	}
	for _, a := range n.auths() {
		if a.v3ident == "" {
			return fmt.Errorf("%s: no v3 identity in authority_certificate", a.name)
		}
	}
	return nil
}

func ip2int(s string) uint32 {
	v := net.ParseIP(s).To4()
	return uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
}

func (n *Network) dirAuthorityLines() []string {
	var out []string
	for _, a := range n.auths() {
		out = append(out, fmt.Sprintf("DirAuthority %s orport=%d v3ident=%s %s:%d %s", a.nick, n.ORPort, a.v3ident, a.addr, n.DirPort, a.fp))
	}
	return out
}

// ClientConfig is what a product tor needs to use this network; give it
// through tor.extra-config (appended to every generated torrc).
func (n *Network) ClientConfig() []string {
	out := []string{"TestingTorNetwork 1"}
	out = append(out, n.dirAuthorityLines()...)
	return append(out,
		"GeoIPFile "+n.GeoIPFile(),
		"GeoIPv6File "+filepath.Join(n.Dir, "geoip6"),
		"PathsNeededToBuildCircuits 0.25")
}

// GeoIPFile is the private GeoIP file (tor's decimal-range format) that maps
// every relay's address to its country: give it to the product as
// probe.geoip so tor upstreams get their exits' countries.
func (n *Network) GeoIPFile() string { return filepath.Join(n.Dir, "geoip") }

// ControlAddr is a control port (cookie auth, with the private GeoIP file
// loaded) of a tor that holds the consensus: tor.relays: control://<it>.
func (n *Network) ControlAddr() string {
	return fmt.Sprintf("%s:%d", n.auths()[0].addr, n.CtlPort)
}

// Exits lists the exit relays.
func (n *Network) Exits() []Exit {
	var out []Exit
	for _, r := range n.relays {
		if r.role == "exit" {
			out = append(out, Exit{Name: r.name, Nickname: r.nick, Address: r.addr, Country: r.country, Fingerprint: r.fp})
		}
	}
	return out
}

func (n *Network) writeFiles() error {
	// Private GeoIP: decimal ranges START,END,CC.
	var g bytes.Buffer
	g.WriteString("# tornet private GeoIP\n")
	for _, r := range n.relays {
		v := ip2int(r.addr)
		fmt.Fprintf(&g, "%d,%d,%s\n", v, v, r.country)
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "geoip"), g.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "geoip6"), []byte("# tornet private GeoIPv6\n2001:db8::,2001:db8::ffff,SE\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		return err
	}
	// Every relay measured equal, so choice inside a country is uniform
	// (and nobody misses the Fast flag).
	var bw bytes.Buffer
	fmt.Fprintf(&bw, "%d\n", time.Now().Unix())
	for _, r := range n.relays {
		fmt.Fprintf(&bw, "node_id=$%s bw=1000\n", r.fp)
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "bwfile"), bw.Bytes(), 0o644); err != nil {
		return err
	}
	var exitFPs, guardFPs []string
	for _, r := range n.relays {
		if r.role == "exit" {
			exitFPs = append(exitFPs, "$"+r.fp)
		} else {
			guardFPs = append(guardFPs, "$"+r.fp)
		}
	}
	for _, r := range n.relays {
		lines := []string{
			"TestingTorNetwork 1",
			"DataDirectory " + r.dir,
			"RunAsDaemon 0",
			"Nickname " + r.nick,
			"ContactInfo tornet@example.invalid",
			"Log notice file " + filepath.Join(r.dir, "notice.log"),
			"SafeLogging 0",
			"ShutdownWaitLength 0",
			"Address " + r.addr,
			fmt.Sprintf("ORPort %s:%d", r.addr, n.ORPort),
			"AssumeReachable 1",
			"AddressDisableIPv6 1",
			"SocksPort 0",
			"PathsNeededToBuildCircuits 0.25",
			"GeoIPFile " + filepath.Join(n.Dir, "geoip"),
			"GeoIPv6File " + filepath.Join(n.Dir, "geoip6"),
			"MaxConsensusAgeForDiffs 2 minutes",
		}
		lines = append(lines, n.dirAuthorityLines()...)
		switch r.role {
		case "auth":
			lines = append(lines,
				"AuthoritativeDirectory 1",
				"V3AuthoritativeDirectory 1",
				fmt.Sprintf("DirPort %s:%d", r.addr, n.DirPort),
				"ExitRelay 0",
				"ExitPolicy reject *:*",
				"TestingV3AuthInitialVotingInterval 10",
				"TestingV3AuthInitialVoteDelay 2",
				"TestingV3AuthInitialDistDelay 2",
				"TestingV3AuthVotingStartOffset 0",
				"V3AuthVotingInterval 30",
				"V3AuthVoteDelay 2",
				"V3AuthDistDelay 2",
				"AuthDirFastGuarantee 1",
				"AuthDirVoteStableGuaranteeMinUptime 0",
				"AuthDirVoteStableGuaranteeMTBF 0",
				"AuthDirMaxServersPerAddr 0",
				"V3BandwidthsFile "+filepath.Join(n.Dir, "bwfile"),
				"TestingDirAuthVoteExit "+strings.Join(exitFPs, ","),
				"TestingDirAuthVoteExitIsStrict 1",
				"TestingDirAuthVoteGuard "+strings.Join(guardFPs, ","),
				"TestingDirAuthVoteGuardIsStrict 1",
			)
			if r.name == "auth1" {
				lines = append(lines, fmt.Sprintf("ControlPort %s:%d", r.addr, n.CtlPort), "CookieAuthentication 1")
			}
		case "middle":
			lines = append(lines, "ExitRelay 0", "ExitPolicy reject *:*")
		case "exit":
			lines = append(lines,
				"ExitRelay 1",
				"ExitPolicyRejectPrivate 0",
				"ExitPolicyRejectLocalInterfaces 0",
				// accept *:* too: a 127/8-only policy is summarized as
				// "reject 1-65535" and clients never pick the exit.
				"ExitPolicy accept 127.0.0.0/8:*, accept *:*",
				"IPv6Exit 0",
				"DirCache 0",
				"OutboundBindAddressExit "+r.addr,
				"ServerDNSResolvConfFile "+filepath.Join(n.Dir, "resolv.conf"),
				"ServerDNSDetectHijacking 0",
				"ServerDNSAllowBrokenConfig 1",
			)
		}
		if err := os.WriteFile(filepath.Join(r.dir, "torrc"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (n *Network) startRelay(r *relay) error {
	cmd := exec.Command("tor", "-f", filepath.Join(r.dir, "torrc"), "--defaults-torrc", filepath.Join(n.Dir, "empty.torrc"))
	cmd.Env = append(os.Environ(), "MALLOC_ARENA_MAX=1", "TORNET_BIND_ADDR="+r.addr)
	if n.Shim {
		cmd.Env = append(cmd.Env, "LD_PRELOAD="+filepath.Join(n.Dir, "bindshim.so"))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := os.Create(filepath.Join(r.dir, "stdout.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("starting %s: %w", r.name, err)
	}
	r.cmd = cmd
	r.done = make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(r.done) }()
	return nil
}

// consensusRelays counts router entries and the exits flagged Exit+Fast in
// the newest consensus file of a relay's data directory.
func consensusRelays(dir string, since time.Time) (relays, goodExits int) {
	for _, f := range []string{"cached-microdesc-consensus", "cached-consensus"} {
		p := filepath.Join(dir, f)
		st, err := os.Stat(p)
		if err != nil || st.ModTime().Before(since) {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		r, e := 0, 0
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			l := sc.Text()
			if strings.HasPrefix(l, "r ") {
				r++
			}
			if strings.HasPrefix(l, "s ") && strings.Contains(l, " Exit") && strings.Contains(l, " Fast") && strings.Contains(l, " Running") && strings.Contains(l, " Valid") {
				e++
			}
		}
		if r > relays {
			relays, goodExits = r, e
		}
	}
	return relays, goodExits
}

func (n *Network) waitReady(ctx context.Context, launch time.Time) error {
	want := len(n.relays)
	exits := len(n.Exits())
	// 1: an authority's consensus lists every relay, exits usable.
	for {
		for _, r := range n.relays {
			select {
			case <-r.done:
				return fmt.Errorf("%s exited early: %s", r.name, n.tail(r, 5))
			default:
			}
		}
		rs, es := consensusRelays(n.auths()[0].dir, launch)
		if rs == want && es == exits {
			n.logf("tornet: full consensus %v after launch", time.Since(launch).Round(100*time.Millisecond))
			break
		}
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return fmt.Errorf("waiting for a consensus with %d relays and %d exits (have %d, %d): %w", want, exits, rs, es, err)
		}
	}
	// 2: every middle and exit holds it (exits carry no streams before).
	for _, r := range n.relays[3:] {
		for {
			if rs, _ := consensusRelays(r.dir, launch); rs == want {
				break
			}
			if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
				return fmt.Errorf("waiting for %s to fetch the consensus: %w", r.name, err)
			}
		}
	}
	n.logf("tornet: all relays hold the consensus %v after launch", time.Since(launch).Round(100*time.Millisecond))
	return nil
}

// Close stops every process (SIGTERM, then SIGKILL for those still running
// 10 s later) and the target.
func (n *Network) Close() error {
	n.closed.Do(func() {
		for _, r := range n.relays {
			if r.cmd != nil && r.cmd.Process != nil {
				r.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		// One grace period for all; once it is over every relay still
		// running is killed. A tor exit relay has been seen ignoring
		// SIGTERM for the rest of a 25-minute test run.
		grace := time.NewTimer(10 * time.Second)
		defer grace.Stop()
		expired := false
		for _, r := range n.relays {
			if r.cmd == nil {
				continue
			}
			if !expired {
				select {
				case <-r.done:
					continue
				case <-grace.C:
					expired = true
				}
			}
			n.logf("tornet: %s still running 10 s after SIGTERM; killing it", r.name)
			r.cmd.Process.Kill()
			select {
			case <-r.done:
			case <-time.After(10 * time.Second):
				n.logf("tornet: %s (pid %d) still running 10 s after SIGKILL", r.name, r.cmd.Process.Pid)
			}
		}
		if n.target != nil {
			n.target.Close()
		}
	})
	return nil
}

// Logs returns the last lines of every relay's log (for failure reports).
func (n *Network) Logs(lines int) string {
	var b strings.Builder
	for _, r := range n.relays {
		fmt.Fprintf(&b, "== %s ==\n%s\n", r.name, n.tail(r, lines))
	}
	return b.String()
}

func (n *Network) tail(r *relay, lines int) string {
	var all []string
	for _, f := range []string{"stdout.log", "notice.log"} {
		b, _ := os.ReadFile(filepath.Join(r.dir, f))
		all = append(all, strings.Split(strings.TrimSpace(string(b)), "\n")...)
	}
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// RelayPIDs maps relay name to process id (for RSS figures).
func (n *Network) RelayPIDs() map[string]int {
	m := map[string]int{}
	for _, r := range n.relays {
		if r.cmd != nil && r.cmd.Process != nil {
			m[r.name] = r.cmd.Process.Pid
		}
	}
	return m
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Seen is what the target reports about one request.
type Seen struct {
	Peer string `json:"peer"` // TCP peer address
	Exit string `json:"exit"` // exit name ("" if unknown)
	Via  string `json:"via"`  // "address" (bind shim) or "proc" (socket owner)
}

func (n *Network) startTarget() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	n.tgtLn = ln
	mux := http.NewServeMux()
	mux.HandleFunc("/json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(n.identify(r.RemoteAddr))
	})
	n.target = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go n.target.Serve(ln)
	return nil
}

// TargetURL is the HTTP target on 127.0.0.1 (an IP literal: host names do
// not resolve inside the network).
func (n *Network) TargetURL() string { return "http://" + n.tgtLn.Addr().String() + "/json" }

// TargetAddr is the target's host:port.
func (n *Network) TargetAddr() string { return n.tgtLn.Addr().String() }

func (n *Network) identify(peer string) Seen {
	s := Seen{Peer: peer}
	host, port, _ := net.SplitHostPort(peer)
	for _, r := range n.relays {
		if r.addr == host {
			s.Exit, s.Via = r.name, "address"
			return s
		}
	}
	// No shim: find which relay process holds the client end of the socket.
	pport, _ := strconv.Atoi(port)
	_, tport, _ := net.SplitHostPort(n.tgtLn.Addr().String())
	tp, _ := strconv.Atoi(tport)
	if ino := sockInode(pport, tp); ino != "" {
		for _, r := range n.relays {
			if r.cmd != nil && r.cmd.Process != nil && holdsInode(r.cmd.Process.Pid, ino) {
				s.Exit, s.Via = r.name, "proc"
				return s
			}
		}
	}
	return s
}

func sockInode(localPort, remotePort int) string {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return ""
	}
	lp, rp := fmt.Sprintf(":%04X", localPort), fmt.Sprintf(":%04X", remotePort)
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) > 9 && strings.HasSuffix(f[1], lp) && strings.HasSuffix(f[2], rp) {
			return f[9]
		}
	}
	return ""
}

func holdsInode(pid int, ino string) bool {
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fds)
	if err != nil {
		return false
	}
	want := "socket:[" + ino + "]"
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(fds, e.Name())); err == nil && l == want {
			return true
		}
	}
	return false
}
