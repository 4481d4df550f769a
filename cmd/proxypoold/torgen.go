package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torctl"
	"github.com/proxypool/proxypool/internal/torgen"
	"github.com/proxypool/proxypool/internal/torgen/exits"
	"github.com/proxypool/proxypool/internal/torgen/torrc"
	"github.com/proxypool/proxypool/internal/torops"
	"github.com/proxypool/proxypool/internal/units"
)

// runTorgen is the one-shot unit: discover exits, write torrc files, make
// systemd run exactly the wanted tor@<port>.service instances, and list them
// in the store as upstreams of source "tor".
func runTorgen(ctx context.Context, g *globals, args []string) error {
	var dry, due bool
	var trigger string
	e, err := setup(g, "torgen", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&dry, "dry-run", false, "discover and print the plan (files written and removed, instances started and stopped); change no file, unit or store row")
		fs.BoolVar(&due, "due", false, "generate only when tor.refresh has passed since the last discovery or the config was edited since (the timer's run)")
		fs.StringVar(&trigger, "trigger", "", "the unit that started this run (systemd's $TRIGGER_UNIT): a .timer means --due")
	})
	if err != nil {
		return err
	}
	if !e.cfg.Tor.Enabled {
		open := func(ctx context.Context) (*store.Store, error) { return e.openStore(ctx, nil) }
		return torops.Disable(ctx, e.cfg.Tor.TorrcDir, open, dry, g.stdout, e.log.WithField(logging.FieldComponent, "torgen"))
	}
	if dry {
		return planTor(ctx, e, g.stdout)
	}
	st, err := e.openStore(ctx, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	if due || strings.HasSuffix(trigger, ".timer") {
		skip, err := torgenNotDue(ctx, e, st, g.stdout)
		if err != nil || skip {
			return err
		}
	}
	var run torgen.Runner
	switch {
	case e.cfg.Tor.Runner == "process":
		return fmt.Errorf("%s: tor.runner process only works inside `proxypoold run`", e.cfg.Pos("tor.runner"))
	default:
		conn, err := units.Dial(ctx)
		if err != nil {
			return fmt.Errorf("connecting to systemd (tor.runner %s): %w", e.cfg.Tor.Runner, err)
		}
		defer conn.Close()
		run = &units.Runner{M: conn, TorrcDir: e.cfg.Tor.TorrcDir, Log: e.log.WithField(logging.FieldComponent, "torgen")}
	}
	tor, err := torOps(e, st, true)
	if err != nil {
		return err
	}
	plan, err := applyRetrying(ctx, e, tor, run)
	if err != nil {
		return err
	}
	for _, in := range plan.Instances {
		fmt.Fprintf(g.stdout, "%d\t%s\t%s\n", in.Port, in.Group, in.Key)
	}
	return nil
}

// torgenNotDue is the timer's question (torops.Due) asked of the store and
// the config file; the answer is one line on w (the journal, under systemd).
func torgenNotDue(ctx context.Context, e *env, st *store.Store, w io.Writer) (skip bool, err error) {
	last, err := st.TorDiscovered(ctx)
	if err != nil {
		return false, err
	}
	var edited time.Time
	if fi, err := os.Stat(e.cfg.File); err == nil {
		edited = fi.ModTime()
	}
	due, reason := torops.Due(last, e.cfg.Tor.Refresh, edited, time.Now())
	if !due {
		fmt.Fprintf(w, "torgen: not due: %s\n", reason)
		return true, nil
	}
	fmt.Fprintf(w, "torgen: due: %s\n", reason)
	return false, nil
}

// planTor is `torgen --dry-run`: the plan from the store opened read-only
// (none yet: an empty one) and the torrc dir as they are, printed.
func planTor(ctx context.Context, e *env, w io.Writer) error {
	st, closeStore, err := torops.DryRunStore(ctx, e.cfg.Database)
	if err != nil {
		return fmt.Errorf("%s: dry run: opening the database: %w", e.cfg.Pos("database"), err)
	}
	defer closeStore()
	tor, err := torOps(e, st, true)
	if err != nil {
		return err
	}
	plan, err := tor.Plan(ctx)
	if errors.Is(err, torgen.ErrNoExits) {
		return fmt.Errorf("%s: %w", e.cfg.Pos("tor.relays"), err)
	}
	if err != nil {
		return err
	}
	return torgen.WritePlan(w, plan, e.cfg.Tor.TorrcDir)
}

