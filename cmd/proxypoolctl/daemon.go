package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/proxypool/proxypool/internal/api"
	"github.com/proxypool/proxypool/internal/config"
	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/manager"
	"github.com/proxypool/proxypool/internal/store"
)

// backend is what a verb talks to: the daemon over D-Bus (*control.Client)
// or its HTTP API (*api.Client), or, with --db, a manager over the store
// opened read-only.
type backend struct {
	control.Manager
	client watcher // nil with --db
	close  func()
}

// watcher follows a daemon's jobs: both clients do, over signals or an
// event stream.
type watcher interface {
	WatchProgress(ctx context.Context, jobs ...string) (<-chan control.Progress, error)
	Counts(ctx context.Context) (control.Counts, error)
}

// dbError is a store that --db cannot open.
type dbError struct{ error }

func (e dbError) Unwrap() error { return e.error }

// connect opens the backend for c's verb. readOnly verbs may use --db; the
// others need the daemon.
func (c *cmd) connect(ctx context.Context, readOnly bool) (*backend, error) {
	g, verb := c.globals, c.verb
	if g.DB != "" {
		if !readOnly {
			return nil, usageErr{fmt.Errorf("--db reads the store only; %s needs the daemon (drop --db)", verb)}
		}
		st, err := store.OpenReadOnly(ctx, g.DB)
		if err != nil {
			return nil, dbError{err} // names the file and says what to do
		}
		// whoever could open the file may read the credentials in it
		m := manager.New(manager.Options{Store: st, Trusted: true})
		return &backend{Manager: m, close: func() { m.Close(); st.Close() }}, nil
	}
	if g.API != "" {
		return c.apiBackend(ctx, g.API, g.secret(nil), nil)
	}
	var busErr error
	if g.User && !manager.SessionBusConfigured() {
		// godbus would run dbus-launch and fail with words about X11.
		busErr = busError{errors.New("no session bus (DBUS_SESSION_BUS_ADDRESS is unset)")}
	} else if cl, err := control.Dial(ctx, !g.User); err != nil {
		busErr = busError{err}
	} else if _, err := cl.Counts(ctx); errors.Is(err, control.ErrNotRunning) {
		cl.Close()
		busErr = err
	} else {
		return &backend{Manager: cl, client: cl, close: func() { cl.Close() }}, nil
	}
	// No daemon on the bus: `proxypoold run` without a session bus is
	// reached over the HTTP API its config names.
	cfg, err := config.Load(config.Path(g.Config))
	if err != nil || cfg.API.Listen == "" {
		return nil, busErr
	}
	return c.apiBackend(ctx, apiURL(cfg.API.Listen), g.secret(cfg), busErr)
}

// apiBackend is the daemon's HTTP API at base. busErr, when set, is why
// D-Bus was not used: a daemon the API does not reach either is reported
// with both reasons.
func (c *cmd) apiBackend(ctx context.Context, base, secret string, busErr error) (*backend, error) {
	cl, err := api.NewClient(base, secret, nil)
	if err != nil {
		return nil, usageErr{fmt.Errorf("--api: %w", err)}
	}
	if busErr != nil {
		if _, err := cl.Counts(ctx); errors.Is(err, control.ErrNotRunning) {
			return nil, fmt.Errorf("%w; nor does its HTTP API answer at %s", busErr, base)
		}
	}
	return &backend{Manager: cl, client: cl, close: func() {}}, nil
}

// apiURL is the URL of a listen address; a wildcard host is reached on
// loopback.
func apiURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// secret is the API secret: --api-secret, else PROXYPOOL_API_SECRET, else
// the config's api.secret.
func (g *globals) secret(cfg *config.Config) string {
	if g.APISecret != "" {
		return g.APISecret
	}
	if s := os.Getenv(apiSecretEnv); s != "" {
		return s
	}
	if cfg == nil {
		if c, err := config.Load(config.Path(g.Config)); err == nil {
			cfg = c
		}
	}
	if cfg != nil {
		return cfg.API.Secret
	}
	return ""
}

// busError is a bus that cannot be reached at all.
type busError struct{ error }

func (e busError) Unwrap() error { return e.error }

type usageErr struct{ error }

func (e usageErr) Unwrap() error { return e.error }

// fail prints err for c's verb and returns the exit code scripts rely on.
func (c *cmd) fail(err error) int {
	fmt.Fprintf(c.stderr, "proxypoolctl %s: %v\n", c.verb, err)
	return codeOf(err)
}

func codeOf(err error) int {
	var ue usageErr
	var be busError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue), errors.Is(err, control.ErrInvalid):
		return exitUsage
	case errors.As(err, &be), errors.Is(err, control.ErrNotRunning):
		return exitNotRunning
	case errors.Is(err, control.ErrAccessDenied), errors.Is(err, os.ErrPermission):
		return exitDenied
	case errors.Is(err, control.ErrNotFound):
		return exitNotFound
	}
	return exitFail
}

// printJSON writes v as one JSON document.
func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// fetch is c.call for a request that answers with a value.
func fetch[T any](ctx context.Context, c *cmd, readOnly bool, req func(*backend) (T, error)) (T, int) {
	var v T
	code := c.call(ctx, readOnly, func(b *backend) (err error) {
		v, err = req(b)
		return err
	})
	return v, code
}

// call is a verb's request to the backend: connect (through --db when the
// verb is readOnly), hand the backend to fn, close it. An error from either
// step is printed for the verb and becomes the exit code.
func (c *cmd) call(ctx context.Context, readOnly bool, fn func(*backend) error) int {
	b, err := c.connect(ctx, readOnly)
	if err != nil {
		return c.fail(err)
	}
	defer b.close()
	if err := fn(b); err != nil {
		return c.fail(err)
	}
	return exitOK
}
