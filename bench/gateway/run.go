package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func start(name string, stdinPipe bool, argv ...string) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	p := &proc{name: name, cmd: cmd}
	if stdinPipe {
		w, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		p.stdin = w
	}
	r, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.out = bufio.NewScanner(r)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return p, nil
}

func (p *proc) expect(word string) error {
	for p.out.Scan() {
		if strings.TrimSpace(p.out.Text()) == word {
			return nil
		}
	}
	return fmt.Errorf("%s exited before saying %q", p.name, word)
}

func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// cpuTicks is utime+stime of pid in clock ticks (USER_HZ = 100).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

func fdCount(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

type loadResult struct {
	Requests  int      `json:"requests"`
	Errors    int      `json:"errors"`
	RPS       float64  `json:"rps"`
	P50MS     float64  `json:"p50_ms"`
	P99MS     float64  `json:"p99_ms"`
	Exits     int      `json:"distinct_exits"`
	PerSecond []int    `json:"per_second"`
	ErrPerSec []int    `json:"errors_per_second"`
	First     []string `json:"FirstErrors"`
}

type cell struct {
	name   string
	proxy  string
	pid    int // the process whose CPU is "the gateway's" (0: none)
	res    loadResult
	cpuUS  float64 // per request
	fleet  float64 // fleet CPU per request
	maxFDs int
}

func runLoad(loadgen string, args ...string) (loadResult, error) {
	var out bytes.Buffer
	cmd := exec.Command(loadgen, args...)
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	var r loadResult
	if err := cmd.Run(); err != nil {
		return r, fmt.Errorf("loadgen %v: %w", args, err)
	}
	return r, json.Unmarshal(out.Bytes(), &r)
}

func measure(c *cell, loadgen, target string, fleetPID int, extra ...string) error {
	c0, f0 := cpuTicks(c.pid), cpuTicks(fleetPID)
	var maxFD atomic.Int64
	stopFD := make(chan struct{})
	if c.pid != 0 {
		go func() {
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stopFD:
					return
				case <-t.C:
					if n := int64(fdCount(c.pid)); n > maxFD.Load() {
						maxFD.Store(n)
					}
				}
			}
		}()
	}
	args := append([]string{"-target", target, "-proxy", c.proxy}, extra...)
	r, err := runLoad(loadgen, args...)
	close(stopFD)
	if err != nil {
		return err
	}
	c.res = r
	if r.Requests > 0 {
		if c.pid != 0 {
			c.cpuUS = float64(cpuTicks(c.pid)-c0) * 10000 / float64(r.Requests)
		}
		c.fleet = float64(cpuTicks(fleetPID)-f0) * 10000 / float64(r.Requests)
	}
	c.maxFDs = int(maxFD.Load())
	return nil
}

