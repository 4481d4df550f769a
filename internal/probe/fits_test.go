package probe_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/fleet"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/upstream"
)

// TestExitCountryOutsideGroup: an upstream made for a group (a tor
// instance of nonus) whose exit geolocates in a country its group does not
// take fails its check with exit_country, keeping the country it found;
// the same exit is fine for an upstream of another group or of none.
func TestExitCountryOutsideGroup(t *testing.T) {
	judge := fleet.StartJudgeT(t)
	tests := []struct {
		country, group string
		ok             bool
	}{
		{"US", "nonus", false},
		{"DE", "nonus", true},
		{"US", "us", true},
		{"DE", "us", false},
		{"US", "", true},
	}
	var spec fleet.Spec
	for _, tt := range tests {
		spec.Members = append(spec.Members, fleet.MemberSpec{Kind: fleet.SOCKS5, Behavior: fleet.Good, Country: tt.country})
	}
	f := fleet.StartT(t, spec)
	takes := map[string]func(string) bool{ // as groups us {countries: [US]} and nonus {exclude-countries: [US]}
		"us":    func(cc string) bool { return cc == "US" },
		"nonus": func(cc string) bool { return cc != "US" },
	}
	p := newProberWith(t, f, judge, probe.Options{Timeout: 2 * time.Second,
		Fits: func(u upstream.Upstream, cc string) error {
			if ok := takes[u.Group]; ok != nil && !ok(cc) {
				return fmt.Errorf("exit country %s is outside its group %s", cc, u.Group)
			}
			return nil
		},
	})
	var ups []upstream.Upstream
	for i, m := range f.Members() {
		u := m.Upstream
		u.Group = tests[i].group
		ups = append(ups, u)
	}
	var c collect
	if _, err := p.Pass(context.Background(), ups, &c); err != nil {
		t.Fatal(err)
	}
	for i, tt := range tests {
		r := c.got[ups[i].ID]
		name := fmt.Sprintf("%s exit for group %q", tt.country, tt.group)
		if r.OK != tt.ok || r.Country != tt.country {
			t.Errorf("%s: ok %v country %q (%s), want ok %v", name, r.OK, r.Country, upstream.Failure(r.Cause, r.Detail), tt.ok)
		}
		if !tt.ok && r.Cause != upstream.CauseExitCountry {
			t.Errorf("%s: cause %s, want exit_country", name, r.Cause)
		}
	}
}
