// Command fleet runs a judge and a mixed fleet of loopback upstream proxies
// for the demo (make run) and for trying proxypool by hand. It writes the
// fleet as a proxy list and a Tor-format geoip file, prints a summary and
// runs until SIGINT or SIGTERM.
//
//	go run ./cmd/fleet -n 50 [-port 10800] -bad 0.3 -list var/demo-upstreams.txt -geoip var/demo-geoip -judge 127.0.0.1:18080
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/proxypool/proxypool/internal/fleet"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	n := fs.Int("n", 50, "number of upstreams")
	bad := fs.Float64("bad", 0.3, "share of misbehaving upstreams (0..1)")
	list := fs.String("list", "", "write the upstreams here, one URI per line")
	geoip := fs.String("geoip", "", "write a Tor-format geoip file mapping each upstream's exit /24 to its country")
	port := fs.Int("port", 10800, "port every upstream listens on, each on its own 127.x address (0: a free port each)")
	judge := fs.String("judge", "127.0.0.1:18080", "judge listen address (empty: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 0 || *n > fleet.MaxMembers {
		return fmt.Errorf("-n %d: want 0..%d", *n, fleet.MaxMembers)
	}
	if *bad < 0 || *bad > 1 {
		return fmt.Errorf("-bad %v: want 0..1", *bad)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *judge != "" {
		j, err := fleet.StartJudge(ctx, *judge)
		if err != nil {
			return err
		}
		defer j.Close()
		fmt.Fprintf(out, "judge     %s/headers  (/ip /get /plain)\n", j.URL)
	}
	f, err := fleet.Start(ctx, func() fleet.Spec { s := fleet.Mixed(*n, *bad); s.Port = *port; return s }())
	if err != nil {
		return err
	}
	defer f.Close()
	for path, write := range map[string]func(string) error{*list: f.WriteList, *geoip: f.WriteGeoIP} {
		if path == "" {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := write(path); err != nil {
			return err
		}
	}
	summarize(out, f, *list, *geoip)
	<-ctx.Done()
	fmt.Fprintln(out, "fleet: stopping")
	return nil // a signal is how it stops, not an error
}

func summarize(out io.Writer, f *fleet.Fleet, list, geoip string) {
	count := map[string]int{}
	for _, m := range f.Members() {
		count[fmt.Sprintf("%-7s %-11s %s", m.Spec.Kind, m.Spec.Behavior, m.Spec.Country)]++
	}
	keys := make([]string, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(out, "fleet     %d upstreams on 127.10.0.1 upward\n", len(f.Members()))
	fmt.Fprintln(out, "          kind    behavior    country  count")
	for _, k := range keys {
		fmt.Fprintf(out, "          %s       %d\n", k, count[k])
	}
	if list != "" {
		fmt.Fprintf(out, "list      %s\n", list)
	}
	if geoip != "" {
		fmt.Fprintf(out, "geoip     %s\n", geoip)
	}
	fmt.Fprintln(out, strings.Repeat("-", 40))
	fmt.Fprintln(out, "running; Ctrl-C to stop")
}
