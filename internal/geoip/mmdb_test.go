package geoip

import (
	"path/filepath"
	"testing"

	"github.com/proxypool/proxypool/internal/geoip/geoiptest"
)

// writeMMDB writes GeoIP2-style country records: each network's fields
// name a map {"iso_code": code}.
func writeMMDB(t testing.TB, path string, nets map[string]map[string]string) {
	t.Helper()
	recs := make(map[string]map[string]any, len(nets))
	for cidr, rec := range nets {
		m := map[string]any{}
		for k, v := range rec {
			m[k] = map[string]any{"iso_code": v}
		}
		recs[cidr] = m
	}
	geoiptest.WriteMMDB(t, path, "proxypool-Test-Country", recs)
}

func TestCountryMMDB(t *testing.T) {
	p := filepath.Join(t.TempDir(), "test-country.mmdb")
	writeMMDB(t, p, map[string]map[string]string{
		"127.10.0.0/16":   {"country": "US"},
		"127.20.0.0/16":   {"registered_country": "de"}, // no country: falls back
		"2001:db8::/32":   {"country": "FR"},
		"192.0.2.0/24":    {"country": "NL", "registered_country": "BE"},
		"198.51.100.0/24": {"country": "X"}, // not a code: unknown
	})
	db, err := OpenPath(p)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for ip, want := range map[string]string{
		"127.10.3.4": "US", "127.11.0.1": "", "127.20.0.9": "DE", "2001:db8:5::1": "FR",
		"2001:db9::1": "", "192.0.2.200": "NL", "198.51.100.1": "", "::ffff:127.10.0.1": "US",
	} {
		if got := db.CountryOf(ip); got != want {
			t.Errorf("%s → %q, want %q", ip, got, want)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
