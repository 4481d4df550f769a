package torops

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/geoip"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torgen"
	"github.com/proxypool/proxypool/internal/torgen/exits"
	"github.com/proxypool/proxypool/internal/upstream"
)

// TestRaisedFloorReplansInOneRun is the operator's case on the recorded
// consensus, single mode, default cap: us and nonus without floors both
// get instances; then `us: {min-healthy: 20}` is added and the very next
// torgen run gives us 20, taking them from nonus, and the store records
// each group's planned instances with nothing short. A cap of 1 then
// starves us, and the store says so.
func TestRaisedFloorReplansInOneRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "pp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db, err := geoip.Open("../torgen/exits/testdata/geoip-consensus-exits", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	src := exits.Source{URL: "../torgen/exits/testdata/consensus-ns-2022-11-19-exits.txt", Country: db.CountryOf}
	tor := func(floors map[string]int, maxInstances int) *Tor {
		tr, err := New(Options{
			Store: st,
			Gen: torgen.Config{
				Groups: []exits.Group{{Name: "us", Countries: []string{"US"}}, {Name: "nonus", ExcludeCountries: []string{"US", "UA", "CH"}}},
				Mode:   exits.ModeSingle, PortBase: 9060, PortMax: 9999, MaxInstances: maxInstances,
				TorrcDir: filepath.Join(dir, "etc"), DataDir: filepath.Join(dir, "tor"),
			},
			Relays: src, Floors: floors,
		})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	// What discovery should report per group, counted here from the
	// recorded relays, not from the plan.
	relays, err := src.Relays(ctx)
	if err != nil {
		t.Fatal(err)
	}
	usable := map[string]int{}
	for _, r := range exits.UsableExits(relays) {
		switch cc := r.Country; {
		case cc == "US":
			usable["us"]++
		case cc != "" && cc != "??" && cc != "UA" && cc != "CH":
			usable["nonus"]++
		}
	}
	if usable["us"] < 20 || usable["nonus"] < 100 {
		t.Fatalf("recorded consensus: %v usable exits; want a real list", usable)
	}
	steps := []struct {
		name                string
		floors              map[string]int
		max                 int
		wantUS, wantNonus   int // instances
		shortUS, shortNonus int
	}{
		{"no floors", nil, 64, 5, 59, 0, 0},
		{"us floor 20", map[string]int{"us": 20}, 64, 20, 44, 0, 0},
		{"cap 1 starves us", nil, 1, 0, 1, 1, 0},
	}
	for _, s := range steps {
		run := &torgen.DryRun{}
		plan, err := tor(s.floors, s.max).Apply(ctx, run)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		n := map[string]int{}
		for _, in := range plan.Instances {
			n[in.Group]++
		}
		if n["us"] != s.wantUS || n["nonus"] != s.wantNonus || len(run.Wanted()) != s.wantUS+s.wantNonus {
			t.Errorf("%s: us %d, nonus %d, running %d; want %d, %d", s.name, n["us"], n["nonus"], len(run.Wanted()), s.wantUS, s.wantNonus)
		}
		g, err := st.TorGroups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if g["us"].Planned != s.wantUS || g["us"].Short != s.shortUS || g["nonus"].Planned != s.wantNonus || g["nonus"].Short != s.shortNonus {
			t.Errorf("%s: stored %+v; want us planned %d short %d, nonus planned %d short %d", s.name, g, s.wantUS, s.shortUS, s.wantNonus, s.shortNonus)
		}
		if g["us"].Usable != usable["us"] || g["nonus"].Usable != usable["nonus"] {
			t.Errorf("%s: stored usable exits us %d, nonus %d; want %d, %d (whatever the cap)", s.name, g["us"].Usable, g["nonus"].Usable, usable["us"], usable["nonus"])
		}
	}
}

// TestScaleUpAtTheCap: at tor.max-instances a starved group's scale-up
// goes ahead only when another group runs at least two more instances
// than it (the next plan levels them); with the groups even it adds
// nothing.
func TestScaleUpAtTheCap(t *testing.T) {
	tests := []struct {
		name      string
		us, nonus int // instances running
		want      int
	}{
		{"nonus runs three more", 1, 4, 1},
		{"nonus runs two more", 1, 3, 1},
		{"nonus runs one more", 1, 2, 0},
		{"even", 2, 2, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			st, err := store.Open(ctx, filepath.Join(dir, "pp.db"), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var ups []upstream.Upstream
			for i := 0; i < tc.us+tc.nonus; i++ {
				g := "us"
				if i >= tc.us {
					g = "nonus"
				}
				ups = append(ups, upstream.MustNew(map[string]any{"type": "tor", "server": "127.0.0.1", "port": 9060 + i, "group": g}))
			}
			if _, err := st.Add(ctx, SourceName, ups...); err != nil {
				t.Fatal(err)
			}
			if err := st.SetTorPlan(ctx, map[string]store.TorGroup{"us": {Unused: 5, Planned: tc.us}}); err != nil {
				t.Fatal(err)
			}
			tr, err := New(Options{
				Store: st, Gen: torgen.Config{Mode: exits.ModeSingle, MaxInstances: tc.us + tc.nonus},
				Floors: map[string]int{"us": 1}, Now: func() time.Time { return time.Now().Add(time.Hour) },
			})
			if err != nil {
				t.Fatal(err)
			}
			n, err := tr.RequestScaler(filepath.Join(dir, RequestFile)).ScaleUp(ctx, "us")
			if n != tc.want || err != nil {
				t.Errorf("ScaleUp = %d, %v; want %d", n, err, tc.want)
			}
			g, _ := st.TorGroups(ctx)
			if raised := g["us"].Budget == tc.us+1; raised != (tc.want == 1) {
				t.Errorf("budget %d after ScaleUp %d", g["us"].Budget, n)
			}
		})
	}
}
