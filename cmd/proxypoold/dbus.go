package main

// The D-Bus control plane of the probe: internal/manager over the store,
// served with control.Serve. `proxypoold probe` exports it on the system
// bus (--user: the session bus) and `proxypoold run` on the session bus when
// one is reachable. A bus that cannot be reached is logged and never stops
// the probe.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/manager"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torctl"
	"github.com/proxypool/proxypool/internal/torgen"
	"github.com/proxypool/proxypool/internal/torgen/torrc"
	"github.com/proxypool/proxypool/internal/units"
	"github.com/proxypool/proxypool/internal/upstream"
)

// controlPlane joins the store's change hook, the probe's progress and the
// manager to a control.Server that may come later or never.
type controlPlane struct {
	log logrus.FieldLogger
	srv atomic.Pointer[control.Server]
	mgr atomic.Pointer[manager.Manager]
	// floors, when set before start, adds the SLO guard's floors to Status.
	floors func() []control.GroupFloor
}

func newControlPlane(e *env) *controlPlane {
	return &controlPlane{log: e.log.WithField(logging.FieldComponent, "control")}
}

// onChange is the store's OnChange: PoolChanged for the gateways, and the
// count properties.
func (cp *controlPlane) onChange(v uint64) {
	srv := cp.srv.Load()
	if srv == nil {
		return
	}
	if err := srv.PoolChanged(v); err != nil {
		cp.log.WithError(err).Debug("emitting PoolChanged")
	}
	cp.publishCounts(context.Background())
}

func (cp *controlPlane) publishCounts(ctx context.Context) {
	srv, m := cp.srv.Load(), cp.mgr.Load()
	if srv == nil || m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if c, err := m.Counts(ctx); err == nil {
		srv.SetCounts(c)
	}
}

// onProgress is the probe loop's progress hook.
func (cp *controlPlane) onProgress(p probe.Progress) {
	if m := cp.mgr.Load(); m != nil {
		m.ProbeProgress(p.Done, p.Total, p.Finished)
	}
}

// start builds the manager and serves it on the system bus (system) or
// the session bus. The manager works (and Status sees probe progress)
// even when the bus does not; then start logs why and returns nil.
func (cp *controlPlane) start(ctx context.Context, e *env, st *store.Store, pl *probeLoop, system bool, tor manager.Tor) *manager.Manager {
	m := manager.New(manager.Options{
		Store:     st,
		Checker:   pl,
		Refresher: &daemonRefresher{e: e, st: st, added: pl.Trigger},
		Tor:       tor,
		Floors:    cp.floors,
		Emit: func(p control.Progress) {
			if srv := cp.srv.Load(); srv != nil {
				srv.Progress(p)
			}
		},
		Log: cp.log,
	})
	cp.mgr.Store(m)
	go func() {
		<-ctx.Done()
		m.Close()
	}()
	bus, connect := "session", dbus.ConnectSessionBus
	if system {
		bus, connect = "system", dbus.ConnectSystemBus
	}
	conn, err := connect(dbus.WithContext(ctx))
	if err != nil {
		cp.log.WithError(err).Warnf("D-Bus control is off: cannot connect to the %s bus; proxypoolctl will not reach this daemon, probing goes on", bus)
		return m
	}
	srv, err := control.Serve(ctx, conn, m, control.Options{Log: cp.log})
	if err != nil {
		conn.Close()
		cp.log.WithError(err).Warnf("D-Bus control is off on the %s bus; proxypoolctl will not reach this daemon, probing goes on", bus)
		return m
	}
	cp.srv.Store(srv)
	cp.log.Infof("serving %s on the %s bus", control.BusName, bus)
	go func() {
		defer conn.Close()
		t := time.NewTicker(15 * time.Second) // states change without a version bump
		defer t.Stop()
		for {
			cp.publishCounts(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return m
}

// sessionBusConfigured reports whether a session bus is there to join
// without autolaunching one (godbus would run dbus-launch otherwise).
func sessionBusConfigured() bool {
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") != "" {
		return true
	}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		if fi, err := os.Stat(filepath.Join(dir, "bus")); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return true
		}
	}
	return false
}

// daemonRefresher is proxypoolctl refresh: every configured source, now
// (an operator asked; min-interval is for the timers), then a probe pass
// when something new came in.
type daemonRefresher struct {
	e     *env
	st    *store.Store
	added func()
	mu    sync.Mutex
}

func (r *daemonRefresher) Refresh(ctx context.Context, progress func(done, total int)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	srcs := r.e.sources()
	if len(srcs) == 0 {
		return errors.New("no sources configured (sources: in the config): nothing to refresh")
	}
	f := r.e.fetcher()
	f.Progress = progress
	sums := f.Refresh(ctx, r.st, srcs, true)
	log := r.e.log.WithField(logging.FieldComponent, "refresh")
	failed, added := 0, false
	for _, s := range sums {
		l := log.WithField(logging.FieldSource, s.Source)
		switch {
		case s.Err != "":
			failed++
			l.WithField("error", s.Err).Warnf("source %s failed: %s (its upstreams are kept)", s.Source, s.Err)
		case s.NotModified:
			l.Infof("source %s not modified", s.Source)
		default:
			added = added || s.New > 0
			l.Infof("source %s: %d new, %d seen again, %d gone, %d failed lines", s.Source, s.New, s.Seen, s.Gone, s.Failed)
		}
	}
	if added {
		r.added()
	}
	if failed == len(sums) {
		return fmt.Errorf("every source failed (%d)", failed)
	}
	return nil
}

