package main

// The D-Bus control plane of the probe: internal/manager over the store,
// served with control.Serve. `proxypoold probe` exports it on the system
// bus (--user: the session bus) and `proxypoold run` on the session bus when
// one is reachable. A bus that cannot be reached is logged and never stops
// the probe.

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/manager"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/store"
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
		Refresher: e.refresher(st, pl.Trigger),
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
