package torops

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/upstream"
)

// TestCensus: per group, every instance counts, only the working ones are
// "working", and two instances on one exit are one exit.
func TestCensus(t *testing.T) {
	ctx := context.Background()
	st := tempStore(t)
	inst := func(port int, group string) upstream.Upstream {
		return upstream.MustNew(map[string]any{"type": "socks5", "server": "127.0.0.1", "port": port, "group": group})
	}
	ups := []upstream.Upstream{inst(9050, "us"), inst(9051, "us"), inst(9052, "us"), inst(9053, "eu")}
	if _, err := st.Add(ctx, SourceName, ups...); err != nil {
		t.Fatal(err)
	}
	// A non-tor upstream in a group of the same name is not an instance.
	if _, err := st.Add(ctx, "manual", upstream.MustNew(map[string]any{"type": "socks5", "server": "10.0.0.1", "port": 1080, "group": "us"})); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, exit := range []string{"198.51.100.1", "198.51.100.1", ""} {
		r := upstream.CheckResult{ID: ups[i].ID, At: now, OK: true, TotalMS: 100, ExitIP: exit}
		if exit == "" {
			r = upstream.CheckResult{ID: ups[i].ID, At: now, Cause: upstream.CauseTimeout}
		}
		st.Submit(r)
	}
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := Census(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	want := []GroupCensus{
		{Group: "eu", Instances: 1},
		{Group: "us", Instances: 3, Working: 2, Exits: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Census = %+v, want %+v", got, want)
	}
	// The last plan: us got its 3, jp none of its 2 (the cap was taken).
	if err := st.SetTorPlan(ctx, map[string]store.TorGroup{"us": {Planned: 3}, "jp": {Short: 2}}); err != nil {
		t.Fatal(err)
	}
	got, err = Census(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	want = []GroupCensus{
		{Group: "eu", Instances: 1},
		{Group: "jp", Short: 2},
		{Group: "us", Instances: 3, Working: 2, Exits: 1, Planned: 3},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Census after a plan that starved jp = %+v, want %+v", got, want)
	}
}
