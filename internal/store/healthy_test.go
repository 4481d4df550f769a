package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// healthyReference is what Healthy promises, computed the slow way: every
// record through List, the servable ones, best score first, then by id.
func healthyReference(t *testing.T, s *Store) []upstream.Record {
	t.Helper()
	all, err := s.List(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []upstream.Record
	for _, r := range all {
		if r.Servable() {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b upstream.Record) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// healthyListStore is a store of 40 upstreams, most servable: names the
// packing cannot carry, several sources, tied scores, options needing
// encoding/json, and unservable ones of every kind.
func healthyListStore(t *testing.T) *Store {
	t.Helper()
	ctx := context.Background()
	s, _ := openT(t, Options{})
	var us []upstream.Upstream
	for i := range 40 {
		m := map[string]any{"type": "socks5", "server": up(i).Server, "port": 1080 + i%3}
		switch i % 5 {
		case 1:
			m["name"] = "unit\x1fseparator" // cannot be packed: read through the general query
			if i%10 == 1 {
				m["type"], m["uuid"] = "vmess", "2222-3333"
			}
		case 2:
			m["name"] = `quote " & <emoji 🇩🇪>`
			m["ws-opts"] = map[string]any{"headers": map[string]any{"Host": "h.example"}, "path": "/p", "n": 1.5}
		case 3:
			m["type"], m["uuid"], m["alterId"] = "vmess", "0000-1111", 0
		}
		us = append(us, upstream.MustNew(m))
	}
	if _, err := s.UpsertSource(ctx, upstream.SourceMeta{Name: "b-list"}, us[:30]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpsertSource(ctx, upstream.SourceMeta{Name: "a-list"}, us[20:]); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, u := range us {
		r := ok(u.ID, now, "198.51.100."+string(rune('0'+i%10)), []string{"US", "DE", "fr"}[i%3])
		r.TotalMS = float64(100 + i%4*10) // ties in score
		r.Caps = upstream.Caps(i % 8)     // every combination, none included
		switch i % 7 {
		case 3:
			r.Anonymity = upstream.AnonTransparent
		case 4:
			r = fail(u.ID, now)
		case 5:
			r.Untrusted = true
		}
		submit(t, s, r)
	}
	return s
}

// TestHealthyMatchesList: the packed snapshot query returns the same
// records as the general one.
func TestHealthyMatchesList(t *testing.T) {
	ctx := context.Background()
	s := healthyListStore(t)
	for round := range 2 { // the second read takes options from the cache
		got, err := s.Healthy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := healthyReference(t, s)
		if len(want) < 15 {
			t.Fatalf("fixture has only %d servable upstreams", len(want))
		}
		if !reflect.DeepEqual(got, want) {
			for i := range min(len(got), len(want)) {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Fatalf("round %d: record %d:\n got %+v\nwant %+v", round, i, got[i], want[i])
				}
			}
			t.Fatalf("round %d: %d records, want %d", round, len(got), len(want))
		}
	}
}

// gatewayFields is r as GatewayHealthy promises it: the fields a gateway
// serves by, options as stored JSON but none for a socks5 upstream whose
// options are only type, server, port (and name).
func gatewayFields(t *testing.T, r upstream.Record) upstream.Served {
	u := r.Upstream
	e := upstream.Entry{ID: u.ID, Type: u.Type, Server: u.Server, Port: u.Port, Group: u.Group, Caps: r.Caps}
	if _, wsOpts := u.Options["ws-opts"]; u.Type != upstream.SOCKS5 || wsOpts {
		b, err := json.Marshal(u.Options)
		if err != nil {
			t.Fatal(err)
		}
		e.Options = string(b)
	}
	return upstream.Served{Choice: upstream.Choice{Entry: e, ExitIP: r.ExitIP, Country: r.Country, LatencyMS: r.LatencyMS},
		Sources: r.Sources, LastCheck: r.LastCheck}
}

// TestGatewayHealthy: the gateway's stream is Healthy, in the same order,
// cut to the gateway's fields (records the packing cannot carry too),
// with options a dial decodes to the mapping Healthy has, and stops on
// fn's error; the connection it read through serves the next reads as
// before.
func TestGatewayHealthy(t *testing.T) {
	ctx := context.Background()
	s := healthyListStore(t)
	for round := range 2 {
		want, err := s.Healthy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []upstream.Served
		err = s.GatewayHealthy(ctx, func(n int, r *upstream.Served) error {
			if n != len(want) {
				t.Fatalf("n = %d, want %d", n, len(want))
			}
			got = append(got, *r)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("round %d: %d records, want %d", round, len(got), len(want))
		}
		kinds := map[string]int{}
		for i := range want {
			g, w := got[i], gatewayFields(t, want[i])
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("round %d: record %d:\n got %+v\nwant %+v", round, i, g, w)
			}
			// what the dialer builds from: the full mapping in every
			// case, but a name when there is nothing else to hold
			wantOpts := maps.Clone(want[i].Options)
			if g.Options == "" {
				delete(wantOpts, "name")
			}
			if o, err := g.Decode(); err != nil || !reflect.DeepEqual(o, wantOpts) {
				t.Errorf("round %d: record %d: Decode() = %v, %v; want %v", round, i, o, err, wantOpts)
			}
			switch {
			case g.Options == "":
				kinds["none"]++
			case g.Type.Plain():
				kinds["plain"]++
			default:
				kinds["link"]++
			}
		}
		if kinds["link"] == 0 || kinds["none"] == 0 || kinds["plain"] == 0 {
			t.Errorf("round %d: options held as %v; the fixture should have each kind", round, kinds)
		}
	}
	stop := errors.New("enough")
	calls := 0
	if err := s.GatewayHealthy(ctx, func(int, *upstream.Served) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("GatewayHealthy = %v after %d calls, want %v after 1", err, calls, stop)
	}
	for range 8 { // every pooled connection
		if _, err := s.Healthy(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHealthyManySources: past 64 sources (where rows stop noting theirs
// as a bit set) records still carry every source, sorted, in both reads.
func TestHealthyManySources(t *testing.T) {
	ctx := context.Background()
	s, _ := openT(t, Options{})
	var us []upstream.Upstream
	for i := range 10 {
		us = append(us, up(i))
	}
	for k := range 70 {
		name := "src-" + string(rune('a'+k%26)) + string(rune('a'+k/26))
		if _, err := s.UpsertSource(ctx, upstream.SourceMeta{Name: name}, []upstream.Upstream{us[k%10], us[(k*3)%10]}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	for i, u := range us {
		submit(t, s, ok(u.ID, now, "198.51.100.1", []string{"US", "DE"}[i%2]))
	}
	want := healthyReference(t, s)
	if len(want) != 10 || len(want[0].Sources) < 7 {
		t.Fatalf("fixture: %d servable, first with %d sources", len(want), len(want[0].Sources))
	}
	got, err := s.Healthy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Healthy:\n got %+v\nwant %+v", got, want)
	}
	var streamed []upstream.Served
	if err := s.GatewayHealthy(ctx, func(_ int, r *upstream.Served) error { streamed = append(streamed, *r); return nil }); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !reflect.DeepEqual(streamed[i].Sources, want[i].Sources) {
			t.Fatalf("GatewayHealthy record %d sources %v, want %v", i, streamed[i].Sources, want[i].Sources)
		}
	}
}
