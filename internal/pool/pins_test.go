package pool

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

func TestPin(t *testing.T) {
	var recs []upstream.Record
	for i := range 6 {
		recs = append(recs, rec(i, []string{"US", "DE"}[i%2], fmt.Sprintf("192.0.2.%d", i)))
	}
	us, de := recs[0].ID, recs[1].ID
	groups := []Group{{Name: "us", Countries: []string{"US"}}, {Name: "de", Countries: []string{"DE"}}}
	tests := []struct {
		name     string
		group    string
		id       string
		ttl      time.Duration
		sel      upstream.Selector
		wantErr  error
		wantPick string // "" : not the pinned one every time
	}{
		{name: "group", group: "us", id: us, ttl: time.Hour, sel: upstream.Selector{Group: "us"}, wantPick: us},
		{name: "whole pool", group: "", id: de, ttl: time.Hour, sel: upstream.Selector{}, wantPick: de},
		{name: "tried already fails over", group: "us", id: us, ttl: time.Hour, sel: upstream.Selector{Group: "us", Tried: []string{us}}},
		{name: "expired", group: "us", id: us, ttl: time.Nanosecond, sel: upstream.Selector{Group: "us"}},
		{name: "not a member", group: "us", id: de, ttl: time.Hour, wantErr: upstream.ErrNoUpstream},
		{name: "unknown group", group: "nope", id: us, ttl: time.Hour, wantErr: upstream.ErrUnknownGroup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := newPool(t, recs, Options{Groups: groups})
			err := p.Pin(tt.group, tt.id, tt.ttl)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Pin: %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond)
			seen := map[string]int{}
			for range 20 {
				sel := tt.sel
				c, err := p.Pick(&sel)
				if err != nil {
					t.Fatal(err)
				}
				seen[c.ID]++
			}
			if tt.wantPick != "" && seen[tt.wantPick] != 20 {
				t.Fatalf("picks went to %v, want all 20 to %s", seen, tt.wantPick)
			}
			if tt.wantPick == "" && seen[tt.id] == 20 {
				t.Fatalf("all 20 picks went to %s though its pin should not apply", tt.id)
			}
			if err := p.Pin(tt.group, "", 0); err != nil {
				t.Fatal(err)
			}
			if id, _ := p.Pinned(tt.group); id != "" {
				t.Fatalf("still pinned to %s after unpinning", id)
			}
		})
	}
}

func TestMembersBestFirst(t *testing.T) {
	var recs []upstream.Record
	for i := range 300 {
		recs = append(recs, rec(i, "US", fmt.Sprintf("192.0.2.%d", i%250)))
	}
	p, _ := newPool(t, recs, Options{Groups: []Group{{Name: "us", Countries: []string{"US"}}}})
	ids, total, ok := p.Members("us", 10)
	if !ok || total != 300 || len(ids) != 10 {
		t.Fatalf("Members: %d ids, total %d, ok %v; want 10, 300, true", len(ids), total, ok)
	}
	lat := map[string]float64{}
	for _, r := range recs {
		lat[r.ID] = r.LatencyMS
	}
	for i := 1; i < len(ids); i++ {
		if lat[ids[i]] < lat[ids[i-1]] {
			t.Fatalf("member %d (%v ms) listed after a slower one (%v ms)", i, lat[ids[i]], lat[ids[i-1]])
		}
	}
	if lat[ids[0]] != 10 {
		t.Fatalf("best member has %v ms, want the 10 ms ones first", lat[ids[0]])
	}
	if _, _, ok := p.Members("nope", 10); ok {
		t.Fatal("an unknown group has members")
	}
}
