package torgen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/testtool"
	"github.com/proxypool/proxypool/internal/torgen/exits"
	"github.com/proxypool/proxypool/internal/torgen/torrc"
	"github.com/proxypool/proxypool/internal/upstream"
)

type recordingRunner struct{ calls []string }

func (r *recordingRunner) Apply(_ context.Context, want, changed []int) error {
	r.calls = append(r.calls, fmt.Sprintf("want=%v changed=%v", want, changed))
	return nil
}

func relay(nick, cc, addr string) upstream.Relay {
	return upstream.Relay{Fingerprint: strings.Repeat(nick[:1], 40), Nickname: nick, Country: cc, Address: addr,
		Flags: []string{"Exit", "Fast", "Running", "Valid"}, Bandwidth: 100}
}

func TestGenerateFilesAndRunner(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := Config{
		Groups:   []exits.Group{{Name: "us", Countries: []string{"US"}}, {Name: "nonus", ExcludeCountries: []string{"US"}}},
		Mode:     exits.ModeSingle,
		PortBase: 9060, TorrcDir: dir,
		Extra:  []string{"Log notice stdout"},
		Verify: torrc.FindVerifier(),
	}
	r1 := exits.Static{relay("A", "US", "10.0.0.1"), relay("B", "DE", "10.1.0.1"), relay("C", "US", "10.2.0.1")}
	run := &recordingRunner{}
	p, err := Generate(ctx, cfg, r1, run)
	if err != nil {
		t.Fatal(err)
	}
	// Each exit's port is its hashed one: what a fresh dir gives it.
	port := map[string]int{}
	for _, in := range p.Instances {
		port[in.Key] = in.Port
	}
	pa, pb, pc := port["single/us/"+strings.Repeat("A", 40)], port["single/nonus/"+strings.Repeat("B", 40)], port["single/us/"+strings.Repeat("C", 40)]
	if len(port) != 3 || pa == pb || pa == pc || pb == pc || fmt.Sprint(p.Ports()) != fmt.Sprint(p.Changed) {
		t.Fatalf("ports %v (by key %v), changed %v: want 3 distinct ports, all written", p.Ports(), port, p.Changed)
	}
	for _, q := range p.Ports() {
		if q < 9060 || q > 10059 {
			t.Errorf("port %d outside 9060-10059", q)
		}
	}
	names := map[string]string{}
	for _, u := range Upstreams(p) {
		names[u.Name] = fmt.Sprintf("%s %s:%d %s", u.Type, u.Server, u.Port, u.Group)
	}
	wantNames := map[string]string{
		fmt.Sprintf("tor-us-%d", pa):    fmt.Sprintf("tor 127.0.0.1:%d us", pa),
		fmt.Sprintf("tor-nonus-%d", pb): fmt.Sprintf("tor 127.0.0.1:%d nonus", pb),
		fmt.Sprintf("tor-us-%d", pc):    fmt.Sprintf("tor 127.0.0.1:%d us", pc),
	}
	if fmt.Sprint(names) != fmt.Sprint(wantNames) {
		t.Errorf("upstreams: %v, want %v", names, wantNames)
	}
	// Same relays again: nothing written, runner still told the wanted set.
	p2, err := Generate(ctx, cfg, r1, run)
	if err != nil || len(p2.Changed) != 0 || len(p2.Removed) != 0 {
		t.Fatalf("second run: changed %v removed %v err %v", p2.Changed, p2.Removed, err)
	}
	// C gone, D new: C's file goes, D takes its own hashed port (the
	// one a fresh dir gives it); A and B keep theirs.
	r2 := exits.Static{relay("A", "US", "10.0.0.1"), relay("B", "DE", "10.1.0.1"), relay("D", "US", "10.3.0.1")}
	p3, err := Generate(ctx, cfg, r2, run)
	if err != nil {
		t.Fatal(err)
	}
	fresh := cfg
	fresh.TorrcDir = t.TempDir()
	pf, err := Generate(ctx, fresh, r2, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := torrc.ReadKeys(dir)
	freshKeys, _ := torrc.ReadKeys(fresh.TorrcDir)
	pd := 0
	for q, k := range keys {
		if k == "single/us/"+strings.Repeat("D", 40) {
			pd = q
		}
	}
	if len(keys) != 3 || keys[pa] != "single/us/"+strings.Repeat("A", 40) || keys[pb] != "single/nonus/"+strings.Repeat("B", 40) || pd == 0 {
		t.Errorf("keys after refresh: %v", keys)
	}
	if fmt.Sprint(keys) != fmt.Sprint(freshKeys) || fmt.Sprint(pf.Ports()) != fmt.Sprint(p3.Ports()) {
		t.Errorf("refreshed dir %v differs from a fresh one %v", keys, freshKeys)
	}
	if fmt.Sprint(p3.Changed) != fmt.Sprintf("[%d]", pd) || fmt.Sprint(p3.Removed) != fmt.Sprintf("[%d]", pc) {
		t.Errorf("changed = %v, removed = %v; want [%d], [%d]", p3.Changed, p3.Removed, pd, pc)
	}
	want := []string{
		fmt.Sprintf("want=%v changed=%v", p.Ports(), p.Ports()),
		fmt.Sprintf("want=%v changed=[]", p.Ports()),
		fmt.Sprintf("want=%v changed=[%d]", p3.Ports(), pd),
	}
	if strings.Join(run.calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("runner calls:\n%s", strings.Join(run.calls, "\n"))
	}
}

// generatedUS is a torrc dir after one Generate of a single "us" group with
// one US exit: the starting point for what a later Generate may change.
// port is that instance's.
func generatedUS(t *testing.T) (cfg Config, run *recordingRunner, port int) {
	t.Helper()
	cfg = Config{Groups: []exits.Group{{Name: "us", Countries: []string{"US"}}}, TorrcDir: t.TempDir(), PortBase: 9060}
	run = &recordingRunner{}
	p, err := Generate(context.Background(), cfg, exits.Static{relay("A", "US", "10.0.0.1")}, run)
	if err != nil || len(p.Instances) != 1 {
		t.Fatalf("generate: %d instances, %v", len(p.Instances), err)
	}
	return cfg, run, p.Instances[0].Port
}

func TestGenerateRefusesToWipe(t *testing.T) {
	ctx := context.Background()
	cfg, run, port := generatedUS(t)
	dir := cfg.TorrcDir
	// A source that returns no usable exits changes nothing.
	_, err := Generate(ctx, cfg, exits.Static{relay("B", "DE", "10.1.0.1")}, run)
	if !errors.Is(err, ErrNoExits) {
		t.Fatalf("err = %v, want ErrNoExits", err)
	}
	if _, err := os.Stat(torrc.Path(dir, port)); err != nil {
		t.Errorf("existing torrc removed: %v", err)
	}
	// The recorded field-restricted Onionoo file: relays, but no flags.
	_, err = Generate(ctx, cfg, exits.Source{URL: "exits/testdata/onionoo-fp-addr-country-head300.json"}, run)
	if !errors.Is(err, ErrNoExits) || !strings.Contains(err.Error(), "300 relays, 0 usable exits; the relay list carries no flags") {
		t.Errorf("err = %v", err)
	}
	// A bad extra-config line fails before any file is written.
	cfg.Extra = []string{"A 1\nB 2"}
	cfg.Groups = append(cfg.Groups, exits.Group{Name: "de", Countries: []string{"DE"}})
	_, err = Generate(ctx, cfg, exits.Static{relay("A", "US", "10.0.0.1"), relay("B", "DE", "10.1.0.1")}, run)
	if err == nil || !strings.Contains(err.Error(), "extra-config line 1") {
		t.Fatalf("err = %v", err)
	}
	if keys, _ := torrc.ReadKeys(dir); len(keys) != 1 {
		t.Errorf("files %v: a file was written despite the render error", keys)
	}
	if len(run.calls) != 1 {
		t.Errorf("runner called %d times, want 1", len(run.calls))
	}
}

// The supervisor with a real tor that never touches the network
// (DisableNetwork 1): restart after a kill, reload on change, stop when
// unwanted, everything gone when the context ends.
func TestProcessRunnerSupervises(t *testing.T) {
	tor := testtool.Need(t, "tor", "apt-get install -y tor")
	dir := t.TempDir()
	ports := []int{freePortRange(t, 2)}
	ports = append(ports, ports[0]+1)
	for _, p := range ports {
		dd := filepath.Join(dir, fmt.Sprint(p))
		os.MkdirAll(dd, 0o700)
		conf := fmt.Sprintf("SocksPort 127.0.0.1:%d\nDataDirectory %s\nDisableNetwork 1\nLog notice stdout\n", p, dd)
		os.WriteFile(torrc.Path(dir, p), []byte(conf), 0o644)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := NewProcessRunner(ctx, tor, dir, nil)
	r.MinBackoff = 50 * time.Millisecond
	if err := r.Apply(ctx, ports, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both started", func() bool { return r.PID(ports[0]) != 0 && r.PID(ports[1]) != 0 })
	old := r.PID(ports[0])
	syscall.Kill(old, syscall.SIGKILL)
	waitFor(t, "restart after kill", func() bool { p := r.PID(ports[0]); return p != 0 && p != old })
	second := r.PID(ports[1])
	if err := r.Apply(ctx, ports[:1], nil); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(r.Ports()) != fmt.Sprint(ports[:1]) {
		t.Errorf("running %v after removing one", r.Ports())
	}
	if err := syscall.Kill(second, 0); err == nil {
		t.Error("unwanted tor still alive")
	}
	if err := r.Apply(ctx, []int{ports[0] + 100}, nil); err == nil {
		t.Error("port without a torrc accepted")
	}
	last := r.PID(ports[0])
	cancel()
	r.Wait()
	if err := syscall.Kill(last, 0); err == nil {
		t.Error("tor alive after the context ended")
	}
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGenerateNoGroupsStopsEverything: an operator who removes every tor
// group (tor.groups: []) gets every instance stopped and its torrc removed,
// unlike a relay list that merely matches nothing.
func TestGenerateNoGroupsStopsEverything(t *testing.T) {
	ctx := context.Background()
	cfg, run, port := generatedUS(t)
	dir := cfg.TorrcDir
	cfg.Groups = nil
	p, err := Generate(ctx, cfg, exits.Static{relay("A", "US", "10.0.0.1")}, run)
	if err != nil {
		t.Fatalf("generate with no groups: %v", err)
	}
	if len(p.Instances) != 0 || fmt.Sprint(p.Removed) != fmt.Sprintf("[%d]", port) {
		t.Errorf("instances %v removed %v, want none and [%d]", p.Instances, p.Removed, port)
	}
	if _, err := os.Stat(torrc.Path(dir, port)); !os.IsNotExist(err) {
		t.Errorf("torrc.%d still there: %v", port, err)
	}
	if last := run.calls[len(run.calls)-1]; last != "want=[] changed=[]" {
		t.Errorf("runner last told %q, want no instance", last)
	}
}

// TestControlPortOffset: for systemd instances (no DataDir) each torrc gets
// a loopback ControlPort at SOCKS port + offset with the password hash, so
// the probe can NEWNYM them; the control address follows; a port whose
// offset would pass 65535 gets SOCKS port - offset instead (issue 18: it
// used to get none).
func TestControlPortOffset(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const hash = "16:0011223344556677605B1F2D4E6A8C0E1F2A3B4C5D6E7F8091A2B3C4D5"
	cfg := Config{
		Groups: []exits.Group{{Name: "us", Countries: []string{"US"}}}, Mode: exits.ModeSingle,
		PortBase: 9060, PortMax: 9060, TorrcDir: dir, ControlPortOffset: 10000, ControlPasswordHash: hash,
		Verify: torrc.FindVerifier(),
	}
	p, err := Generate(ctx, cfg, exits.Static{relay("A", "US", "10.0.0.1")}, &recordingRunner{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(torrc.Path(dir, 9060))
	if !strings.Contains(string(b), "ControlPort 127.0.0.1:19060\nHashedControlPassword "+hash+"\n") || strings.Contains(string(b), "Cookie") {
		t.Errorf("torrc.9060:\n%s", b)
	}
	if a := ControlAddr(p.Instances[0]); a != "127.0.0.1:19060" {
		t.Errorf("control address %q", a)
	}
	// Above 65535-offset the control port is SOCKS-offset; an offset of
	// 30000 keeps the expected control port out of the ephemeral range.
	cfg.PortBase, cfg.PortMax, cfg.TorrcDir, cfg.ControlPortOffset = 60000, 60000, t.TempDir(), 30000
	p, err = Generate(ctx, cfg, exits.Static{relay("A", "US", "10.0.0.1")}, &recordingRunner{})
	if err != nil || p.Instances[0].ControlPort != 30000 || ControlAddr(p.Instances[0]) != "127.0.0.1:30000" {
		t.Errorf("port 60000: control port %d (%s), %v; want 60000-30000", p.Instances[0].ControlPort, ControlAddr(p.Instances[0]), err)
	}
}

// TestControlPortConflicts: on the recorded consensus (single mode, every
// port of a small range wanted, a share of a wide one), no instance's
// control port is a port proxypool listens on, a SOCKS port of the range
// or another instance's control port, whatever the range: the default
// one's start, one across 55535 and one wider than the offset.
func TestControlPortConflicts(t *testing.T) {
	ctx := context.Background()
	relays := recordedRelays(t)
	tests := []struct {
		name      string
		base, max int
		instances int   // tor.max-instances; 0: the whole range
		reserved  []int // e.g. metrics on a control port
		wantOut   []int // SOCKS ports that must get no instance
	}{
		{"default start, metrics on 19065", 9060, 9199, 0, []int{9100, 19065}, []int{9065}},
		{"across 55535", 55500, 55600, 0, []int{45550}, []int{55550}},
		{"wider than the offset", 9060, 19560, 300, nil, []int{9060, 9560}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := recordedConfig(t.TempDir(), exits.ModeSingle)
			cfg.PortBase, cfg.PortMax, cfg.MaxInstances, cfg.Reserved = tt.base, tt.max, tt.instances, tt.reserved
			cfg.ControlPortOffset, cfg.ControlPasswordHash = 10000, "16:00"
			p, err := Generate(ctx, cfg, relays, nil)
			if err != nil {
				t.Fatal(err)
			}
			controls := map[int]int{}
			for _, in := range p.Instances {
				c := in.ControlPort
				switch {
				case c != ControlPortFor(in.Port, 10000) || c < 1:
					t.Errorf("port %d: control port %d, want %d", in.Port, c, ControlPortFor(in.Port, 10000))
				case c >= tt.base && c <= tt.max:
					t.Errorf("port %d: control port %d inside the SOCKS range", in.Port, c)
				case slices.Contains(tt.reserved, c):
					t.Errorf("port %d: control port %d is a reserved port", in.Port, c)
				}
				if other, dup := controls[c]; dup {
					t.Errorf("ports %d and %d share control port %d", other, in.Port, c)
				}
				controls[c] = in.Port
				if slices.Contains(tt.wantOut, in.Port) {
					t.Errorf("port %d given out; its control port %d conflicts", in.Port, c)
				}
			}
			if len(p.Instances) < 50 {
				t.Errorf("%d instances: the test wants the range mostly filled", len(p.Instances))
			}
			t.Logf("%s: %d instances, %d control ports", tt.name, len(p.Instances), len(controls))
		})
	}
}
