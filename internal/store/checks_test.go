package store

import (
	"context"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TestTargetAndSpeedResults: what the checks record reaches the
// gateway's snapshot (passed, unexpired targets; throughput), a pass or
// a pass turned failure bumps the version, results for an unknown
// upstream are dropped, and the stats count only valid results.
func TestTargetAndSpeedResults(t *testing.T) {
	ctx := context.Background()
	us := ups(0, 1, 2)
	s, _ := openWith(t, us...)
	now := time.Now()
	for _, u := range us {
		submit(t, s, ok(u.ID, now, "198.51.100.1", "US"))
	}
	at := now.Add(-time.Second)
	steps := []struct {
		name string
		rs   []TargetResult
		bump bool
		// want is each upstream's passed targets in the snapshot
		want map[string][]string
	}{
		{"first pass", []TargetResult{
			{ID: us[0].ID, Target: "imot", OK: true, At: at, Until: now.Add(time.Hour)},
			{ID: us[0].ID, Target: "shop", OK: true, At: at, Until: now.Add(time.Hour)},
			{ID: us[1].ID, Target: "imot", OK: false, Detail: "status 403", At: at, Until: now.Add(time.Hour)},
			{ID: us[2].ID, Target: "imot", OK: true, At: at, Until: now.Add(-time.Minute)}, // already expired
			{ID: "nosuch", Target: "imot", OK: true, At: at, Until: now.Add(time.Hour)},
		}, true, map[string][]string{us[0].ID: {"imot", "shop"}}},
		{"a failure where none passed", []TargetResult{
			{ID: us[1].ID, Target: "imot", OK: false, Detail: "timeout", At: at, Until: now.Add(time.Hour)},
		}, false, map[string][]string{us[0].ID: {"imot", "shop"}}},
		{"a pass turns failure", []TargetResult{
			{ID: us[0].ID, Target: "shop", OK: false, Detail: "body matches captcha", At: at, Until: now.Add(time.Hour)},
		}, true, map[string][]string{us[0].ID: {"imot"}}},
	}
	for _, st := range steps {
		v0, _ := s.Version(ctx)
		if err := s.RecordTargets(ctx, st.rs); err != nil {
			t.Fatal(err)
		}
		if v1, _ := s.Version(ctx); (v1 > v0) != st.bump {
			t.Errorf("%s: version %d → %d, want bump %v", st.name, v0, v1, st.bump)
		}
		got := map[string][]string{}
		err := s.GatewayHealthy(ctx, func(_ int, r *upstream.Served) error {
			for _, p := range r.Targets {
				got[r.ID] = append(got[r.ID], p.Name)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(st.want) {
			t.Errorf("%s: passed targets %v, want %v", st.name, got, st.want)
		}
		for id, w := range st.want {
			if len(got[id]) != len(w) || len(w) > 0 && got[id][0] != w[0] {
				t.Errorf("%s: %s passed %v, want %v", st.name, id, got[id], w)
			}
		}
	}
	stats, err := s.TargetStats(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if got := stats["imot"]; got != (TargetStat{Checked: 2, Passing: 1}) {
		t.Errorf("imot stats %+v, want 2 checked (the expired one not), 1 passing", got)
	}
	all, err := s.TargetResults(ctx)
	if err != nil || len(all) != 4 {
		t.Errorf("TargetResults: %d results, %v; want 4 (none for the unknown upstream)", len(all), err)
	}

	v0, _ := s.Version(ctx)
	if err := s.RecordSpeeds(ctx, []SpeedResult{{ID: us[1].ID, Down: 250_000, Bytes: 1 << 20, At: at}}); err != nil {
		t.Fatal(err)
	}
	if v1, _ := s.Version(ctx); v1 <= v0 {
		t.Errorf("a speed result did not bump the version (%d → %d)", v0, v1)
	}
	speeds := map[string]float64{}
	if err := s.GatewayHealthy(ctx, func(_ int, r *upstream.Served) error {
		speeds[r.ID] = r.Throughput
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if speeds[us[1].ID] != 250_000 || speeds[us[0].ID] != 0 {
		t.Errorf("throughput in the snapshot %v, want %s 250000 and the others 0", speeds, us[1].ID)
	}
	// list's filters and columns
	for _, tt := range []struct {
		name string
		f    Filter
		want []string
	}{
		{"--target imot", Filter{Target: "imot"}, []string{us[0].ID}},
		{"--target shop (turned failure)", Filter{Target: "shop"}, nil},
		{"--min-throughput", Filter{MinThroughput: 100_000}, []string{us[1].ID}},
	} {
		recs, err := s.List(ctx, tt.f)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(recs); len(got) != len(tt.want) || len(got) > 0 && got[0] != tt.want[0] {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	all2, err := s.List(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all2 {
		switch r.ID {
		case us[0].ID:
			if len(r.Targets) != 1 || r.Targets[0].Name != "imot" {
				t.Errorf("list: %s passes %v, want imot", r.ID, r.Targets)
			}
		case us[1].ID:
			if r.Throughput != 250_000 || len(r.Targets) != 0 {
				t.Errorf("list: %s throughput %v targets %v, want 250000 and none", r.ID, r.Throughput, r.Targets)
			}
		}
	}
}
