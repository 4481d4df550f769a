package store

import (
	"context"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// What a check proved reaches every read the daemon and the gateway use,
// a passive result leaves it alone, and a change of it reloads gateways.
func TestCapsRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _ := openWith(t, ups(1)...)
	id := up(1).ID
	r := ok(id, t0, "1.1.1.1", "US")
	r.Caps = upstream.CapConnect | upstream.CapPipeline
	submit(t, s, r)
	v1 := version(t, s)
	passive := ok(id, t0.Add(1e9), "1.1.1.1", "US")
	passive.Passive = true // carries no caps: must not clear them
	submit(t, s, passive)

	want := upstream.CapConnect | upstream.CapPipeline
	everyReadHas(t, s, id, want, func(r *upstream.Record) upstream.Caps { return r.Caps },
		func(r *upstream.Served) upstream.Caps { return r.Caps })

	r = ok(id, t0.Add(2e9), "1.1.1.1", "US")
	r.Caps = upstream.CapConnect // the upstream stopped taking pipelined handshakes
	submit(t, s, r)
	if v2 := version(t, s); v2 == v1 {
		t.Errorf("version stayed %d when the caps changed: gateways would keep pipelining", v1)
	}
	if got, _ := s.Get(ctx, id); got.Caps != upstream.CapConnect {
		t.Errorf("after the second check: caps %q, want connect", got.Caps)
	}
}

// TestCapsMigration: a database from before the caps column opens,
// migrates, and reads its upstreams with no caps (the pool takes 0 as
// "not checked for it yet"); the next check stores them.
func TestCapsMigration(t *testing.T) {
	ctx := context.Background()
	s, path := openWith(t, up(1))
	submit(t, s, ok(up(1).ID, t0, "1.1.1.1", "US"))
	s = asOlderBuild(t, s, path, 2, "")
	recs, err := s.Healthy(ctx)
	if err != nil || len(recs) != 1 || recs[0].Caps != 0 {
		t.Fatalf("after migration: %+v %v", recs, err)
	}
	r := ok(up(1).ID, t0.Add(time.Minute), "1.1.1.1", "US")
	r.Caps = upstream.CapConnect | upstream.CapForward
	submit(t, s, r)
	if got, err := s.Get(ctx, up(1).ID); err != nil || got.Caps != r.Caps {
		t.Fatalf("after a check: caps %q %v, want %q", got.Caps, err, r.Caps)
	}
}

// asOlderBuild closes s, rewrites its file into the one a build at schema
// version v wrote (then runs extra, rows an older build would hold),
// checks that a read-only open refuses it, and reopens it, which migrates
// it.
func asOlderBuild(t *testing.T, s *Store, path string, v int, extra string) *Store {
	t.Helper()
	s.Close()
	db := asOlder(t, path, v, extra)
	db.Close()
	ctx := context.Background()
	if _, err := OpenReadOnly(ctx, path); err == nil {
		t.Fatalf("OpenReadOnly read a version-%d file, older than its schema", v)
	}
	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("migrating from version %d: %v", v, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
