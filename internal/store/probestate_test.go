package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestProbeState: what status shows of the probe, read by another process
// and after a restart: a pause keeps the time it began however often it
// is reported, a pass resumes the probe, and a pass smaller than the
// upstreams not dead leaves the last full one's figures.
func TestProbeState(t *testing.T) {
	ctx := context.Background()
	st, path := openT(t, Options{})
	if _, err := st.Add(ctx, "manual", ups(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)...); err != nil {
		t.Fatal(err)
	}
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	if p, err := st.ProbeState(ctx); err != nil || p != (ProbeState{}) {
		t.Fatalf("new store: %+v, %v; want the zero state", p, err)
	}
	full := Pass{At: at(10), Size: 10, Healthy: 6, Took: 9 * time.Second}
	small := Pass{At: at(70), Size: 3, Healthy: 1, Took: 200 * time.Millisecond}
	steps := []struct {
		name string
		do   func() error
		want ProbeState
	}{
		{"full pass", func() error { return st.RecordPass(ctx, full) },
			ProbeState{Since: at(10), LastPass: full, LastFull: full}},
		{"small pass", func() error { return st.RecordPass(ctx, small) },
			ProbeState{Since: at(10), LastPass: small, LastFull: full}},
		{"uplink down", func() error { return st.PauseProbe(ctx, at(80), "uplink down: no judge answered") },
			ProbeState{Paused: true, Since: at(80), Reason: "uplink down: no judge answered", LastPass: small, LastFull: full}},
		{"still down", func() error { return st.PauseProbe(ctx, at(90), "uplink down: timeout") },
			ProbeState{Paused: true, Since: at(80), Reason: "uplink down: timeout", LastPass: small, LastFull: full}},
		{"resumed", func() error { return st.RecordPass(ctx, Pass{At: at(100), Size: 5, Healthy: 5, Took: time.Second}) },
			ProbeState{Since: at(100), LastPass: Pass{At: at(100), Size: 5, Healthy: 5, Took: time.Second}, LastFull: full}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got, err := st.ProbeState(ctx); err != nil || !equalProbeState(got, s.want) {
			t.Fatalf("%s: %+v, %v\nwant %+v", s.name, got, err, s.want)
		}
	}
	want := steps[len(steps)-1].want
	reread(t, st, path, func(ro *Store) {
		if got, err := ro.ProbeState(ctx); err != nil || !equalProbeState(got, want) {
			t.Errorf("read-only open: %+v, %v", got, err)
		}
		if err := ro.PauseProbe(ctx, at(200), "x"); !errors.Is(err, ErrReadOnly) {
			t.Errorf("PauseProbe on a read-only store: %v, want ErrReadOnly", err)
		}
	}, func(s *Store) {
		if got, _ := s.ProbeState(ctx); !equalProbeState(got, want) {
			t.Errorf("after reopen: %+v", got)
		}
	})
}

func equalProbeState(a, b ProbeState) bool {
	return a.Paused == b.Paused && a.Since.Equal(b.Since) && a.Reason == b.Reason &&
		equalPass(a.LastPass, b.LastPass) && equalPass(a.LastFull, b.LastFull)
}

func equalPass(a, b Pass) bool {
	return a.At.Equal(b.At) && a.Size == b.Size && a.Healthy == b.Healthy && a.Took == b.Took
}
