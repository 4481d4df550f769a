package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TestCauseStored: a failure's cause and detail come back from every read
// a user sees (Get, List, History) as they were submitted.
func TestCauseStored(t *testing.T) {
	ctx := context.Background()
	s, _ := openT(t, Options{})
	if _, err := s.Add(ctx, "manual", ups(1)...); err != nil {
		t.Fatal(err)
	}
	id := up(1).ID
	r := fail(id, t0)
	r.Cause, r.Detail = upstream.CauseCertificate, "x509: certificate signed by unknown authority"
	submit(t, s, r)
	got, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.LastCause != upstream.CauseCertificate || got.LastError != r.Detail {
		t.Errorf("Get: cause %q detail %q, want certificate, %q", got.LastCause, got.LastError, r.Detail)
	}
	recs, err := s.List(ctx, Filter{})
	if err != nil || len(recs) != 1 || recs[0].LastCause != upstream.CauseCertificate {
		t.Errorf("List: %v %v, want one record with cause certificate", recs, err)
	}
	hist, err := s.History(ctx, id, 0)
	if err != nil || len(hist) != 1 || hist[0].Cause != upstream.CauseCertificate || hist[0].Detail != r.Detail {
		t.Errorf("History: %+v %v, want the certificate failure", hist, err)
	}
}

// TestCauseMigration: a row a build before typed causes wrote (its cause
// words inside last_error) still shows that text after the migration, and
// a cause name no build of ours knows reads as "other", not as an error.
func TestCauseMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(ctx, "manual", up(1), up(2)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	const old = "routes locally: exit 10.0.0.1 is in our own network"
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`ALTER TABLE upstreams DROP COLUMN last_cause; ALTER TABLE checks DROP COLUMN cause;
		UPDATE upstreams SET last_error = ?, state = 'failing' WHERE id = ?; PRAGMA user_version = 3`, old, up(1).ID); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("migrating: %v", err)
	}
	defer s.Close()
	got, err := s.Get(ctx, up(1).ID)
	if err != nil {
		t.Fatal(err)
	}
	if f := upstream.Failure(got.LastCause, got.LastError); f != old {
		t.Errorf("old row shows %q, want its text %q", f, old)
	}
	if _, err := s.wdb.Exec(`UPDATE upstreams SET last_cause = 'from_the_future', last_error = 'x' WHERE id = ?`, up(2).ID); err != nil {
		t.Fatal(err)
	}
	got, err = s.Get(ctx, up(2).ID)
	if err != nil {
		t.Fatalf("a cause name from a newer build: %v", err)
	}
	if got.LastCause != upstream.CauseOther || got.LastError != "x" {
		t.Errorf("unknown stored cause reads as %q %q, want other, x", got.LastCause, got.LastError)
	}
}
