// Command proxypoolctl is the operator's CLI for proxypool. main.go is only
// the dispatcher: global flags, the verb table, usage. Each verb lives in its
// own file and adds itself to the table in that file's init function.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/proxypool/proxypool/internal/config"
)

// Exit codes shared by every verb; scripts may rely on them (see the
// usage text and proxypoolctl(1)).
const (
	exitOK         = 0
	exitFail       = 1 // the verb ran and failed (unreadable input, daemon error, …)
	exitUsage      = 2 // bad flags or arguments
	exitNotRunning = 3 // the daemon is not reachable on the bus
	exitDenied     = 4 // the daemon or the bus refused the call (needs root or group proxypool)
	exitNotFound   = 5 // no such upstream
)

// globals are the flags given before the verb (--json may also follow it).
type globals struct {
	JSON   bool   // machine output
	User   bool   // session bus instead of the system bus
	DB     string // read the store directly (list, status, export)
	Config string
	Stdin  io.Reader
}

// verb is one entry of the verb table.
type verb struct {
	run     func(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) int
	summary string // one line for the usage text
}

// verbs is the verb table; a verb's file adds itself in its init.
var verbs = map[string]verb{}

// contractVerbs is the usage order (CONTRACT.md); a verb not yet in the
// table is listed as not available.
var contractVerbs = []struct{ name, args, summary string }{
	{"parse", "[FILE|-]", "offline: parse links, lists, base64 subscriptions or Clash YAML"},
	{"import", "FILE|URL|-", "add upstreams to the store"},
	{"add", "URI", "add one upstream"},
	{"remove", "ID|URI", "remove one upstream"},
	{"list", "[--state S] [--country CC] [--group G] [--source S]", "the pool, a row each"},
	{"status", "", "counts by state, source, country, group; probe and gateway figures"},
	{"check", "[ID…] [--wait]", "probe now"},
	{"refresh", "[--wait]", "fetch sources now"},
	{"export", "--format json|txt|clash", "healthy upstreams"},
	{"tor", "status|generate|newnym [PORT]", "the Tor instances"},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses the global flags and dispatches to the verb.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{Stdin: stdin}
	fs := flag.NewFlagSet("proxypoolctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { usage(stderr, fs) }
	fs.BoolVar(&g.JSON, "json", false, "machine-readable output")
	fs.BoolVar(&g.User, "user", false, "talk to the daemon on the session bus (like systemctl --user)")
	fs.StringVar(&g.DB, "db", "", "read the store at `PATH` directly, read-only, no daemon (list, status, export)")
	fs.StringVar(&g.Config, "config", config.Path(""), "config file `PATH` (env "+config.EnvVar+")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		usage(stderr, fs)
		return exitUsage
	}
	name := fs.Arg(0)
	if name == "help" {
		usage(stdout, fs)
		return exitOK
	}
	v, ok := verbs[name]
	if !ok {
		fmt.Fprintf(stderr, "proxypoolctl: unknown verb %q\n\n", name)
		usage(stderr, fs)
		return exitUsage
	}
	return v.run(ctx, g, fs.Args()[1:], stdout, stderr)
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "usage: proxypoolctl [--json] [--user] [--db PATH] [--config PATH] VERB [ARGS]")
	fmt.Fprintln(w, "\nverbs:")
	seen := map[string]bool{}
	for _, v := range contractVerbs {
		seen[v.name] = true
		sum := v.summary
		if _, ok := verbs[v.name]; !ok {
			sum += " (not available in this build)"
		}
		fmt.Fprintf(w, "  %-8s %-30s %s\n", v.name, v.args, sum)
	}
	var extra []string
	for name := range verbs {
		if !seen[name] {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		fmt.Fprintf(w, "  %-8s %-30s %s\n", name, "", verbs[name].summary)
	}
	fmt.Fprintln(w, "\nglobal flags:")
	out := fs.Output()
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(out)
	fmt.Fprintln(w, "\nEach verb takes --json; \"proxypoolctl VERB --help\" shows its flags.")
	fmt.Fprintln(w, "\nexit status: 0 ok, 1 failed, 2 usage, 3 daemon not reachable, 4 permission denied, 5 not found")
}

// verbFlags returns a flag set for a verb, with --json bound to the global.
func (g *globals) verbFlags(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("proxypoolctl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&g.JSON, "json", g.JSON, "machine-readable output")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: proxypoolctl %s [flags] %s\n", name, strings.TrimSpace(args))
		fs.PrintDefaults()
	}
	return fs
}

// parseVerbFlags parses a verb's flags, which may come before or after its
// arguments ("parse --json f" and "parse f --json"; "--" ends flags). It
// returns the arguments; ok=false means: return code.
func parseVerbFlags(fs *flag.FlagSet, args []string) (pos []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, true
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
