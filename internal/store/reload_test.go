package store

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// TestReloads: each component's last reload replaces its previous one, a
// read-only open (proxypoolctl --db, `proxypoold reload`) sees every
// component's, and other settings are not taken for reloads.
func TestReloads(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pp.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(time.Now().UnixMilli()).UTC()
	for _, r := range []Reload{
		{Component: "gateway", PID: 10, Generation: 1, At: at},
		{Component: "probe", PID: 11, Generation: 1, At: at},
		{Component: "gateway", PID: 10, Generation: 2, At: at, Error: "proxypool.yaml:12: gateway.strategy: unknown"},
	} {
		if err := st.RecordReload(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SetSetting(ctx, "reloadx", "{}"); err != nil { // a neighbour key, not a reload
		t.Fatal(err)
	}
	want := []Reload{
		{Component: "gateway", PID: 10, Generation: 2, At: at, Error: "proxypool.yaml:12: gateway.strategy: unknown"},
		{Component: "probe", PID: 11, Generation: 1, At: at},
	}
	check := func(s *Store) {
		got, err := s.Reloads(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			got[i].At = got[i].At.UTC()
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Reloads = %+v, want %+v", got, want)
		}
	}
	reread(t, st, path, check, check)
}
