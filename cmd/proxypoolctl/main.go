// Command proxypoolctl is the operator's CLI for proxypool. main.go is only
// the dispatcher: global flags, the verb table, usage. Each verb lives in its
// own file; the table here names them all, in the order the usage lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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
	// API is the daemon's HTTP API (--api URL); "" tries D-Bus first, then
	// the config's api.listen. APISecret is its bearer secret.
	API       string
	APISecret string
	Stdin     io.Reader
}

// apiSecretEnv holds the API secret when --api-secret is not given (so
// that it stays out of ps).
const apiSecretEnv = "PROXYPOOL_API_SECRET"

// verb is one entry of the verb table.
type verb struct {
	name    string
	args    string // the operands, in the usage text and the verb's own
	flags   string // flags the usage text names after the operands
	summary string // one line for the usage text
	run     func(ctx context.Context, c *cmd) int
}

// verbs is the verb table in usage order: CONTRACT.md's verbs, then top.
var verbs = []verb{
	{"parse", "[FILE|-]", "", "offline: parse links, lists, base64 subscriptions or Clash YAML", runParse},
	{"import", "FILE|URL|-", "", "add upstreams to the store", runImport},
	{"add", "URI", "", "add one upstream", runAdd},
	{"remove", "ID|URI", "", "remove one upstream (a source still listing it does not bring it back)", runRemove},
	{"restore", "ID|URI…", "", "bring removed or retired upstreams back into the pool", runRestore},
	{"list", "", "[--state S] [--country CC] [--group G] [--source S] [--anonymity A] [--min-score N] [--asn N] [--class C]", "the pool, a row each", runList},
	{"status", "", "", "counts by state, source, country, group; probe and gateway figures", runStatus},
	{"check", "[ID…]", "[--wait]", "probe now", runCheck},
	{"refresh", "", "[--wait]", "fetch sources now", runRefresh},
	{"export", "--format json|txt|clash", "[--anonymity A] [--country CC] [--group G] [--source S] [--min-score N] [--asn N] [--class C]", "healthy upstreams", runExport},
	{"tor", "status|generate|newnym [PORT]", "", "the Tor instances", runTor},
	{"top", "", "", "live view of pool, gateway and probe, from the metrics endpoint", runTop},
}

// cmd is one verb being run: the globals, the verb's own flag set (its
// flags are declared on it before c.parse), its arguments, the streams.
type cmd struct {
	*globals
	verb           string // for messages: "tor status" inside tor
	fs             *flag.FlagSet
	args           []string
	stdout, stderr io.Writer
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
	fs.StringVar(&g.API, "api", "", "talk to the daemon's HTTP API at `URL` (e.g. http://127.0.0.1:9090) instead of D-Bus; without it the config's api.listen is tried when no daemon is on the bus")
	fs.StringVar(&g.APISecret, "api-secret", "", "the API's bearer `SECRET` (env "+apiSecretEnv+", else api.secret from the config)")
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
	for _, v := range verbs {
		if v.name == name {
			c := &cmd{globals: g, verb: name, fs: g.verbFlags(name, v.args, stderr), args: fs.Args()[1:], stdout: stdout, stderr: stderr}
			return v.run(ctx, c)
		}
	}
	fmt.Fprintf(stderr, "proxypoolctl: unknown verb %q\n\n", name)
	usage(stderr, fs)
	return exitUsage
}

func usage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "usage: proxypoolctl [--json] [--user] [--db PATH] [--config PATH] [--api URL] [--api-secret S] VERB [ARGS]")
	fmt.Fprintln(w, "\nverbs:")
	for _, v := range verbs {
		fmt.Fprintf(w, "  %-8s %-30s %s\n", v.name, strings.TrimSpace(v.args+" "+v.flags), v.summary)
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

// parseAny parses c's flags, which may come before or after its operands
// ("parse --json f" and "parse f --json"; "--" ends flags), and returns
// every operand. ok=false means: return code.
func (c *cmd) parseAny() (pos []string, code int, ok bool) {
	args := c.args
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		rest := c.fs.Args()
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

// parse is parseAny holding the verb to its operands: none when one is "",
// else exactly one, which one describes for the error ("exactly one URI").
func (c *cmd) parse(one string) (pos []string, code int, ok bool) {
	if pos, code, ok = c.parseAny(); !ok {
		return nil, code, false
	}
	if one == "" {
		if !c.noArgs(pos) {
			return nil, exitUsage, false
		}
		return pos, 0, true
	}
	if len(pos) != 1 {
		fmt.Fprintf(c.stderr, "proxypoolctl %s: want %s\n", c.verb, one)
		c.fs.Usage()
		return nil, exitUsage, false
	}
	return pos, 0, true
}

// noArgs complains about operands a verb does not take.
func (c *cmd) noArgs(pos []string) bool {
	if len(pos) > 0 {
		fmt.Fprintf(c.stderr, "proxypoolctl %s: unexpected argument %q\n", c.verb, pos[0])
		return false
	}
	return true
}
