// Command proxypoold is proxypool's daemon: one binary, one subcommand per
// systemd unit (gateway, probe, refresh, torgen) plus run, which is all of
// them in one foreground process. This package is wiring only.
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
	"syscall"
)

var version = "dev"

type command struct {
	summary string
	run     func(ctx context.Context, g *globals, args []string) error
}

var commands = map[string]command{
	"refresh": {"fetch every source once, upsert into the store, tell the probe", runRefresh},
	"probe":   {"the long-running health checker (--once: one pass, then exit)", runProbe},
	"gateway": {"the (socket-activated) gateway: HTTP + SOCKS on one port, plus pinned ports", runGateway},
	"torgen":  {"discover Tor exits, write torrc.<port> files, start/stop tor instances", runTorgen},
	"run":     {"the whole stack in one foreground process (make run, containers)", runAll},
	"reload":  {"make a running daemon re-read its config (--pid PID; the units' ExecReload)", runReload},
}

type globals struct {
	config string
	stdout io.Writer
	stderr io.Writer
	// hup carries SIGHUP to the daemon's reload loop; taken from the
	// start, so a SIGHUP before the loop runs does not kill the process
	hup <-chan os.Signal
}

func main() {
	os.Exit(mainArgs(os.Args[1:], os.Stdout, os.Stderr))
}

func mainArgs(args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("proxypoold", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&g.config, "config", "", "config file (default $PROXYPOOL_CONFIG or /etc/proxypool/proxypool.yaml)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() { usage(stderr) }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "proxypoold", version)
		return 0
	}
	rest := fs.Args()
	if len(rest) == 0 {
		usage(stderr)
		return 2
	}
	cmd, ok := commands[rest[0]]
	if !ok {
		fmt.Fprintf(stderr, "proxypoold: unknown command %q\n", rest[0])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	g.hup = hup
	signal.Ignore(syscall.SIGPIPE)
	err := cmd.run(ctx, g, rest[1:])
	var ue usageError
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "proxypoold %s: %v\n", rest[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "proxypoold %s: %v\n", rest[0], err)
		return 1
	}
}

type usageError struct{ error }

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: proxypoold [--config PATH] COMMAND [flags]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
}

// setup parses a subcommand's flags, then loads the config they name;
// --config is accepted after the subcommand too ("proxypoold probe --config x").
func setup(g *globals, name string, args []string, define func(fs *flag.FlagSet)) (*env, error) {
	if err := subFlags(g, name, args, define); err != nil {
		return nil, err
	}
	return load(g)
}

func subFlags(g *globals, name string, args []string, define func(fs *flag.FlagSet)) error {
	fs := flag.NewFlagSet("proxypoold "+name, flag.ContinueOnError)
	fs.SetOutput(g.stderr)
	fs.StringVar(&g.config, "config", g.config, "config file")
	if define != nil {
		define(fs)
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}
