package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/store/pgtest"
)

// TestListenPoolChanged: a store listening on PostgreSQL hears a change
// another store (another process, as far as the server knows) commits,
// hears nothing of a write that leaves the pool alone, and after its
// connection is killed reconnects and says so (a change may have been
// missed) and goes on hearing changes. On SQLite it refuses at once.
func TestListenPoolChanged(t *testing.T) {
	dbURL := pgtest.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	writer, err := Open(ctx, dbURL, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	listener, err := Open(ctx, dbURL, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	us := ups(0, 1)
	if _, err := writer.Add(ctx, "manual", us...); err != nil {
		t.Fatal(err)
	}

	heard := make(chan struct{}, 64)
	lctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- listener.ListenPoolChanged(lctx, func() { heard <- struct{}{} })
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("ListenPoolChanged after cancel: %v", err)
		}
	}()
	const bound = 3 * time.Second
	expect := func(what string) {
		t.Helper()
		select {
		case <-heard:
		case <-time.After(bound):
			t.Fatalf("%s: nothing heard within %s", what, bound)
		}
	}
	expectNone := func(what string) {
		t.Helper()
		select {
		case <-heard:
			t.Fatalf("%s: heard a pool change", what)
		case <-time.After(300 * time.Millisecond):
		}
	}
	expect("listening")

	steps := []struct {
		name   string
		write  func() error
		change bool
	}{
		{"an upstream turns healthy", func() error { writer.Submit(ok(us[0].ID, time.Now(), "198.51.100.1", "US")); return writer.Flush(ctx) }, true},
		{"a setting changes", func() error { return writer.SetSetting(ctx, "test.key", "v") }, false},
		{"the healthy one is removed", func() error { _, err := writer.Remove(ctx, "test", us[0].ID); return err }, true},
	}
	for _, st := range steps {
		start := time.Now()
		if err := st.write(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if st.change {
			expect(st.name)
			t.Logf("%s: written and heard in %s", st.name, time.Since(start).Round(time.Millisecond))
		} else {
			expectNone(st.name)
		}
	}

	// The server drops the listener's connection: it comes back by itself.
	res, err := writer.rdb.ExecContext(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?", ListenAppName)
	if err != nil {
		t.Fatalf("terminating the listener's backend: %v", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("%d listener backends, want 1", n)
	}
	expect("listening again after the connection was killed")
	submit(t, writer, ok(us[1].ID, time.Now(), "198.51.100.2", "DE"))
	expect("a change after reconnecting")

	sqlite, err := Open(ctx, filepath.Join(t.TempDir(), "pp.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sqlite.Close()
	if err := sqlite.ListenPoolChanged(ctx, func() {}); !errors.Is(err, ErrNotPostgres) {
		t.Errorf("ListenPoolChanged on SQLite = %v, want ErrNotPostgres", err)
	}
}
