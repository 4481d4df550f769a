package tornet

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGeoIPAndConfigShape(t *testing.T) {
	// Cheap: no processes. The heavy proof lives in internal/torgen.
	n := &Network{Dir: t.TempDir(), Subnet: "127.0.7", ORPort: 30000, DirPort: 30001, CtlPort: 30002}
	for i, name := range []string{"auth1", "auth2", "auth3"} {
		n.relays = append(n.relays, &relay{name: name, role: "auth", nick: "tn" + name, addr: fmt.Sprintf("127.0.7.%d", 11+i), fp: strings.Repeat("A", 40), v3ident: strings.Repeat("B", 40), dir: filepath.Join(n.Dir, name), country: "SE"})
	}
	n.relays = append(n.relays, &relay{name: "exit1", role: "exit", nick: "tnexit1", addr: "127.0.7.21", country: "US", fp: strings.Repeat("C", 40), dir: filepath.Join(n.Dir, "exit1")})
	for _, r := range n.relays {
		os.MkdirAll(r.dir, 0o700)
	}
	if err := n.writeFiles(); err != nil {
		t.Fatal(err)
	}
	cc := n.ClientConfig()
	if cc[0] != "TestingTorNetwork 1" || !strings.HasPrefix(cc[1], "DirAuthority tnauth1 orport=30000 v3ident=BBBB") || !strings.Contains(cc[1], "127.0.7.11:30001 AAAA") {
		t.Errorf("client config: %q", cc)
	}
	g, _ := os.ReadFile(filepath.Join(n.Dir, "geoip"))
	if !strings.Contains(string(g), fmt.Sprintf("%d,%d,US", ip2int("127.0.7.21"), ip2int("127.0.7.21"))) {
		t.Errorf("geoip lacks exit1 as US:\n%s", g)
	}
	if tor, err := exec.LookPath("tor"); err == nil {
		for _, r := range n.relays {
			out, err := exec.Command(tor, "--verify-config", "--defaults-torrc", os.DevNull, "-f", filepath.Join(r.dir, "torrc")).CombinedOutput()
			if err != nil {
				t.Errorf("%s torrc rejected by tor: %v\n%s", r.name, err, out)
			}
		}
	}
	if ex := n.Exits(); len(ex) != 1 || ex[0].Country != "US" {
		t.Errorf("exits = %+v", ex)
	}
}

// TestNetworkCarriesTraffic starts the network and a plain client tor; run
// with PROXYPOOL_TORNET=1 -run Network to check the harness alone.
func TestNetworkCarriesTraffic(t *testing.T) {
	if os.Getenv("TORNET_SELFTEST") != "1" {
		t.Skip("harness self-test: TORNET_SELFTEST=1 PROXYPOOL_TORNET=1 (internal/torgen proves the product on it)")
	}
	n := StartT(t)
	dir := t.TempDir()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	socks := ln.Addr().String()
	ln.Close()
	conf := append([]string{"DataDirectory " + dir, "SocksPort " + socks, "ExitNodes {us}", "StrictNodes 1"}, n.ClientConfig()...)
	os.WriteFile(filepath.Join(dir, "torrc"), []byte(strings.Join(conf, "\n")+"\n"), 0o644)
	cmd := exec.Command("tor", "-f", filepath.Join(dir, "torrc"), "--defaults-torrc", os.DevNull)
	cmd.Env = append(os.Environ(), "MALLOC_ARENA_MAX=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := map[string]int{}
	for i := 0; i < 6; {
		rctx, rc := context.WithTimeout(ctx, 15*time.Second)
		s, err := n.Through(rctx, socks)
		rc()
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("no answer through the client: %v", err)
			}
			time.Sleep(500 * time.Millisecond)
			continue
		}
		got[s.Exit+"/"+s.Via]++
		i++
	}
	t.Logf("exits seen: %v", got)
	for k := range got {
		if !strings.HasPrefix(k, "exit1/") && !strings.HasPrefix(k, "exit2/") {
			t.Errorf("{us} client left through %s", k)
		}
	}
}
