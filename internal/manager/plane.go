package manager

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/control"
)

// Plane joins the store's change hook, the probe's progress and a Manager
// to a control.Server that may come later or never: the probe's D-Bus
// control plane (`proxypoold probe` on the system bus, `run` on the
// session bus when one is reachable). A bus that cannot be reached is
// logged and never stops the probe.
type Plane struct {
	log logrus.FieldLogger
	srv atomic.Pointer[control.Server]
	mgr atomic.Pointer[Manager]
}

// NewPlane returns a plane with no manager yet; log nil is silent.
func NewPlane(log logrus.FieldLogger) *Plane {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	return &Plane{log: log}
}

// OnChange is the store's OnChange: PoolChanged for the gateways, and the
// count properties.
func (p *Plane) OnChange(v uint64) {
	srv := p.srv.Load()
	if srv == nil {
		return
	}
	if err := srv.PoolChanged(v); err != nil {
		p.log.WithError(err).Debug("emitting PoolChanged")
	}
	p.publishCounts(context.Background())
}

func (p *Plane) publishCounts(ctx context.Context) {
	srv, m := p.srv.Load(), p.mgr.Load()
	if srv == nil || m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if c, err := m.Counts(ctx); err == nil {
		srv.SetCounts(c)
	}
}

// ProbeProgress is the probe loop's progress hook.
func (p *Plane) ProbeProgress(done, total int, finished bool) {
	if m := p.mgr.Load(); m != nil {
		m.ProbeProgress(done, total, finished)
	}
}

// Start builds the Manager of o (its Emit and Log are the plane's) and
// serves it on the system bus (system) or the session bus until ctx
// ends. The manager works (and Status sees probe progress) even when the
// bus does not; then Start logs why.
func (p *Plane) Start(ctx context.Context, o Options, system bool) *Manager {
	m := p.Manage(ctx, o)
	bus, connect := "session", dbus.ConnectSessionBus
	if system {
		bus, connect = "system", dbus.ConnectSystemBus
	}
	conn, err := connect(dbus.WithContext(ctx))
	if err != nil {
		p.log.WithError(err).Warnf("D-Bus control is off: cannot connect to the %s bus; proxypoolctl will not reach this daemon, probing goes on", bus)
		return m
	}
	srv, err := control.Serve(ctx, conn, m, control.Options{Log: p.log})
	if err != nil {
		conn.Close()
		p.log.WithError(err).Warnf("D-Bus control is off on the %s bus; proxypoolctl will not reach this daemon, probing goes on", bus)
		return m
	}
	p.srv.Store(srv)
	p.log.Infof("serving %s on the %s bus", control.BusName, bus)
	go func() {
		defer conn.Close()
		t := time.NewTicker(15 * time.Second) // states change without a version bump
		defer t.Stop()
		for {
			p.publishCounts(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return m
}

// Manage builds the Manager of o without a bus (Start uses it; `run`
// calls it alone when no session bus exists, for the HTTP API): its
// progress goes to o.Emit (the HTTP API's jobs) and, once Start has
// joined a bus, to D-Bus; it sees the probe's progress; it closes when
// ctx ends.
func (p *Plane) Manage(ctx context.Context, o Options) *Manager {
	also := o.Emit
	o.Emit = func(pr control.Progress) {
		if srv := p.srv.Load(); srv != nil {
			srv.Progress(pr)
		}
		if also != nil {
			also(pr)
		}
	}
	o.Log = p.log
	m := New(o)
	p.mgr.Store(m)
	go func() {
		<-ctx.Done()
		m.Close()
	}()
	return m
}

// SessionBusConfigured reports whether a session bus is there to join
// without autolaunching one (godbus would run dbus-launch otherwise).
func SessionBusConfigured() bool {
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
