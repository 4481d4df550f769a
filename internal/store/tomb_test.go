package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TestTombstoneRestoreRetire follows upstreams through the operator's
// remove and restore and through retirement, as the pool and a refresh
// see them. Source "a" lists 1, 2, 3 and 5; 4 and 5 are added by hand.
func TestTombstoneRestoreRetire(t *testing.T) {
	ctx := context.Background()
	s, path := openT(t, Options{})
	srcA := upstream.SourceMeta{Name: "a", URL: "file:///a"}
	if _, err := s.UpsertSource(ctx, srcA, ups(1, 2, 3, 5)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(ctx, Manual, ups(4, 5)...); err != nil {
		t.Fatal(err)
	}
	submit(t, s, ok(up(1).ID, t0, "1.1.1.1", "US"), ok(up(2).ID, t0, "1.1.1.2", "US"),
		ok(up(4).ID, t0, "1.1.1.4", "US"), ok(up(5).ID, t0, "1.1.1.5", "US"))

	state := func(i int) upstream.State {
		t.Helper()
		r, err := s.Get(ctx, up(i).ID)
		if errors.Is(err, ErrNotFound) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return r.State
	}
	listed := func(f Filter) []string {
		t.Helper()
		recs, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return ids(recs)
	}
	healthy := func() []string {
		t.Helper()
		recs, err := s.Healthy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return sorted(ids(recs))
	}
	refresh := func(want upstream.SourceSummary, list ...int) {
		t.Helper()
		sum, err := s.UpsertSource(ctx, srcA, ups(list...))
		if err != nil {
			t.Fatal(err)
		}
		if sum != want {
			t.Fatalf("refresh of %v: %+v, want %+v", list, sum, want)
		}
		m, err := s.SourceMeta(ctx, "a")
		if err != nil || m.New != want.New || m.Seen != want.Seen || m.Gone != want.Gone || m.Removed != want.Removed {
			t.Fatalf("source a's last fetch as stored: %+v, %v; want %+v", m, err, want)
		}
	}

	// remove: 1 (listed by a) becomes a tombstone, 4 (by hand only) goes
	if n, err := s.Remove(ctx, "uid 0", up(1).ID, up(4).ID); n != 2 || err != nil {
		t.Fatalf("Remove(1, 4) = %d, %v; want 2", n, err)
	}
	if st := state(1); st != upstream.Removed {
		t.Fatalf("1 after remove: %q, want removed", st)
	}
	if st := state(4); st != "" {
		t.Fatalf("4 (added by hand) after remove: %q, want deleted", st)
	}
	if got, want := healthy(), sorted(idsOf(2, 5)); !reflect.DeepEqual(got, want) {
		t.Fatalf("served after remove: %v, want %v", got, want)
	}
	if got, want := listed(Filter{}), sorted(idsOf(2, 3, 5)); !reflect.DeepEqual(got, want) {
		t.Fatalf("list after remove: %v, want %v", got, want)
	}
	recs, err := s.List(ctx, Filter{State: upstream.Removed})
	if err != nil || len(recs) != 1 || recs[0].ID != up(1).ID || recs[0].RemovedBy != "uid 0" ||
		time.Since(recs[0].RemovedAt) > time.Minute || recs[0].OKs != 1 {
		t.Fatalf("list --state removed: %+v, %v; want 1 removed by uid 0 just now, its checks kept", recs, err)
	}
	if n, err := s.Remove(ctx, "uid 0", up(1).ID); n != 0 || err != nil {
		t.Fatalf("Remove of a tombstone = %d, %v; want 0", n, err)
	}

	// the source lists 1 again: it stays removed, counted as such
	refresh(upstream.SourceSummary{Source: "a", Seen: 3, Removed: 1}, 1, 2, 3, 5)
	if st := state(1); st != upstream.Removed {
		t.Fatalf("1 after a refresh that lists it: %q, want removed", st)
	}
	// a check that was running when it was removed changes nothing
	submit(t, s, ok(up(1).ID, t0.Add(time.Minute), "1.1.1.1", "US"))
	if st := state(1); st != upstream.Removed {
		t.Fatalf("1 after a late check result: %q, want removed", st)
	}
	due, err := s.Due(ctx, time.Now().Add(24*time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range due {
		if r.ID == up(1).ID {
			t.Fatalf("a tombstone is due for a check")
		}
	}
	c, err := s.Counts(ctx)
	if err != nil || c.Total != 3 || c.ByState["removed"] != 1 || c.BySource["a"] != 3 {
		t.Fatalf("counts with a tombstone: %+v, %v; want total 3, removed 1, a 3", c, err)
	}

	// restore: back in the pool, due now, history and sources kept
	if n, err := s.Restore(ctx, Manual, up(1).ID, up(2).ID, "nope"); n != 1 || err != nil {
		t.Fatalf("Restore(1, 2, nope) = %d, %v; want 1", n, err)
	}
	r, err := s.Get(ctx, up(1).ID)
	if err != nil || r.State != upstream.Unknown || r.NextCheck.After(time.Now()) || r.RemovedBy != "" ||
		!reflect.DeepEqual(r.Sources, []string{"a"}) {
		t.Fatalf("1 after restore: %+v, %v; want unknown, due, listed by a only", r, err)
	}
	if h, err := s.History(ctx, up(1).ID, 0); err != nil || len(h) != 1 {
		t.Fatalf("history of 1 after restore: %d results, %v; want the 1 from before", len(h), err)
	}
	submit(t, s, ok(up(1).ID, t0.Add(2*time.Minute), "1.1.1.1", "US"))
	if got, want := healthy(), sorted(idsOf(1, 2, 5)); !reflect.DeepEqual(got, want) {
		t.Fatalf("served after restore and a check: %v, want %v", got, want)
	}

	// a drops 1 and 2 (both were healthy, so they stay); 5 is also by hand
	refresh(upstream.SourceSummary{Source: "a", Seen: 2, Gone: 2}, 3, 5)
	if n, err := s.Retire(ctx, time.Hour); n != 0 || err != nil {
		t.Fatalf("Retire(1h) right after = %d, %v; want 0", n, err)
	}
	if n, err := s.Retire(ctx, 0); n != 0 || err != nil {
		t.Fatalf("Retire(0: never) = %d, %v; want 0", n, err)
	}
	time.Sleep(30 * time.Millisecond)
	v0, _ := s.Version(ctx)
	if n, err := s.Retire(ctx, 10*time.Millisecond); n != 2 || err != nil {
		t.Fatalf("Retire(10ms) = %d, %v; want 2 (1 and 2)", n, err)
	}
	if v, _ := s.Version(ctx); v == v0 {
		t.Fatalf("retiring served upstreams did not bump the version")
	}
	if got, want := healthy(), idsOf(5); !reflect.DeepEqual(got, want) {
		t.Fatalf("served after retire: %v, want %v", got, want)
	}
	if got, want := listed(Filter{}), sorted(idsOf(3, 5)); !reflect.DeepEqual(got, want) {
		t.Fatalf("list after retire: %v, want %v", got, want)
	}
	if got, want := listed(Filter{State: upstream.Retired}), sorted(idsOf(1, 2)); !reflect.DeepEqual(got, want) {
		t.Fatalf("list --state retired: %v, want %v", got, want)
	}
	if c, _ := s.Counts(ctx); c.Total != 2 || c.ByState["retired"] != 2 {
		t.Fatalf("counts after retire: %+v; want total 2, retired 2", c)
	}

	// listed again, 2 comes back as new; restored, 1 is kept as by hand
	refresh(upstream.SourceSummary{Source: "a", New: 1, Seen: 2}, 2, 3, 5)
	if st := state(2); st != upstream.Unknown {
		t.Fatalf("2 listed again: %q, want unknown", st)
	}
	if n, err := s.Restore(ctx, Manual, up(1).ID); n != 1 || err != nil {
		t.Fatalf("Restore(retired 1) = %d, %v", n, err)
	}
	time.Sleep(30 * time.Millisecond)
	if n, err := s.Retire(ctx, 10*time.Millisecond); n != 0 || err != nil {
		t.Fatalf("Retire after restoring 1 = %d, %v; want 0 (1 is by hand now)", n, err)
	}
	if r, _ := s.Get(ctx, up(1).ID); !reflect.DeepEqual(r.Sources, []string{Manual}) {
		t.Fatalf("restored retired upstream's sources: %v, want [manual]", r.Sources)
	}

	// add by hand lifts a tombstone
	if n, err := s.Remove(ctx, "uid 0", up(3).ID); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	if n, err := s.Add(ctx, Manual, up(3)); n != 1 || err != nil || state(3) != upstream.Unknown {
		t.Fatalf("add of a tombstone: %d, %v, state %q; want 1, unknown", n, err, state(3))
	}

	// a tombstone survives a restart
	if _, err := s.Remove(ctx, "uid 0", up(2).ID); err != nil {
		t.Fatal(err)
	}
	reread(t, s, path, func(ro *Store) {
		if r, err := ro.Get(ctx, up(2).ID); err != nil || r.State != upstream.Removed || r.RemovedBy != "uid 0" {
			t.Fatalf("tombstone read-only: %+v, %v", r, err)
		}
	}, func(s2 *Store) {
		if _, err := s2.UpsertSource(ctx, srcA, ups(2, 3, 5)); err != nil {
			t.Fatal(err)
		}
		if r, err := s2.Get(ctx, up(2).ID); err != nil || r.State != upstream.Removed {
			t.Fatalf("tombstone after a restart and a refresh: %+v, %v", r.State, err)
		}
	})
}
