package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/manager"
	"github.com/proxypool/proxypool/internal/store"
)

// backend is what a verb talks to: the daemon over D-Bus (*control.Client)
// or, with --db, a manager over the store opened read-only.
type backend struct {
	control.Manager
	client *control.Client // nil with --db
	close  func()
}

// dbError is a store that --db cannot open.
type dbError struct{ error }

func (e dbError) Unwrap() error { return e.error }

// connect opens the backend for verb. readOnly verbs may use --db; the
// others need the daemon.
func connect(ctx context.Context, g *globals, verb string, readOnly bool) (*backend, error) {
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
	c, err := control.Dial(ctx, !g.User)
	if err != nil {
		return nil, busError{err}
	}
	return &backend{Manager: c, client: c, close: func() { c.Close() }}, nil
}

// busError is a bus that cannot be reached at all.
type busError struct{ error }

func (e busError) Unwrap() error { return e.error }

type usageErr struct{ error }

func (e usageErr) Unwrap() error { return e.error }

// fail prints err for verb and returns the exit code scripts rely on.
func fail(stderr io.Writer, verb string, err error) int {
	fmt.Fprintf(stderr, "proxypoolctl %s: %v\n", verb, err)
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

// parseArgs parses a verb's flags and holds it to its positional arguments:
// none when one is "", else exactly one, which one describes for the error
// ("exactly one URI"). ok=false means: return code.
func parseArgs(fs *flag.FlagSet, args []string, stderr io.Writer, verb, one string) (pos []string, code int, ok bool) {
	if pos, code, ok = parseVerbFlags(fs, args); !ok {
		return nil, code, false
	}
	if one == "" {
		if !noArgs(stderr, verb, pos) {
			return nil, exitUsage, false
		}
		return pos, 0, true
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "proxypoolctl %s: want %s\n", verb, one)
		fs.Usage()
		return nil, exitUsage, false
	}
	return pos, 0, true
}

// call is a verb's request to the backend: connect (through --db when the
// verb is readOnly), hand the backend to fn, close it. An error from either
// step is printed for verb and becomes the exit code.
func call(ctx context.Context, g *globals, verb string, readOnly bool, stderr io.Writer, fn func(*backend) error) int {
	b, err := connect(ctx, g, verb, readOnly)
	if err != nil {
		return fail(stderr, verb, err)
	}
	defer b.close()
	if err := fn(b); err != nil {
		return fail(stderr, verb, err)
	}
	return exitOK
}

// noArgs complains about positional arguments a verb does not take.
func noArgs(stderr io.Writer, verb string, pos []string) bool {
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "proxypoolctl %s: unexpected argument %q\n", verb, pos[0])
		return false
	}
	return true
}
