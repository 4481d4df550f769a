package main

// Config reload: SIGHUP (systemctl reload, `proxypoold reload`) re-reads
// the config and hands what changed to the parts that apply it live.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/proxypool/proxypool/internal/checks"
	"github.com/proxypool/proxypool/internal/clashbackend"
	"github.com/proxypool/proxypool/internal/config"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/gateway/failover"
	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/reload"
	"github.com/proxypool/proxypool/internal/source"
	"github.com/proxypool/proxypool/internal/store"
)

// The keys each process applies without a restart. "groups" is every
// filter of a group (countries, asn, class, min-throughput,
// require-targets, …); the probe's gateway keys are the Clash API's
// listeners.
var (
	gatewayLive = []string{"gateway.listen", "gateway.ports", "gateway.rotate-every", "gateway.strategy", "groups", "log.level"}
	probeLive   = []string{"gateway.listen", "gateway.ports", "log.level", "probe.asn-classes", "probe.asn-database",
		"probe.concurrency", "probe.geoip", "probe.geoip6", "probe.ipv6-judge", "probe.judges",
		"probe.real-ip", "probe.speed", "probe.target", "probe.targets", "probe.timeout", "probe.uplink-check", "sources"}
	runLive = append(append([]string(nil), gatewayLive...), probeLive...)
	// run's pool takes the groups live, but its SLO guard and tor
	// supervisor read their floors and budgets only at start
	runLater = []string{"groups.*.min-exits", "groups.*.min-healthy", "groups.*.tor-instances"}
)

// The keys each process uses: a change to one not live waits for a
// restart, and the log says so.
var (
	gatewayUses = []string{"database", "gateway", "groups", "log", "metrics.enabled", "metrics.gateway-listen"}
	probeUses   = []string{"api", "database", "groups", "log", "metrics.enabled", "metrics.listen", "probe", "slo", "sources", "tor"}
)

// reloadKeys are what one process applies of a reload: reload.Options'
// Live, Restart and Later.
type reloadKeys struct{ live, uses, later []string }

var (
	gatewayKeys = reloadKeys{live: gatewayLive, uses: gatewayUses}
	probeKeys   = reloadKeys{live: probeLive, uses: probeUses}
	runKeys     = reloadKeys{live: runLive, later: runLater}
)

func (k reloadKeys) options() reload.Options {
	return reload.Options{Live: k.live, Restart: k.uses, Later: k.later}
}

// reloadOn starts the reload loop of one daemon process: every SIGHUP
// (g.hup) re-reads the config; apply gets the new config's env.
func reloadOn(ctx context.Context, g *globals, e *env, st *store.Store, component string, keys reloadKeys, apply func(ctx context.Context, next *env, changed []string) error) *reload.Reloader {
	o := keys.options()
	o.Path, o.Component = e.cfg.File, component
	o.Record, o.Log = st.RecordReload, e.log.WithField(logging.FieldComponent, "reload")
	o.Apply = func(ctx context.Context, _, next *config.Config, changed []string) error {
		ne := &env{cfg: next, log: e.log}
		if err := apply(ctx, ne, changed); err != nil {
			return err
		}
		e.log.SetLevel(logging.ParseLevel(next.Log.Level))
		return nil
	}
	r := reload.New(o, e.cfg)
	r.Started(ctx)
	if g.hup != nil {
		go r.Run(ctx, g.hup)
	}
	return r
}

// liveGateway is the running pool and gateway a reload reconfigures, and
// the pickers of the listeners it serves (portPickers'); clash, when the
// Clash API is served over the same pool (`run`), lists the listeners.
type liveGateway struct {
	mu      sync.Mutex
	p       *pool.Pool
	gw      *gateway.Gateway
	pickers map[string]failover.Picker
	clash   *clashbackend.Backend
}

func (l *liveGateway) set(p *pool.Pool, gw *gateway.Gateway, pickers map[string]failover.Picker) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.p, l.gw, l.pickers = p, gw, pickers
	l.mu.Unlock()
}

// apply gives the pool the new groups, then the gateway its listeners,
// each with its picker: groups first, so a port pinned to a new group
// finds it. A listener whose strategy and rotation (gateway.strategy,
// rotate-every, its ports[].strategy) are unchanged keeps its picker; a
// changed one gets a new picker over the same pool (no pool-wide
// strategy, no store reload).
func (l *liveGateway) apply(ctx context.Context, next *env, changed []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, gw := l.p, l.gw
	if gw == nil {
		return errors.New("the gateway is still starting")
	}
	c := next.cfg
	pickers, err := portPickers(next, p, l.pickers)
	if err != nil {
		return err // before anything changed: the running config stays whole
	}
	if reload.Any(changed, "groups", "gateway.ports") {
		if err := p.SetGroups(poolGroups(next)); err != nil {
			return fmt.Errorf("%s: groups: %w", c.Pos("groups"), err)
		}
	}
	l.pickers = pickers
	if l.clash != nil {
		l.clash.SetPorts(clashPorts(next))
	}
	if err := gw.SetPorts(ctx, gatewayPorts(next, pickers)); err != nil {
		return fmt.Errorf("%s: gateway.ports: %w", c.Pos("gateway.ports"), err)
	}
	return nil
}

