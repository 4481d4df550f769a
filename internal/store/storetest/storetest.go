// Package storetest gives tests in other packages a real store: a fresh
// SQLite file in the test's temporary directory, as the daemon opens it.
package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/proxypool/proxypool/internal/store"
)

// Open opens a new store under t.TempDir() with opts and closes it when t
// ends; it fails t when the store cannot be opened.
func Open(t testing.TB, opts store.Options) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "pool.db"), opts)
	if err != nil {
		t.Fatalf("opening a test store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
