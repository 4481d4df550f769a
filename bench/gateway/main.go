// Command gateway-bench runs the gateway benchmark of issue 3/6 in one go
// and prints a side-by-side table: a fleet of SOCKS5 upstreams on
// loopback, the loadgen target, HAProxy (TCP mode, balance roundrobin over
// the same fleet) and the proxypool gateway, each in its own process so
// CPU per request is read from /proc for each.
//
//	go run ./bench/gateway run            # what `make bench-gateway` runs
//	go run ./bench/gateway run -n 200 -d 5s -c 64,256
//
// The subcommands `fleet` and `gateway` are the child processes.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/sd"
	"github.com/proxypool/proxypool/internal/socks"
	"github.com/proxypool/proxypool/internal/upstream"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gateway-bench run|fleet|gateway [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runBench(os.Args[2:])
	case "fleet":
		err = runFleet(os.Args[2:])
	case "gateway":
		err = runGateway(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway-bench:", err)
		os.Exit(1)
	}
}

// runFleet starts n SOCKS5 members, writes their records as JSON to out,
// prints "ready", then obeys stdin lines:
//
//	kill REFUSE BLACKHOLE   (random members, fixed seed)
//	revive
func runFleet(args []string) error {
	var n int
	var out string
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "-n":
			fmt.Sscan(args[i+1], &n)
		case "-out":
			out = args[i+1]
		}
	}
	f, err := fleet.Start(context.Background(), fleet.Uniform(n, fleet.SOCKS5, fleet.Good))
	if err != nil {
		return err
	}
	defer f.Close()
	// Caps as production gets them: the probe's pipelined dial (the same
	// dial.Pool.DialCaps) of each member, to a sink here.
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer sink.Close()
	go func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	d := dial.New(dial.Options{})
	defer d.Close()
	var recs []upstream.Record
	for _, m := range f.Members() {
		e, err := m.Upstream.Entry()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, caps, err := d.DialCaps(ctx, e, sink.Addr().String(), upstream.CapPipeline)
		cancel()
		if err != nil {
			return fmt.Errorf("checking fleet member %s: %w", m.Upstream.Addr(), err)
		}
		c.Close()
		recs = append(recs, upstream.Record{Upstream: m.Upstream, Status: upstream.Status{State: upstream.Healthy, ExitIP: m.ExitIP, Country: "US", LatencyMS: 2, OKs: 1, Checks: 1, LastCheck: time.Now(), Caps: caps}})
	}
	b, _ := json.Marshal(recs)
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return err
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	var killed []*fleet.Member
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) == 3 && fields[0] == "kill":
			var nr, nb int
			fmt.Sscan(fields[1], &nr)
			fmt.Sscan(fields[2], &nb)
			r := rand.New(rand.NewPCG(1, 2))
			perm := r.Perm(n)
			for i, idx := range perm[:nr+nb] {
				b := fleet.Refuse
				if i >= nr {
					b = fleet.Blackhole
				}
				m := f.Member(idx)
				m.SetBehavior(b)
				killed = append(killed, m)
			}
			fmt.Println("killed")
		case len(fields) == 1 && fields[0] == "revive":
			for _, m := range killed {
				m.SetBehavior(fleet.Good)
			}
			killed = nil
			fmt.Println("revived")
		}
	}
	return nil
}

// staticLoader serves the fleet's records as the pool's store.
type staticLoader []upstream.Record

func (s staticLoader) Healthy(context.Context) ([]upstream.Record, error) { return s, nil }
func (s staticLoader) Version(context.Context) (uint64, error)            { return 1, nil }

// socksDialer dials socks5 upstreams with proxypool's own client (the
// comparison row for the dial package's mihomo-based path).
type socksDialer struct{ pipeline bool }

func (d socksDialer) DialContext(ctx context.Context, u upstream.Entry, addr string) (net.Conn, error) {
	var user, pass string
	if u.Options != "" { // a bare upstream (the fleet's) has no credentials to decode
		m, err := u.Decode()
		if err != nil {
			return nil, err
		}
		user, _ = m["username"].(string)
		pass, _ = m["password"].(string)
	}
	nd := net.Dialer{KeepAlive: -1} // no keep-alive setsockopts per dial
	c, err := nd.DialContext(ctx, "tcp", u.Addr())
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	err = socks.Client{User: user, Password: pass, Pipeline: d.pipeline}.Connect(c, addr)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func runGateway(args []string) error {
	var members, listen, dialer string
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "-members":
			members = args[i+1]
		case "-listen":
			listen = args[i+1]
		case "-dialer":
			dialer = args[i+1]
		}
	}
	if _, err := gateway.RaiseFileLimit(); err != nil {
		return err
	}
	if path := os.Getenv("GATEWAY_CPUPROFILE"); path != "" {
		f, err := os.Create(path + "." + dialer) // one file per gateway child
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	b, err := os.ReadFile(members)
	if err != nil {
		return err
	}
	var recs []upstream.Record
	if err := json.Unmarshal(b, &recs); err != nil {
		return err
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	p, err := pool.New(pool.Options{Loader: staticLoader(recs), Log: log})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := p.Load(ctx); err != nil {
		return err
	}
	go p.Run(ctx)
	opts := gateway.Options{Picker: p, Log: log}
	switch dialer {
	case "socks":
		opts.Dialer = socksDialer{}
	case "socks-pipeline":
		opts.Dialer = socksDialer{pipeline: true}
	default: // "dial" (event loops) or "goroutines"
		opts.GoroutinesOnly = dialer == "goroutines"
		d := dial.New(dial.Options{})
		defer d.Close()
		opts.Dialer = d
		opts.Classify = dial.Classify
	}
	// no TCP keep-alive on accepted conns: four setsockopts fewer per
	// request (tunnels have the gateway's own idle timeout)
	lns, err := sd.Listeners(map[string]string{"main": listen}) // as proxypoold gateway listens
	if err != nil {
		return err
	}
	ln := lns["main"]
	opts.OnReady = func() { fmt.Println("ready") }
	gw, err := gateway.New(opts)
	if err != nil {
		return err
	}
	go func() { io.Copy(io.Discard, os.Stdin); stop() }() // parent gone: exit
	return gw.Run(ctx, map[string][]net.Listener{"gateway": {ln}})
}