// liveClash is the probe's Clash API under systemd: a pool of its own over
// the gateway's store (the same groups, so the same members) and the
// gateway's listeners. The probe's other users of groups (the SLO guard,
// list --group, tor) take them at its restart.
type liveClash struct {
	p *pool.Pool
	b *clashbackend.Backend
}

// apply gives the API's pool the reloaded groups and the backend the
// reloaded listeners; nil (no API) does nothing.
func (l *liveClash) apply(next *env, changed []string) error {
	if l == nil || !reload.Any(changed, "groups", "gateway.listen", "gateway.ports") {
		return nil
	}
	if err := l.p.SetGroups(poolGroups(next)); err != nil {
		return fmt.Errorf("%s: groups: %w", next.cfg.Pos("groups"), err)
	}
	l.b.SetPorts(clashPorts(next))
	return nil
}

// gatewayPorts is listenerPlan as the gateway's Port list, each with its
// picker (none: the pool's own).
func gatewayPorts(e *env, pickers map[string]failover.Picker) []gateway.Port {
	want, groups := listenerPlan(e)
	out := make([]gateway.Port, 0, len(want))
	for name, addr := range want {
		out = append(out, gateway.Port{Name: name, Group: groups[name], Addr: addr, Picker: pickers[name]})
	}
	return out
}

// applySources gives a refresher the reloaded sources and, when they
// changed, refreshes now so new sources' upstreams come in at once.
func applySources(ctx context.Context, next *env, changed []string, refreshers ...*source.Refresher) {
	if !reload.Any(changed, "sources") {
		return
	}
	for _, r := range refreshers {
		r.SetSources(next.sources())
	}
	if len(refreshers) > 0 {
		go refreshers[0].Once(ctx, false)
	}
}

// applyProbe rebuilds the prober when a setting it takes changed, and
// the target and speed checks when theirs did (probe.targets,
// probe.speed: their own scheduler, not the prober's).
func applyProbe(pl *probeLoop, next *env, changed []string) error {
	var prober bool
	for _, k := range changed {
		prober = prober || reload.Any([]string{k}, "probe") && !reload.Any([]string{k}, "probe.targets", "probe.speed")
	}
	var s *checks.Scheduler // nil: the reloaded config has none
	checksChanged := reload.Any(changed, "probe.targets", "probe.speed")
	if checksChanged {
		var err error
		if s, err = pl.checks(next); err != nil { // before anything changed
			return fmt.Errorf("%s: target and speed checks: %w", next.cfg.Pos("probe.targets"), err)
		}
	}
	if prober {
		if err := pl.reconfigure(next); err != nil {
			return fmt.Errorf("probe settings: %w", err)
		}
	}
	if checksChanged {
		handOver(pl.checksSwap, s)
	}
	return nil
}

// runReload is `proxypoold reload --pid PID` (the units' ExecReload=):
// validate the config, signal the daemon, wait for it to acknowledge the
// reload it made of it. Like `nginx -s reload`, a config that does not
// validate, a reload the daemon refused, or no acknowledgement in time
// exits non-zero with the reason.
func runReload(ctx context.Context, g *globals, args []string) error {
	var pid int
	var timeout time.Duration
	if err := subFlags(g, "reload", args, func(fs *flag.FlagSet) {
		fs.IntVar(&pid, "pid", 0, "the daemon's process id (systemd: $MAINPID)")
		fs.DurationVar(&timeout, "timeout", 20*time.Second, "how long to wait for the daemon's acknowledgement")
	}); err != nil {
		return err
	}
	if pid <= 0 {
		return usageError{errors.New("--pid is required (systemd: --pid $MAINPID)")}
	}
	cfg, cfgErr := config.Load(config.Path(g.config))
	if cfgErr != nil {
		// Signal anyway: the daemon logs the same error and keeps it for
		// proxypoolctl status. Without a valid file there is no store to
		// wait on.
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("%w (and signalling pid %d: %v)", cfgErr, pid, err)
		}
		return fmt.Errorf("%w: the daemon keeps its running config", cfgErr)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := store.OpenReadOnly(ctx, cfg.Database)
	if err != nil {
		return fmt.Errorf("%s: database: %w", cfg.Pos("database"), err)
	}
	defer st.Close()
	rs, err := st.Reloads(ctx)
	if err != nil {
		return err
	}
	before, _ := reload.Of(rs, pid)
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signalling pid %d: %w", pid, err)
	}
	got, err := reload.Wait(ctx, st.Reloads, pid, before.Generation)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "%s (pid %d): config reloaded, generation %d\n", got.Component, pid, got.Generation)
	if len(got.Restart) > 0 {
		fmt.Fprintf(g.stdout, "%s (pid %d): changed but needs a restart: %s\n", got.Component, pid, strings.Join(got.Restart, ", "))
	}
	return nil
}
