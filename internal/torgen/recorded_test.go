package torgen

import (
	"context"
	"testing"

	"github.com/proxypool/proxypool/internal/geoip"
	"github.com/proxypool/proxypool/internal/torgen/exits"
	"github.com/proxypool/proxypool/internal/upstream"
)

// recordedRelays is the 2022-11-19 consensus's exits, placed in their
// countries by the geoip ranges recorded beside them.
func recordedRelays(t *testing.T) exits.Static {
	t.Helper()
	db, err := geoip.Open("exits/testdata/geoip-consensus-exits", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rs, err := exits.Source{URL: "exits/testdata/consensus-ns-2022-11-19-exits.txt", Country: db.CountryOf}.Relays(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1438 {
		t.Fatalf("recorded consensus: %d exits, want 1438", len(rs))
	}
	return rs
}

// recordedConfig is the contract's us and nonus groups in mode over dir,
// with the default port range and tor.max-instances.
func recordedConfig(dir string, mode exits.Mode) Config {
	return Config{
		Groups:   []exits.Group{{Name: "us", Countries: []string{"US"}}, {Name: "nonus", ExcludeCountries: []string{"US", "UA", "CH"}}},
		Mode:     mode,
		PortBase: 9060, PortMax: 9999, MaxInstances: 64,
		TorrcDir: dir,
	}
}

// without returns rs less the relays whose fingerprint is in drop.
func without(rs []upstream.Relay, drop map[string]bool) exits.Static {
	var out exits.Static
	for _, r := range rs {
		if !drop[r.Fingerprint] {
			out = append(out, r)
		}
	}
	return out
}

// portsByKey maps each planned instance's key to its port.
func portsByKey(p Plan) map[string]int {
	out := make(map[string]int, len(p.Instances))
	for _, in := range p.Instances {
		out[in.Key] = in.Port
	}
	return out
}
