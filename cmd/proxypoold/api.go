package main

import (
	"context"
	"net"
	"net/http"

	"github.com/proxypool/proxypool/internal/api"
	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/manager"
	"github.com/proxypool/proxypool/internal/sd"
	"github.com/proxypool/proxypool/internal/source"
	"github.com/proxypool/proxypool/internal/upstream"
)

// apiSocket is the FileDescriptorName of systemd/proxy-api.socket.
const apiSocket = "api"

// apiListener opens api.listen: under the probe, the socket systemd passed
// as "api" when there is one (activated, so `systemctl restart
// proxy-probe` refuses no dashboard), else the address itself. `run`
// (activated=false) always listens itself: its gateway takes what systemd
// passes. Like D-Bus control, the API is a way in, not the pool's work: an
// address that cannot be listened on is logged and nil returned, as for
// api.listen "".
func apiListener(e *env, activated bool) net.Listener {
	addr := e.cfg.API.Listen
	if addr == "" {
		return nil
	}
	var ln net.Listener
	var err error
	if activated {
		var lns map[string]net.Listener
		lns, err = sd.Listeners(map[string]string{apiSocket: addr})
		for name, l := range lns {
			if name != apiSocket { // a socket meant for another unit: a client of it must not hang
				l.Close()
			}
		}
		ln = lns[apiSocket]
	} else {
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		e.log.WithError(err).Warnf("%s: api.listen: the HTTP API is off; proxypoolctl reaches this daemon only over D-Bus", e.cfg.Pos("api.listen"))
		return nil
	}
	return ln
}

// serveAPI serves the HTTP control API over m on ln until ctx ends, and
// clash (the Clash controller, clashHandler) on every other path.
func serveAPI(ctx context.Context, e *env, ln net.Listener, m *manager.Manager, jobs *api.Jobs, clash http.Handler) error {
	log := e.log.WithField(logging.FieldComponent, "api")
	// A URL import goes through the source fetcher: its size cap, timeout
	// and redirect guard (no hop to an address nearer than the list's).
	f := &source.Fetcher{Logger: log}
	srv, err := api.New(api.Options{
		Manager: m, Jobs: jobs, Secret: e.cfg.API.Secret, CORSOrigins: e.cfg.API.CORSOrigins,
		Version: "proxypool " + version, Log: log, Fallback: clash,
		FetchURL: func(ctx context.Context, url string) ([]byte, error) {
			got, err := f.Fetch(ctx, source.Source{Name: "import", URL: url}, upstream.SourceMeta{})
			return got.Body, err
		},
	})
	if err != nil {
		ln.Close()
		return err
	}
	log.Infof("serving the HTTP API on %s", ln.Addr())
	return srv.Serve(ctx, ln)
}
