package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// TestSettings: a setting written by one process is read by another (a
// read-only open), survives a reopen, SetSettingIfAbsent keeps the first
// value, and settings never bump the pool version (no PoolChanged).
func TestSettings(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pp.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	v0, _ := st.Version(ctx)
	if _, ok, err := st.Setting(ctx, "tor.budget"); ok || err != nil {
		t.Fatalf("missing setting: ok %v, err %v", ok, err)
	}
	if err := st.SetSetting(ctx, "tor.budget", `{"us":2}`); err != nil {
		t.Fatal(err)
	}
	if err := st.SetSetting(ctx, "tor.budget", `{"us":3}`); err != nil {
		t.Fatal(err)
	}
	if got, err := st.SetSettingIfAbsent(ctx, "tor.control-password", "first"); got != "first" || err != nil {
		t.Fatalf("SetSettingIfAbsent on a new key = %q, %v", got, err)
	}
	if got, err := st.SetSettingIfAbsent(ctx, "tor.control-password", "second"); got != "first" || err != nil {
		t.Fatalf("SetSettingIfAbsent on an existing key = %q, %v; want the first value", got, err)
	}
	if v1, _ := st.Version(ctx); v1 != v0 {
		t.Errorf("settings bumped the pool version %d → %d", v0, v1)
	}
	reread(t, st, path, func(ro *Store) {
		if v, ok, err := ro.Setting(ctx, "tor.budget"); v != `{"us":3}` || !ok || err != nil {
			t.Errorf("read-only open reads %q, %v, %v", v, ok, err)
		}
		if err := ro.SetSetting(ctx, "x", "y"); !errors.Is(err, ErrReadOnly) {
			t.Errorf("SetSetting on a read-only store: %v", err)
		}
	}, func(st *Store) {
		if v, ok, _ := st.Setting(ctx, "tor.control-password"); v != "first" || !ok {
			t.Errorf("after reopen: %q, %v", v, ok)
		}
	})
}
