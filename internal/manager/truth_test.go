package manager

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/geoip"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/upstream"
)

// TestOnePassTellsTheTruth is issue 4/9's acceptance: one probe pass over
// honest and dishonest members, through the real store, gives each the
// verdict, anonymity, protocol and caps a user should see — in list (its
// records, which --json prints as they are) and in the json export, which
// holds the servable ones only.
func TestOnePassTellsTheTruth(t *testing.T) {
	type want struct {
		state   upstream.State
		anon    upstream.Anonymity // "" : none believed
		kind    upstream.Kind
		caps    upstream.Caps // of the servable ones, pipelining aside
		untrust bool
	}
	members := []struct {
		name    string
		spec    fleet.MemberSpec
		untyped bool
		want    want
	}{
		{"honest socks5", fleet.MemberSpec{Kind: fleet.SOCKS5, Country: "DE"}, false, want{upstream.Healthy, upstream.AnonElite, upstream.SOCKS5, upstream.CapConnect, false}},
		{"honest http", fleet.MemberSpec{Kind: fleet.HTTP, Country: "US"}, false, want{upstream.Healthy, upstream.AnonElite, upstream.HTTP, upstream.CapConnect | upstream.CapForward, false}},
		{"anonymous http", fleet.MemberSpec{Kind: fleet.HTTP, Behavior: fleet.Anonymous, Country: "NL"}, false, want{upstream.Healthy, upstream.AnonAnonymous, upstream.HTTP, upstream.CapConnect | upstream.CapForward, false}},
		{"transparent http", fleet.MemberSpec{Kind: fleet.HTTP, Behavior: fleet.Transparent, Country: "US"}, false, want{upstream.Failing, upstream.AnonTransparent, upstream.HTTP, 0, false}},
		{"fake-echo http", fleet.MemberSpec{Kind: fleet.HTTP, Behavior: fleet.FakeEcho}, false, want{upstream.Failing, "", upstream.HTTP, 0, true}},
		{"nonce-rewriting socks5", fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.NonceRewrite}, false, want{upstream.Failing, "", upstream.SOCKS5, 0, true}},
		{"body-injecting http", fleet.MemberSpec{Kind: fleet.HTTP, Behavior: fleet.BodyInject}, false, want{upstream.Failing, "", upstream.HTTP, 0, true}},
		{"GET-only http", fleet.MemberSpec{Kind: fleet.HTTP, Behavior: fleet.ForwardOnly, Country: "JP"}, false, want{upstream.Healthy, upstream.AnonElite, upstream.HTTP, upstream.CapForward, false}},
		{"CONNECT-only http", fleet.MemberSpec{Kind: fleet.HTTP, Behavior: fleet.ConnectOnly, Country: "JP"}, false, want{upstream.Healthy, upstream.AnonElite, upstream.HTTP, upstream.CapConnect, false}},
		{"untyped socks4", fleet.MemberSpec{Kind: fleet.SOCKS4, Country: "FR"}, true, want{upstream.Healthy, upstream.AnonElite, upstream.SOCKS4, upstream.CapConnect, false}},
		{"untyped socks5", fleet.MemberSpec{Kind: fleet.SOCKS5, Country: "FR"}, true, want{upstream.Healthy, upstream.AnonElite, upstream.SOCKS5, upstream.CapConnect, false}},
	}
	var spec fleet.Spec
	for _, m := range members {
		spec.Members = append(spec.Members, m.spec)
	}
	f := fleet.StartT(t, spec)
	judge := fleet.StartJudgeT(t)
	ctx := ctxT(t)
	st := openStore(t)
	ids := make([]string, len(members))
	for i, fm := range f.Members() {
		u := fm.Upstream
		if members[i].untyped {
			u = upstream.MustNew(map[string]any{"type": "http", "server": u.Server, "port": u.Port, upstream.OptDiscover: true})
		}
		if _, err := st.Add(ctx, "list", u); err != nil {
			t.Fatal(err)
		}
		ids[i] = u.ID
	}

	geo := filepath.Join(t.TempDir(), "geoip")
	if err := f.WriteGeoIP(geo); err != nil {
		t.Fatal(err)
	}
	db, err := geoip.Open(geo, "")
	if err != nil {
		t.Fatal(err)
	}
	d := dial.New(dial.Options{})
	defer d.Close()
	p, err := probe.New(d, probe.Options{Judges: []string{judge.URL + "/get"}, Timeout: 2 * time.Second,
		Concurrency: 32, UplinkCheck: true, Country: db.CountryOf, Classify: dial.Classify})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(ctx, st, st, probe.RunOptions{MaxPasses: 1, Idle: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	st.Flush(ctx)

	m := New(Options{Store: st})
	defer m.Close()
	page, err := m.List(ctx, control.ListQuery{Limit: control.MaxListLimit})
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]upstream.Record{}
	for _, r := range page.Records {
		// what list --json prints: the record as JSON
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var back upstream.Record
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		listed[r.ID] = back
	}
	js, err := m.Export(ctx, control.FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	var live []LiveProxy
	if err := json.Unmarshal(js, &live); err != nil {
		t.Fatal(err)
	}
	exported := map[string]LiveProxy{}
	for _, l := range live {
		exported[l.ID] = l
	}

	for i, mb := range members {
		t.Run(mb.name, func(t *testing.T) {
			w, fm := mb.want, f.Member(i)
			r, ok := listed[ids[i]]
			if !ok {
				t.Fatalf("not listed")
			}
			if r.State != w.state || r.Anonymity != w.anon || r.Type != w.kind || r.Untrusted != w.untrust || r.Untyped() {
				t.Errorf("list: state %s anonymity %q type %s untrusted %v untyped %v (last error %q); want %s %q %s untrusted %v",
					r.State, r.Anonymity, r.Type, r.Untrusted, r.Untyped(), upstream.Failure(r.LastCause, r.LastError), w.state, w.anon, w.kind, w.untrust)
			}
			l, inExport := exported[ids[i]]
			if inExport != (w.state == upstream.Healthy) {
				t.Fatalf("in the json export: %v, want %v", inExport, w.state == upstream.Healthy)
			}
			if w.state != upstream.Healthy {
				if w.anon == upstream.AnonTransparent && r.ExitIP != fm.ExitIP {
					t.Errorf("transparent: exit %q, want the one that gave it away, %s", r.ExitIP, fm.ExitIP)
				}
				return
			}
			if got := r.Caps &^ upstream.CapPipeline; got != w.caps {
				t.Errorf("caps %q, want %q", r.Caps, w.caps)
			}
			if l.Anonymity != w.anon || l.Type != w.kind || l.Protocol != string(w.kind) || l.ExitIP != fm.ExitIP || l.Country != fm.Spec.Country {
				t.Errorf("export: %+v; want %s %s exit %s country %s", l, w.anon, w.kind, fm.ExitIP, fm.Spec.Country)
			}
		})
	}
}
