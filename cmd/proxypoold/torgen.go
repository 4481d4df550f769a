package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torctl"
	"github.com/proxypool/proxypool/internal/torgen"
	"github.com/proxypool/proxypool/internal/torgen/exits"
	"github.com/proxypool/proxypool/internal/torgen/torrc"
	"github.com/proxypool/proxypool/internal/units"
	"github.com/proxypool/proxypool/internal/upstream"
)

// runTorgen is the one-shot unit: discover exits, write torrc files, make
// systemd run exactly the wanted tor@<port>.service instances, and list them
// in the store as upstreams of source "tor".
func runTorgen(ctx context.Context, g *globals, args []string) error {
	var dry bool
	if err := subFlags(g, "torgen", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&dry, "dry-run", false, "discover and print the plan; write and start nothing")
	}); err != nil {
		return err
	}
	e, err := load(g)
	if err != nil {
		return err
	}
	if !e.cfg.Tor.Enabled {
		return disableTor(ctx, e, dry)
	}
	var run torgen.Runner
	switch {
	case dry:
		run = noRunner{}
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
	st, err := e.openStore(ctx, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	plan, err := generateTor(ctx, e, st, run, true)
	if err != nil {
		return err
	}
	for _, in := range plan.Instances {
		fmt.Fprintf(g.stdout, "%d\t%s\t%s\n", in.Port, in.Group, in.Key)
	}
	return nil
}

type noRunner struct{}

func (noRunner) Apply(context.Context, []int, []int) error { return nil }

// torConfig maps config.Tor onto torgen.Config. systemd instances keep
// Debian's data directory and control socket (DataDir empty).
func torConfig(e *env, systemd bool) (torgen.Config, error) {
	t := e.cfg.Tor
	mode, err := exits.ParseMode(t.Mode)
	if err != nil {
		return torgen.Config{}, fmt.Errorf("%s: %w", e.cfg.Pos("tor.mode"), err)
	}
	var groups []exits.Group
	for _, name := range t.Groups {
		gr := e.cfg.Groups[name]
		groups = append(groups, exits.Group{Name: name, Countries: gr.Countries, ExcludeCountries: gr.ExcludeCountries})
	}
	c := torgen.Config{
		Groups: groups, Mode: mode, PortBase: t.PortBase, PortMax: t.PortMax, MaxInstances: t.MaxInstances,
		Reserved: e.cfg.UsedPorts(), TorrcDir: t.TorrcDir, DataDir: t.DataDir,
		MaxCircuitDirtiness: t.MaxCircuitDirtiness, Extra: t.ExtraConfig,
		Verify: torrc.FindVerifier(), Log: e.log.WithField(logging.FieldComponent, "torgen"),
	}
	if systemd {
		c.DataDir = ""
	}
	return c, nil
}

func relaySource(e *env) exits.Source {
	return exits.Source{
		URL:    e.cfg.Tor.Relays,
		Format: exits.Format(e.cfg.Tor.RelaysFormat),
		DialControl: func(ctx context.Context, addr string) (exits.Controller, error) {
			return torctl.Dial(ctx, addr)
		},
		Country: e.countryFunc(),
	}
}

// generateTor runs one discovery+generation within each tor group's
// instance budget (torBudget, torsys.go) and records the result: relays,
// the instances as upstreams of source "tor", and each group's unused
// slots for the SLO guard's scale-up.
func generateTor(ctx context.Context, e *env, st *store.Store, run torgen.Runner, systemd bool) (torgen.Plan, error) {
	cfg, err := torConfig(e, systemd)
	if err != nil {
		return torgen.Plan{}, err
	}
	log := e.log.WithField(logging.FieldComponent, "torgen")
	cfg.GroupMax = torBudget(ctx, e, st, log)
	if systemd { // a control port the probe can reach (torsys.go)
		if pw, err := torControlPassword(ctx, st); err != nil {
			log.WithError(err).Warn("no tor control password: the probe cannot NEWNYM the instances")
		} else if pw != "" {
			cfg.ControlPortOffset, cfg.ControlPasswordHash = torControlPortOffset, torControlHash(pw)
		}
	}
	if err := os.MkdirAll(cfg.TorrcDir, 0o755); err != nil {
		return torgen.Plan{}, fmt.Errorf("%s: creating torrc dir: %w", e.cfg.Pos("tor.torrc-dir"), err)
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return torgen.Plan{}, fmt.Errorf("%s: creating data dir: %w", e.cfg.Pos("tor.data-dir"), err)
		}
	}
	plan, err := torgen.Generate(ctx, cfg, relaySource(e), run)
	if err != nil {
		if errors.Is(err, torgen.ErrNoExits) {
			return plan, fmt.Errorf("%s: %w", e.cfg.Pos("tor.relays"), err)
		}
		return plan, err
	}
	if err := recordUnused(ctx, st, plan); err != nil {
		log.WithError(err).Warn("recording unused tor slots for the SLO guard")
	}
	if err := st.ReplaceRelays(ctx, plan.Relays); err != nil {
		log.WithError(err).Warn("storing relays")
	}
	sum, err := st.UpsertSource(ctx, upstream.SourceMeta{Name: "tor", URL: e.cfg.Tor.Relays, Format: "tor"}, torgen.Upstreams(plan))
	if err != nil {
		return plan, fmt.Errorf("recording tor instances in the store: %w", err)
	}
	for _, g := range plan.EmptyGroups {
		log.WithField(logging.FieldGroup, g).Warnf("tor group %s: no usable exit matches it", g)
	}
	log.Infof("tor: %d relays, %d usable exits, %d instances (%d changed, %d removed); store: %d new, %d gone",
		len(plan.Relays), plan.Usable, len(plan.Instances), len(plan.Changed), len(plan.Removed), sum.New, sum.Gone)
	return plan, nil
}

// disableTor stops and removes the tor@ instances an earlier torgen made
// once tor.enabled is false, and takes them out of the store.
func disableTor(ctx context.Context, e *env, dry bool) error {
	log := e.log.WithField(logging.FieldComponent, "torgen")
	r := &units.Runner{TorrcDir: e.cfg.Tor.TorrcDir, Log: log}
	owned, err := r.Owned()
	if err != nil || len(owned) == 0 || dry {
		log.Infof("%s: tor.enabled is false: nothing to do (no instance of ours runs)", e.cfg.Pos("tor.enabled"))
		return nil
	}
	conn, err := units.Dial(ctx)
	if err != nil {
		return fmt.Errorf("tor.enabled is false but %d instances of ours exist; connecting to systemd to stop them: %w", len(owned), err)
	}
	defer conn.Close()
	r.M = conn
	if err := r.Apply(ctx, nil, nil); err != nil {
		return fmt.Errorf("stopping tor instances %v: %w", owned, err)
	}
	if _, err := torrc.RemoveStale(e.cfg.Tor.TorrcDir, nil); err != nil {
		log.WithError(err).Warn("removing generated torrc files")
	}
	st, err := e.openStore(ctx, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.UpsertSource(ctx, upstream.SourceMeta{Name: "tor", Format: "tor"}, nil); err != nil {
		return fmt.Errorf("removing tor instances from the store: %w", err)
	}
	log.Infof("tor.enabled is false: stopped and removed tor instances %v", owned)
	return nil
}