// torOps maps config.Tor onto torops; systemd: Debian's tor@ instances
// (proxy-torgen, the probe), otherwise `proxypoold run`'s children.
func torOps(e *env, st *store.Store, systemd bool) (*torops.Tor, error) {
	opts, err := torOptions(e, st, systemd)
	if err != nil {
		return nil, err
	}
	return torops.New(opts)
}

// torOptions is what the config says of Tor.
func torOptions(e *env, st *store.Store, systemd bool) (torops.Options, error) {
	t := e.cfg.Tor
	mode, err := exits.ParseMode(t.Mode)
	if err != nil {
		return torops.Options{}, fmt.Errorf("%s: %w", e.cfg.Pos("tor.mode"), err)
	}
	var groups []exits.Group
	floors := map[string]int{}
	for _, name := range t.Groups {
		gr := e.cfg.Groups[name]
		groups = append(groups, exits.Group{Name: name, Countries: gr.Countries, ExcludeCountries: gr.ExcludeCountries})
		floors[name] = max(gr.MinHealthy, gr.MinExits, gr.TorInstances)
	}
	log := e.log.WithField(logging.FieldComponent, "torgen")
	return torops.Options{
		Store: st,
		Gen: torgen.Config{
			Groups: groups, Mode: mode, PortBase: t.PortBase, PortMax: t.PortMax, MaxInstances: t.MaxInstances,
			Reserved: e.cfg.UsedPorts(), TorrcDir: t.TorrcDir, DataDir: t.DataDir,
			MaxCircuitDirtiness: t.MaxCircuitDirtiness, Extra: t.ExtraConfig,
			Verify: torrc.VerifierFor(t.Binary), Log: log,
		},
		Relays: exits.Source{
			URL: t.Relays, Format: exits.Format(t.RelaysFormat), Country: e.countryFunc(),
			DialControl: func(ctx context.Context, addr string) (exits.Controller, error) {
				return torctl.Dial(ctx, addr)
			},
		},
		RelaysURL: t.Relays, Floors: floors, BootstrapGrace: t.BootstrapGrace, NewnymPeriod: t.NewnymPeriod,
		Systemd: systemd, Log: log,
	}, nil
}

// oneShotRetryBudget bounds the waits of one proxy-torgen run between
// failed generations, well under the unit's TimeoutStartSec=10min.
const oneShotRetryBudget = 5 * time.Minute

// applyRetrying is applyTor for the one-shot unit: a generation that
// fails (a discovery while the network is not up yet, at boot) is tried
// again with torops' backoff from seconds, within oneShotRetryBudget,
// rather than only at the timer's next run. No exits at all is an answer,
// not a failure to retry.
func applyRetrying(ctx context.Context, e *env, tor *torops.Tor, run torgen.Runner) (torgen.Plan, error) {
	log := e.log.WithField(logging.FieldComponent, "torgen")
	var waited time.Duration
	for fails := 1; ; fails++ {
		plan, err := applyTor(ctx, e, tor, run)
		wait := torops.RetryDelay(fails, torops.FirstRetry, e.cfg.Tor.Refresh)
		if err == nil || errors.Is(err, torgen.ErrNoExits) || ctx.Err() != nil || waited+wait > oneShotRetryBudget {
			return plan, err
		}
		log.WithError(err).Warnf("tor generation failed; trying again in %v", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return plan, err
		case <-t.C:
		}
		waited += wait
	}
}

// applyTor runs one generation and names the config key of a relay list
// without a usable exit.
func applyTor(ctx context.Context, e *env, tor *torops.Tor, run torgen.Runner) (torgen.Plan, error) {
	plan, err := tor.Apply(ctx, run)
	if errors.Is(err, torgen.ErrNoExits) {
		return plan, fmt.Errorf("%s: %w", e.cfg.Pos("tor.relays"), err)
	}
	return plan, err
}
