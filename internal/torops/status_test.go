package torops

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/upstream"
)

// TestStatusNamesUnitsOnlyUnderSystemd: `proxypoolctl tor status` under
// the process runner shows no tor@ unit (there is none to systemctl).
func TestStatusNamesUnitsOnlyUnderSystemd(t *testing.T) {
	ctx := context.Background()
	st := tempStore(t)
	up := upstream.MustNew(map[string]any{"type": "tor", "server": "127.82.0.1", "port": 25001, "group": "us"})
	if _, err := st.Add(ctx, SourceName, up); err != nil {
		t.Fatal(err)
	}
	tr, err := New(Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	got, err := tr.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Port != 25001 || got[0].Unit != "" {
		t.Errorf("Status under the process runner = %+v; want port 25001 with no unit", got)
	}
}

// tempStore opens a new store in the test's temp dir, closed at its end.
func tempStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "pp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