// daemonTor answers the tor methods from the store's tor upstreams and the
// instances' control sockets. With systemd the unit states come from
// systemd and generate starts proxy-torgen.service (the probe may not write
// /etc/tor itself); dataDir is where `proxypoold run` keeps its instances.
type daemonTor struct {
	e       *env
	st      *store.Store
	systemd bool
	dataDir string // run mode: instance control sockets live under it
}

// instances lists the tor instances (of group; "" every group) from the
// store's tor upstreams.
func (t *daemonTor) instances(ctx context.Context, group string) ([]upstream.Record, error) {
	recs, err := t.st.List(ctx, store.Filter{Type: string(upstream.Tor), Group: group, OrderBy: "id"})
	if err != nil {
		return nil, fmt.Errorf("listing tor instances: %w", err)
	}
	return recs, nil
}

func (t *daemonTor) controlAddr(port int) string {
	if t.systemd {
		return sysControlAddr(port) // torsys.go
	}
	in := torgen.Instance{Instance: torrc.Instance{Port: port}}
	if t.dataDir != "" {
		in.ControlSocket = t.dataDir + "/" + strconv.Itoa(port) + "/control"
	}
	return torgen.ControlAddr(in)
}

// password authenticates the control ports of systemd instances
// (torsys.go); "" in run mode, whose children's sockets take the cookie.
func (t *daemonTor) password(ctx context.Context) (string, error) {
	if !t.systemd {
		return "", nil
	}
	return torControlPassword(ctx, t.st)
}

// dial reaches one instance's control.
func (t *daemonTor) dial(ctx context.Context, port int) (*torctl.Conn, error) {
	pw, err := t.password(ctx)
	if err != nil {
		return nil, err
	}
	return torctl.DialPassword(ctx, t.controlAddr(port), pw)
}

func (t *daemonTor) Status(ctx context.Context) ([]control.TorInstance, error) {
	recs, err := t.instances(ctx, "")
	if err != nil {
		return nil, err
	}
	states := map[string]string{}
	if t.systemd && len(recs) > 0 {
		var names []string
		for _, r := range recs {
			names = append(names, units.UnitName(r.Port))
		}
		if conn, err := units.Dial(ctx); err == nil {
			if us, err := conn.ListUnitsByNamesContext(ctx, names); err == nil {
				for _, u := range us {
					states[u.Name] = u.ActiveState
				}
			}
			conn.Close()
		}
	}
	out := make([]control.TorInstance, len(recs))
	var wg sync.WaitGroup
	for i, r := range recs {
		out[i] = control.TorInstance{Port: r.Port, Group: r.Group, Unit: units.UnitName(r.Port), Country: r.Country, ExitIP: r.ExitIP}
		if s, ok := states[out[i].Unit]; ok {
			out[i].State = s
		}
		wg.Add(1)
		go func(in *control.TorInstance) { // the exit tor uses now, when its control answers
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			c, err := t.dial(cctx, in.Port)
			if err != nil {
				if in.State == "" {
					in.State = "unreachable"
				}
				return
			}
			defer c.Close()
			if in.State == "" {
				in.State = "running"
			}
			if relay, _, err := c.CurrentExit(cctx); err == nil {
				in.ExitIP, in.Country = relay.Address, relay.Country
			}
		}(&out[i])
	}
	wg.Wait()
	return out, nil
}

func (t *daemonTor) Newnym(ctx context.Context, port int) error {
	recs, err := t.instances(ctx, "")
	if err != nil {
		return err
	}
	pw, err := t.password(ctx)
	if err != nil {
		return err
	}
	var errs []error
	n := 0
	for _, r := range recs {
		if port != 0 && r.Port != port {
			continue
		}
		n++
		if err := torctl.NewNym(ctx, t.controlAddr(r.Port), pw); err != nil {
			errs = append(errs, fmt.Errorf("tor on port %d: %w", r.Port, err))
		}
	}
	if n == 0 {
		if port != 0 {
			return fmt.Errorf("no tor instance on port %d (proxypoolctl tor status): %w", port, control.ErrNotFound)
		}
		return fmt.Errorf("no tor instances (proxypoolctl tor generate): %w", control.ErrNotFound)
	}
	return errors.Join(errs...)
}

func (t *daemonTor) Generate(ctx context.Context, progress func(done, total int)) error {
	if !t.systemd {
		return errors.New("tor generate needs systemd (proxy-torgen.service); proxypoold run regenerates every tor.refresh")
	}
	progress(0, 1)
	conn, err := units.Dial(ctx)
	if err != nil {
		return fmt.Errorf("connecting to systemd: %w", err)
	}
	defer conn.Close()
	ch := make(chan string, 1)
	if _, err := conn.StartUnitContext(ctx, "proxy-torgen.service", "replace", ch); err != nil {
		return fmt.Errorf("starting proxy-torgen.service: %w (or run: systemctl start proxy-torgen.service)", err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("proxy-torgen.service: %s (journalctl -u proxy-torgen)", res)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	progress(1, 1)
	return nil
}
