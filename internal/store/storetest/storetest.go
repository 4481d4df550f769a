// Package storetest gives tests in other packages a real store: a fresh
// SQLite file in the test's temporary directory, as the daemon opens it,
// or a fresh PostgreSQL database (Backends).
package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/store/pgtest"
)

// Backend is one kind of database a store runs on.
type Backend struct {
	Name string
	// Database returns where a new empty store of this kind lives (a
	// file path, a postgres:// URL), removed when t ends.
	Database func(t testing.TB) string
}

// Backends are the databases a store test runs over, SQLite first. A
// test binary that uses the postgres one stops its cluster through
// pgtest.Main.
var Backends = []Backend{
	{"sqlite", func(t testing.TB) string { return filepath.Join(t.TempDir(), "pool.db") }},
	{"postgres", pgtest.Database},
}

// Open opens a new store under t.TempDir() with opts and closes it when t
// ends; it fails t when the store cannot be opened.
func Open(t testing.TB, opts store.Options) *store.Store {
	t.Helper()
	return OpenOn(t, Backends[0], opts)
}

// OpenOn is Open on backend b.
func OpenOn(t testing.TB, b Backend, opts store.Options) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), b.Database(t), opts)
	if err != nil {
		t.Fatalf("opening a test store on %s: %v", b.Name, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
