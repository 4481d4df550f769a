package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

func TestEachBrief(t *testing.T) {
	u := ups(1, 2, 3)
	s, _ := openWith(t, u...)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	submit(t, s, ok(u[0].ID, t0, "192.0.2.1", "DE"), fail(u[0].ID, t0.Add(time.Minute)), ok(u[0].ID, t0.Add(2*time.Minute), "192.0.2.1", "DE"),
		ok(u[1].ID, t0, "192.0.2.2", "US"))
	tests := []struct {
		history int
		want    map[string][]bool // id → the OK of each check listed, oldest first
	}{
		{0, map[string][]bool{u[0].ID: nil, u[1].ID: nil, u[2].ID: nil}},
		{2, map[string][]bool{u[0].ID: {false, true}, u[1].ID: {true}, u[2].ID: nil}},
		{10, map[string][]bool{u[0].ID: {true, false, true}, u[1].ID: {true}, u[2].ID: nil}},
	}
	for _, tt := range tests {
		var got []string
		err := s.EachBrief(context.Background(), tt.history, func(b *Brief) error {
			got = append(got, b.ID)
			var oks []bool
			for i, c := range b.History {
				oks = append(oks, c.OK)
				if i > 0 && c.At.Before(b.History[i-1].At) {
					t.Errorf("%s: history not oldest first: %v", b.ID, b.History)
				}
			}
			if !slices.Equal(oks, tt.want[b.ID]) {
				t.Errorf("history %d of %s: %v, want %v", tt.history, b.ID, oks, tt.want[b.ID])
			}
			if !slices.Equal(b.Sources, []string{"manual"}) {
				t.Errorf("%s: sources %v, want [manual]", b.ID, b.Sources)
			}
			if b.ID == u[1].ID && (b.Status.State != upstream.Healthy || b.Status.Country != "US" || b.Status.ExitIP != "192.0.2.2") {
				t.Errorf("%s: status %+v, want healthy in US via 192.0.2.2", b.ID, b.Status)
			}
			if b.ID == u[0].ID && len(b.History) > 0 && b.History[len(b.History)-1].TotalMS != 120 {
				t.Errorf("%s: last check took %v ms, want 120", b.ID, b.History[len(b.History)-1].TotalMS)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.IsSorted(got) || len(got) != 3 {
			t.Fatalf("EachBrief listed %v, want the 3 upstreams in ID order", got)
		}
	}
}
