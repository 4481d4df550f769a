package store

import (
	"context"
	"database/sql"
	"errors"
	"maps"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TestTorGroups: the budget the probe raises and the unused slots torgen
// records are read back by another process (a read-only open), survive a
// reopen, never bump the pool version, and a new plan's unused slots
// replace the last one's.
func TestTorGroups(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "pp.db")
	st, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	v0, _ := st.Version(ctx)
	if got, err := st.TorGroups(ctx); len(got) != 0 || err != nil {
		t.Fatalf("new store: %v, %v; want no tor groups", got, err)
	}
	if err := st.SetTorUnused(ctx, map[string]int{"us": 2, "de": 1}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetTorBudget(ctx, "us", 2); err != nil {
		t.Fatal(err)
	}
	if err := st.SetTorBudget(ctx, "us", 3); err != nil {
		t.Fatal(err)
	}
	if err := st.SetTorUnused(ctx, map[string]int{"us": 1}); err != nil { // the next plan: de has none left
		t.Fatal(err)
	}
	want := map[string]TorGroup{"us": {Budget: 3, Unused: 1}, "de": {}}
	if got, err := st.TorGroups(ctx); !maps.Equal(got, want) || err != nil {
		t.Errorf("TorGroups = %v, %v; want %v", got, err, want)
	}
	if v1, _ := st.Version(ctx); v1 != v0 {
		t.Errorf("tor state bumped the pool version %d → %d", v0, v1)
	}
	reread(t, st, path, func(ro *Store) {
		if got, err := ro.TorGroups(ctx); !maps.Equal(got, want) || err != nil {
			t.Errorf("read-only open reads %v, %v; want %v", got, err, want)
		}
		if err := ro.SetTorBudget(ctx, "us", 4); !errors.Is(err, ErrReadOnly) {
			t.Errorf("SetTorBudget on a read-only store: %v, want ErrReadOnly", err)
		}
		if pw, err := ro.TorControlPassword(ctx, func() string { return "ro" }); pw != "" || err != nil {
			t.Errorf("read-only store without a password made one: %q, %v", pw, err)
		}
	}, func(st *Store) {
		if got, _ := st.TorGroups(ctx); !maps.Equal(got, want) {
			t.Errorf("after reopen: %v, want %v", got, want)
		}
	})
}

// TestTorControlPassword: the first caller's password is kept; later
// callers (another process) get it back instead of theirs.
func TestTorControlPassword(t *testing.T) {
	ctx := context.Background()
	st := tempStore(t)
	for i, offer := range []string{"first", "second"} {
		if pw, err := st.TorControlPassword(ctx, func() string { return offer }); pw != "first" || err != nil {
			t.Errorf("call %d offering %q: %q, %v; want first", i, offer, pw, err)
		}
	}
}

// TestTorStateMigration: a version-3 database keeps its tor state as JSON
// blobs in settings; opening it moves them into tor groups (a user who
// upgrades keeps the budget the SLO guard raised), keeps the control
// password, and drops a blob it cannot read instead of refusing to open.
func TestTorStateMigration(t *testing.T) {
	tests := []struct {
		name     string
		settings map[string]string
		want     map[string]TorGroup
	}{
		{"budget and unused", map[string]string{
			"tor.budget": `{"us":3,"de":2}`, "tor.unused": `{"us":1,"nl":4}`,
		}, map[string]TorGroup{"us": {Budget: 3, Unused: 1}, "de": {Budget: 2}, "nl": {Unused: 4}}},
		{"only unused", map[string]string{"tor.unused": `{"us":2}`}, map[string]TorGroup{"us": {Unused: 2}}},
		{"unreadable blobs", map[string]string{
			"tor.budget": `{"us":`, "tor.unused": `[1,2]`,
		}, map[string]TorGroup{}},
		{"not integers", map[string]string{"tor.budget": `{"us":"3","de":2}`}, map[string]TorGroup{"de": {Budget: 2}}},
		{"no tor state", nil, map[string]TorGroup{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "v3.db")
			st, err := Open(ctx, path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			st.Close()
			db := asOlder(t, path, 3, "")
			settings := map[string]string{"tor.control-password": "kept"}
			maps.Copy(settings, tt.settings)
			for k, v := range settings {
				if _, err := db.Exec("INSERT INTO settings (key, value) VALUES (?, ?)", k, v); err != nil {
					t.Fatal(err)
				}
			}
			db.Close()

			st, err = Open(ctx, path, Options{})
			if err != nil {
				t.Fatalf("migrating: %v", err)
			}
			defer st.Close()
			if got, err := st.TorGroups(ctx); !maps.Equal(got, tt.want) || err != nil {
				t.Errorf("TorGroups after migration = %v, %v; want %v", got, err, tt.want)
			}
			for _, k := range []string{"tor.budget", "tor.unused"} {
				if v, ok, _ := st.Setting(ctx, k); ok {
					t.Errorf("setting %s = %q left behind after migration", k, v)
				}
			}
			if pw, err := st.TorControlPassword(ctx, func() string { return "new" }); pw != "kept" || err != nil {
				t.Errorf("control password after migration: %q, %v; want kept", pw, err)
			}
		})
	}
}

// undoMigration[v] turns a version-v file back into a version v-1 one;
// TestUndoCoversEveryMigration keeps it complete.
var undoMigration = map[int]string{
	3: "ALTER TABLE upstreams DROP COLUMN caps",
	4: "DROP TABLE tor_groups",
	5: "ALTER TABLE upstreams DROP COLUMN last_cause; ALTER TABLE checks DROP COLUMN cause",
	6: "DROP TABLE probe_state",
	7: "ALTER TABLE tor_groups DROP COLUMN planned; ALTER TABLE tor_groups DROP COLUMN short",
	8: "ALTER TABLE sources DROP COLUMN last_new; ALTER TABLE sources DROP COLUMN last_seen; ALTER TABLE sources DROP COLUMN last_gone",
	9: "ALTER TABLE tor_groups DROP COLUMN usable",
	10: "ALTER TABLE upstreams DROP COLUMN removed_at; ALTER TABLE upstreams DROP COLUMN removed_by; " +
		"ALTER TABLE sources DROP COLUMN last_removed",
	11: "DROP TABLE target_results; DROP TABLE speed_results",
	12: "ALTER TABLE upstreams DROP COLUMN asn; ALTER TABLE upstreams DROP COLUMN org; " +
		"ALTER TABLE upstreams DROP COLUMN class; ALTER TABLE upstreams DROP COLUMN ipv6",
}

// asOlder rewrites the current-schema database at path (a file or a
// PostgreSQL URL) into what a build at schema v wrote (then runs extra)
// and returns it open, to migrate from.
func asOlder(t *testing.T, path string, v int, extra string) *sql.DB {
	t.Helper()
	setVersion := "; PRAGMA user_version = " + strconv.Itoa(v)
	var db *sql.DB
	var err error
	if IsPostgres(path) {
		db, err = openPostgres(context.Background(), path, false, 1)
		setVersion = "; UPDATE " + pgSchemaTable + " SET version = " + strconv.Itoa(v)
	} else {
		db, err = sql.Open("sqlite3", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	for w := SchemaVersion(); w > v; w-- {
		if _, err := db.Exec(undoMigration[w]); err != nil {
			t.Fatalf("undoing migration %d: %v", w, err)
		}
	}
	if _, err := db.Exec(extra + setVersion); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestUndoCoversEveryMigration: a new migration comes with its undo, so the
// migration tests start from the files older builds really wrote.
func TestUndoCoversEveryMigration(t *testing.T) {
	for v := 3; v <= SchemaVersion(); v++ {
		if undoMigration[v] == "" {
			t.Errorf("migration %d has no undoMigration entry", v)
		}
	}
}

// TestTorPlanUsableAndDiscovered: a plan records each group's usable exits
// and when discovery ran; the next plan replaces both.
func TestTorPlanUsableAndDiscovered(t *testing.T) {
	ctx := context.Background()
	st := tempStore(t)
	if at, err := st.TorDiscovered(ctx); !at.IsZero() || err != nil {
		t.Fatalf("new store: discovered %v, %v; want zero", at, err)
	}
	before := time.Now().Add(-time.Second)
	plans := []map[string]TorGroup{
		{"us": {Planned: 2, Usable: 40}, "nonus": {Planned: 6, Usable: 900}},
		{"us": {Planned: 1, Short: 1, Usable: 1}},
	}
	for i, plan := range plans {
		if err := st.SetTorPlan(ctx, plan); err != nil {
			t.Fatal(err)
		}
		got, err := st.TorGroups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for g, p := range got {
			if p != plan[g] {
				t.Errorf("plan %d: group %s = %+v, want %+v", i, g, p, plan[g])
			}
		}
		at, err := st.TorDiscovered(ctx)
		if err != nil || at.Before(before) || at.After(time.Now().Add(time.Second)) {
			t.Errorf("plan %d: discovered at %v, %v; want about now", i, at, err)
		}
	}
}

// tempStore opens a new store in the test's temp dir, closed at its end.
func tempStore(t *testing.T) *Store {
	t.Helper()
	st, err := Open(context.Background(), filepath.Join(t.TempDir(), "pp.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestRelaysWithoutFingerprint: a CSV export's relays (no fingerprint)
// are stored, keyed by address, and read back as they were.
func TestRelaysWithoutFingerprint(t *testing.T) {
	ctx := context.Background()
	st := tempStore(t)
	in := []upstream.Relay{
		{Nickname: "csv1", Address: "198.51.100.7", ORPort: 9001, Country: "US"},
		{Nickname: "csv2", Address: "2001:db8::1", ORPort: 443, Country: "DE"},
		{Fingerprint: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Nickname: "fp", Address: "203.0.113.1", ORPort: 9001},
	}
	if err := st.ReplaceRelays(ctx, in); err != nil {
		t.Fatalf("storing CSV relays: %v", err)
	}
	got, err := st.Relays(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]upstream.Relay{}
	for _, r := range got {
		byName[r.Nickname] = r
	}
	for _, r := range in {
		if g := byName[r.Nickname]; g.Fingerprint != r.Fingerprint || g.Address != r.Address || g.ORPort != r.ORPort || g.Country != r.Country {
			t.Errorf("relay %s read back as %+v, want %+v", r.Nickname, g, r)
		}
	}
	if err := st.ReplaceRelays(ctx, []upstream.Relay{{Nickname: "bare"}}); err == nil {
		t.Error("a relay with neither fingerprint nor address was stored")
	}
}