func waitPort(addr string) error {
	for range 100 {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s never listened", addr)
}

func runBench(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	n := fs.Int("n", 200, "fleet size")
	dur := fs.Duration("d", 5*time.Second, "duration of each cell")
	concs := fs.String("c", "64,256", "newconn concurrencies")
	kaConc := fs.Int("kc", 64, "keep-alive concurrency")
	failDur := fs.Duration("fd", 15*time.Second, "failure scenario duration (0: skip it)")
	tunnels := fs.Int("tunnels", 10000, "tunnels each proxy holds open at once in the memory cell (0: skip it)")
	reps := fs.Int("r", 1, "repeats of every cell, interleaved (cell order rotates); means of rps and CPU, medians of p50/p99")
	loadgen := fs.String("loadgen", "bin/loadgen", "loadgen binary")
	haproxy := fs.String("haproxy", "haproxy", "haproxy binary (skipped if missing)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "gateway-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	const target = "127.0.0.1:18080"
	var procs []*proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop()
		}
	}()
	if ln, err := net.Listen("tcp", target); err != nil {
		return fmt.Errorf("target port taken (a leftover bench process?): %w", err)
	} else {
		ln.Close()
	}
	tgt, err := start("target", false, *loadgen, "serve", "-listen", target)
	if err != nil {
		return err
	}
	procs = append(procs, tgt)
	if err := waitPort(target); err != nil {
		return err
	}
	members := filepath.Join(dir, "members.json")
	fl, err := start("fleet", true, self, "fleet", "-n", strconv.Itoa(*n), "-out", members)
	if err != nil {
		return err
	}
	procs = append(procs, fl)
	if err := fl.expect("ready"); err != nil {
		return err
	}
	var recs []struct {
		Server string `json:"server"`
		Port   int    `json:"port"`
	}
	b, _ := os.ReadFile(members)
	json.Unmarshal(b, &recs)
	one := net.JoinHostPort(recs[0].Server, strconv.Itoa(recs[0].Port))

	startGW := func(listen, dialer string) (*proc, error) {
		g, err := start("gateway-"+dialer, true, self, "gateway", "-members", members, "-listen", listen, "-dialer", dialer)
		if err != nil {
			return nil, err
		}
		procs = append(procs, g)
		return g, g.expect("ready")
	}
	gwDial, err := startGW("127.0.0.1:18000", "dial")
	if err != nil {
		return err
	}
	gwGo, err := startGW("127.0.0.1:18002", "goroutines")
	if err != nil {
		return err
	}
	var hap *proc
	if path, err := exec.LookPath(*haproxy); err == nil {
		var cfg strings.Builder
		// maxconn: what the fd limit affords (HAProxy wants two fds a connection)
		fmt.Fprintf(&cfg, "global\n  maxconn %d\n", max(1000, fdBudget()+400))
		cfg.WriteString("\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\nfrontend fe\n  bind 127.0.0.1:18001\n  default_backend be\n\nbackend be\n  balance roundrobin\n")
		for i, r := range recs {
			fmt.Fprintf(&cfg, "  server s%d %s:%d\n", i, r.Server, r.Port)
		}
		cfgPath := filepath.Join(dir, "haproxy.cfg")
		os.WriteFile(cfgPath, []byte(cfg.String()), 0o644)
		hap, err = start("haproxy", false, path, "-db", "-f", cfgPath)
		if err != nil {
			return err
		}
		procs = append(procs, hap)
		if err := waitPort("127.0.0.1:18001"); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(os.Stderr, "haproxy not installed: skipping its cells (apt-get install haproxy)")
	}
	pidOf := func(p *proc) int {
		if p == nil {
			return 0
		}
		return p.cmd.Process.Pid
	}
	fmt.Printf("# gateway benchmark: %d SOCKS5 upstreams on loopback, %s per cell, %d CPUs, %s\n\n", *n, *dur, cpus(), time.Now().UTC().Format(time.RFC3339))
	type config struct {
		mode string
		conc int
	}
	var configs []config
	for _, c := range strings.Split(*concs, ",") {
		k, _ := strconv.Atoi(strings.TrimSpace(c))
		configs = append(configs, config{"newconn", k})
	}
	configs = append(configs, config{"keepalive", *kaConc})
	for _, cf := range configs {
		cells := []*cell{
			{name: "direct", proxy: "", pid: 0},
			{name: "one upstream", proxy: one, pid: 0},
			{name: "haproxy", proxy: "127.0.0.1:18001", pid: pidOf(hap)},
			{name: "proxypool (event loops)", proxy: "127.0.0.1:18000", pid: pidOf(gwDial)},
			{name: "proxypool (goroutines)", proxy: "127.0.0.1:18002", pid: pidOf(gwGo)},
		}
		if hap == nil {
			cells = append(cells[:2], cells[3:]...)
		}
		fmt.Printf("## %s, c=%d, %d× %s interleaved\n\n| cell | rps | × direct | × haproxy | p50 ms | p99 ms | errors | distinct exits | proxy CPU µs/req | fleet CPU µs/req | proxy max fds |\n|---|---|---|---|---|---|---|---|---|---|---|\n", cf.mode, cf.conc, *reps, dur)
		runs := make([][]cell, len(cells))
		for rep := 0; rep < *reps; rep++ {
			for k := range cells {
				i := (k + rep) % len(cells) // rotate who runs first
				c := *cells[i]
				err := measure(&c, *loadgen, target, pidOf(fl), "-mode", cf.mode, "-c", strconv.Itoa(cf.conc), "-d", dur.String())
				if err != nil {
					return err
				}
				if c.res.Errors > 0 {
					fmt.Fprintf(os.Stderr, "%s: first errors: %v\n", c.name, c.res.First)
				}
				runs[i] = append(runs[i], c)
			}
		}
		agg := make([]cell, len(cells))
		for i := range cells {
			agg[i] = aggregate(runs[i])
		}
		var direct, hapRPS float64
		for _, c := range agg {
			switch c.name {
			case "direct":
				direct = c.res.RPS
			case "haproxy":
				hapRPS = c.res.RPS
			}
		}
		for _, c := range agg {
			cpu, fds, xh := "–", "–", "–"
			if c.pid != 0 {
				cpu, fds = fmt.Sprintf("%.0f", c.cpuUS), strconv.Itoa(c.maxFDs)
			}
			if hapRPS > 0 {
				xh = fmt.Sprintf("%.2f", c.res.RPS/hapRPS)
			}
			fmt.Printf("| %s | %.0f | %.2f | %s | %.2f | %.2f | %d | %d | %s | %.0f | %s |\n", c.name, c.res.RPS, c.res.RPS/direct, xh, c.res.P50MS, c.res.P99MS, c.res.Errors, c.res.Exits, cpu, c.fleet, fds)
		}
		fmt.Println()
	}

	if *tunnels > 0 {
		n := *tunnels
		if b := fdBudget(); n > b {
			fmt.Fprintf(os.Stderr, "the fd limit allows %d tunnels, not %d (as root, run.sh raises it)\n", b, n)
			n = b
		}
		fmt.Printf("## %d tunnels held open at once (SOCKS5 CONNECT + one GET each, then idle)\n\n", n)
		fmt.Println("| cell | tunnels open | failed | RSS idle MiB | RSS with tunnels MiB | KiB per tunnel | proxy fds | opened in | closed in |")
		fmt.Println("|---|---|---|---|---|---|---|---|---|")
		holds := []struct {
			name, addr string
			p          *proc
		}{{"haproxy", "127.0.0.1:18001", hap}, {"proxypool (event loops)", "127.0.0.1:18000", gwDial}, {"proxypool (goroutines)", "127.0.0.1:18002", gwGo}}
		for _, h := range holds {
			if h.p == nil {
				continue
			}
			r, err := holdTunnels(h.addr, target, pidOf(h.p), n)
			if err != nil {
				return err
			}
			per := float64(r.with-r.before) / float64(max(r.opened, 1))
			fmt.Printf("| %s | %d | %d | %.1f | %.1f | %.2f | %d | %.1f s | %.1f s |\n", h.name, r.opened, r.failed,
				float64(r.before)/1024, float64(r.with)/1024, per, r.fdsWith, r.openFor.Seconds(), r.closeIn.Seconds())
		}
		fmt.Println()
	}

	if *failDur <= 0 { // -fd 0: skip the failure scenario
		return nil
	}
	// Failure: 30 % of the upstreams die after their last check, a quarter
	// of them as black holes, 3 s into a newconn c=64 run.
	dead := *n * 30 / 100
	holes := dead / 4
	fmt.Printf("## failure: %d of %d upstreams die at t=3s (%d refuse, %d black holes), newconn c=64, %s\n\n", dead, *n, dead-holes, holes, *failDur)
	fmt.Println("| cell | requests | client errors | error % | healthy rps | rps after kill (per s) | recovered ≥ 90 % after |")
	fmt.Println("|---|---|---|---|---|---|---|")
	failure := func(name, proxy string) error {
		done := make(chan struct{})
		go func() {
			time.Sleep(3 * time.Second)
			fmt.Fprintf(fl.stdin, "kill %d %d\n", dead-holes, holes)
			close(done)
		}()
		r, err := runLoad(*loadgen, "-target", target, "-proxy", proxy, "-mode", "newconn", "-c", "64", "-d", failDur.String(), "-timeout", "5s")
		<-done
		fl.expect("killed")
		if err != nil {
			return err
		}
		healthy := float64(r.PerSecond[1]+r.PerSecond[2]) / 2
		rec := "never"
		last := len(r.PerSecond) - 2 // the final bucket is partial
		for s := 3; s <= last; s++ {
			ok := true
			for k := s; k <= last; k++ {
				if float64(r.PerSecond[k]) < 0.9*healthy {
					ok = false
					break
				}
			}
			if ok {
				rec = fmt.Sprintf("%d s", s-3)
				break
			}
		}
		fmt.Printf("| %s | %d | %d | %.3f | %.0f | %v | %s |\n", name, r.Requests+r.Errors, r.Errors, 100*float64(r.Errors)/float64(r.Requests+r.Errors), healthy, r.PerSecond[3:last+1], rec)
		if r.Errors > 0 {
			fmt.Fprintf(os.Stderr, "%s failure run, first errors: %v\n", name, r.First)
		}
		fmt.Fprintln(fl.stdin, "revive")
		return fl.expect("revived")
	}
	if hap != nil {
		if err := failure("haproxy", "127.0.0.1:18001"); err != nil {
			return err
		}
	}
	// fresh gateways: nothing ejected yet, all 200 believed healthy
	for _, d := range []string{"dial", "goroutines"} {
		g, err := startGW("127.0.0.1:18003", d)
		if err != nil {
			return err
		}
		label := map[string]string{"dial": "event loops", "goroutines": "goroutines"}[d]
		if err := failure("proxypool ("+label+")", "127.0.0.1:18003"); err != nil {
			return err
		}
		g.stop()
	}
	return nil
}

func cpus() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

// aggregate folds repeats of one cell: mean rps and CPU, median p50/p99,
// summed errors, max exits and fds.
func aggregate(rs []cell) cell {
	out := rs[0]
	var rps, cpu, fl float64
	var p50, p99 []float64
	out.res.Errors = 0
	for _, r := range rs {
		rps += r.res.RPS
		cpu += r.cpuUS
		fl += r.fleet
		p50 = append(p50, r.res.P50MS)
		p99 = append(p99, r.res.P99MS)
		out.res.Errors += r.res.Errors
		out.res.Exits = max(out.res.Exits, r.res.Exits)
		out.maxFDs = max(out.maxFDs, r.maxFDs)
	}
	n := float64(len(rs))
	out.res.RPS, out.cpuUS, out.fleet = rps/n, cpu/n, fl/n
	out.res.P50MS, out.res.P99MS = median(p50), median(p99)
	return out
}

func median(v []float64) float64 {
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
