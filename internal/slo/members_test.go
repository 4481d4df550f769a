package slo_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/pool"
	"github.com/proxypool/proxypool/internal/slo"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/upstream"
)

func rec(server string, typ upstream.Kind, country, group string, sources ...string) upstream.Record {
	r := upstream.Record{Upstream: upstream.MustNew(map[string]any{"type": string(typ), "server": server, "port": 1080, "group": group}), Sources: sources}
	r.State, r.Country, r.ExitIP, r.Anonymity = upstream.Healthy, country, server, upstream.AnonElite
	return r
}

// TestMemberIsThePools: Member answers what the pool's own group filter
// answers, for every kind of filter.
func TestMemberIsThePools(t *testing.T) {
	us := rec("10.0.0.1", upstream.SOCKS5, "US", "", "free")
	de := rec("10.0.0.2", upstream.VMess, "DE", "", "subs")
	torUS := rec("127.0.0.1", upstream.Tor, "US", "us")
	unknown := rec("10.0.0.3", upstream.HTTP, "", "", "free")
	tests := []struct {
		g    pool.Group
		recs []upstream.Record
		want []bool
	}{
		{pool.Group{Name: "us", Countries: []string{"US"}}, []upstream.Record{us, de, torUS, unknown}, []bool{true, false, true, false}},
		{pool.Group{Name: "us", Countries: []string{"us"}}, []upstream.Record{us}, []bool{true}},
		{pool.Group{Name: "nonus", ExcludeCountries: []string{"US", "CH"}}, []upstream.Record{us, de, torUS, unknown}, []bool{false, true, false, true}},
		{pool.Group{Name: "links", Types: []string{"vmess", "ss"}}, []upstream.Record{us, de}, []bool{false, true}},
		{pool.Group{Name: "free", Sources: []string{"free"}}, []upstream.Record{us, de, unknown}, []bool{true, false, true}},
		{pool.Group{Name: "pin", IDs: []string{de.ID}}, []upstream.Record{us, de}, []bool{false, true}},
		{pool.Group{Name: "us"}, []upstream.Record{us, torUS}, []bool{false, true}}, // no filter: explicit members only
	}
	for _, tt := range tests {
		t.Run(tt.g.Name, func(t *testing.T) {
			in := slo.Member(tt.g)
			for i, r := range tt.recs {
				for range 2 { // second answer from the cache
					// A failing record is still a member (re-checks need that).
					r.State = upstream.Failing
					if got := in(&r); got != tt.want[i] {
						t.Errorf("%s (%s %s group %q): member %v, want %v", tt.g.Name, r.Type, r.Country, r.Group, got, tt.want[i])
					}
				}
			}
		})
	}
}

// TestCounterAndRechecker over a real store: counts follow the pool's
// membership and distinct exits; Recheck makes the group's failing and dead
// upstreams due now, failing first, then the most recently healthy dead.
func TestCounterAndRechecker(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "pp.db"), store.Options{
		Policy: upstream.Policy{Interval: time.Hour, FailingInterval: time.Hour, DeadBackoff: time.Hour, MaxFailures: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// five US upstreams, two of them sharing an exit; one DE
	var ups []upstream.Upstream
	for _, s := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.1.1"} {
		ups = append(ups, upstream.MustNew(map[string]any{"type": "socks5", "server": s, "port": 1080}))
	}
	if _, err := st.Add(ctx, "free", ups...); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Minute)
	exit := []string{"1.1.1.1", "1.1.1.1", "1.1.1.3", "1.1.1.4", "1.1.1.5", "2.2.2.2"}
	for i, u := range ups {
		c := "US"
		if i == 5 {
			c = "DE"
		}
		st.Submit(upstream.CheckResult{ID: u.ID, At: t0.Add(time.Duration(i) * time.Second), OK: true, ExitIP: exit[i], Country: c, Anonymity: upstream.AnonElite})
	}
	// ups[2] fails once (failing); ups[3] and ups[4] die, ups[4] healthy more recently
	fail := func(i int, at time.Time) {
		st.Submit(upstream.CheckResult{ID: ups[i].ID, At: at, Cause: upstream.CauseRefused})
	}
	fail(2, t0.Add(10*time.Second))
	fail(3, t0.Add(10*time.Second))
	fail(3, t0.Add(11*time.Second))
	fail(4, t0.Add(10*time.Second))
	fail(4, t0.Add(11*time.Second))
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	groups := []slo.Group{
		{Name: "us", Member: slo.Member(pool.Group{Name: "us", Countries: []string{"US"}})},
		{Name: "de", Member: slo.Member(pool.Group{Name: "de", Countries: []string{"DE"}})},
		{Name: "tor"}, // no member test: only upstreams named tor (none)
	}
	counts, err := slo.NewCounter(st, groups).Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]slo.Count{slo.PoolName: {Healthy: 3, Exits: 2}, "us": {Healthy: 2, Exits: 1}, "de": {Healthy: 1, Exits: 1}, "tor": {}}
	for name, w := range want {
		if counts[name] != w {
			t.Errorf("count %q = %+v, want %+v", name, counts[name], w)
		}
	}

	var rescheduled [][]string
	rc := &slo.StoreRechecker{
		List: func(ctx context.Context, s upstream.State) ([]upstream.Record, error) {
			return st.List(ctx, store.Filter{State: s})
		},
		Reschedule: func(ctx context.Context, ids []string, at time.Time) error {
			rescheduled = append(rescheduled, slices.Clone(ids))
			return st.Reschedule(ctx, ids, at)
		},
		Groups: groups,
		Max:    2,
	}
	n, err := rc.Recheck(ctx, "us")
	if err != nil || n != 2 {
		t.Fatalf("recheck us: %d, %v; want 2", n, err)
	}
	if got := rescheduled[0]; !slices.Equal(got, []string{ups[2].ID, ups[4].ID}) {
		t.Errorf("rescheduled %q, want failing %s then the dead one healthy last %s", got, ups[2].ID, ups[4].ID)
	}
	due, err := st.Due(ctx, time.Now(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 2 {
		t.Errorf("%d upstreams due after the re-check, want 2", len(due))
	}
	// already due ones are not rescheduled again; the third follows
	rc.Max = 0
	if n, err := rc.Recheck(ctx, "us"); err != nil || n != 1 {
		t.Errorf("second recheck: %d, %v; want the remaining 1", n, err)
	}
	if n, err := rc.Recheck(ctx, "de"); err != nil || n != 0 {
		t.Errorf("recheck de: %d, %v; want 0 (nothing failing)", n, err)
	}
	if _, err := rc.Recheck(ctx, "nope"); err == nil {
		t.Error("recheck of an unknown group succeeded")
	}
}

func BenchmarkMember(b *testing.B) {
	in := slo.Member(pool.Group{Name: "us", Countries: []string{"US"}})
	recs := make([]upstream.Record, 1000)
	for i := range recs {
		recs[i] = rec("10.1."+itoa(i/256)+"."+itoa(i%256), upstream.SOCKS5, "US", "", "free")
	}
	b.Run("cold", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			slo.Member(pool.Group{Name: "us", Countries: []string{"US"}})(&recs[i%len(recs)])
		}
	})
	b.Run("cached", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			in(&recs[i%len(recs)])
		}
	})
}

func itoa(n int) string {
	return string(rune('0'+n/100%10)) + string(rune('0'+n/10%10)) + string(rune('0'+n%10))
}
