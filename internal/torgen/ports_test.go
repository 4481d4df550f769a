package torgen

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/proxypool/proxypool/internal/torgen/exits"
	"github.com/proxypool/proxypool/internal/torgen/torrc"
)

var allModes = []exits.Mode{exits.ModeCountry, exits.ModeGrouped, exits.ModeSingle}

// TestPortsStatelessOnRecordedConsensus: on the recorded consensus, two
// empty dirs get identical ports in every mode; removing ten exits that
// have an instance moves no other instance's port.
func TestPortsStatelessOnRecordedConsensus(t *testing.T) {
	ctx := context.Background()
	relays := recordedRelays(t)
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			a, err := Generate(ctx, recordedConfig(t.TempDir(), mode), relays, nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg := recordedConfig(t.TempDir(), mode)
			b, err := Generate(ctx, cfg, relays, nil)
			if err != nil {
				t.Fatal(err)
			}
			pa, pb := portsByKey(a), portsByKey(b)
			if len(pa) == 0 || fmt.Sprint(pa) != fmt.Sprint(pb) {
				t.Fatalf("two empty dirs disagree: %d and %d instances", len(pa), len(pb))
			}
			if mode == exits.ModeCountry {
				return // one instance per group: nothing to remove ten of
			}
			// Ten exits behind ten different instances leave.
			drop := map[string]bool{}
			gone := map[string]bool{}
			for i, in := range b.Instances {
				if i%5 == 0 && len(gone) < 10 {
					gone[in.Key] = true
					for _, r := range in.Relays {
						drop[r.Fingerprint] = true
					}
				}
			}
			c, err := Generate(ctx, cfg, without(relays, drop), nil)
			if err != nil {
				t.Fatal(err)
			}
			moved := 0
			for key, port := range portsByKey(c) {
				if old, ok := pb[key]; ok && old != port {
					moved++
					t.Errorf("%s moved from %d to %d though its exits stayed", key, old, port)
				}
			}
			if got := len(c.Removed); got > len(gone) {
				t.Errorf("%d ports removed for %d instances whose exits left", got, len(gone))
			}
			t.Logf("%s: %d instances; %d exits of %d instances removed: %d ports freed, %d new instances, %d moved",
				mode, len(b.Instances), len(drop), len(gone), len(c.Removed), len(c.New), moved)
		})
	}
}

// TestPortsAgreeAcrossHosts: a host that generated for the full list and
// one that generated on an empty dir for the list less ten exits give
// every exit both run the same port, except an exit that lost a hash
// collision on one of them (it is not on its first-ranked port there).
// The lowest-free-port scheme gave most of them other ports.
func TestPortsAgreeAcrossHosts(t *testing.T) {
	ctx := context.Background()
	relays := recordedRelays(t)
	for _, mode := range []exits.Mode{exits.ModeGrouped, exits.ModeSingle} {
		t.Run(string(mode), func(t *testing.T) {
			full, err := Generate(ctx, recordedConfig(t.TempDir(), mode), relays, nil)
			if err != nil {
				t.Fatal(err)
			}
			drop := map[string]bool{}
			for i, in := range full.Instances {
				if i%3 == 0 && len(drop) < 10 {
					drop[in.Relays[0].Fingerprint] = true
				}
			}
			less, err := Generate(ctx, recordedConfig(t.TempDir(), mode), without(relays, drop), nil)
			if err != nil {
				t.Fatal(err)
			}
			first := func(key string) int { return exits.HashedPort(key, 9060, 9999, nil) }
			pf := portsByKey(full)
			common, differ, collided := 0, 0, 0
			for key, port := range portsByKey(less) {
				old, ok := pf[key]
				if !ok {
					continue
				}
				common++
				if old == port {
					continue
				}
				differ++
				if old != first(key) || port != first(key) {
					collided++
					continue
				}
				t.Errorf("%s: port %d on one host, %d on the other", key, old, port)
			}
			if common < len(full.Instances)/2 {
				t.Fatalf("only %d of %d instances in common: the test compares nothing", common, len(full.Instances))
			}
			t.Logf("%s: %d exits in common, %d on other ports (%d of them hash collisions)", mode, common, differ, collided)
		})
	}
}

// TestPortsMigrateLegacyFiles: torrc files of the lowest-free-port scheme
// (no HashedPorts line) keep their exits running, each moved once to its
// hashed port: the same ports an empty dir gets, and the plan says which
// moved.
func TestPortsMigrateLegacyFiles(t *testing.T) {
	ctx := context.Background()
	relays := recordedRelays(t)
	fresh, err := Generate(ctx, recordedConfig(t.TempDir(), exits.ModeSingle), relays, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The old scheme: the same instances packed from the range's start.
	cfg := recordedConfig(t.TempDir(), exits.ModeSingle)
	for i, in := range fresh.Instances {
		in.Port = 9060 + i
		b, err := torrc.Render(in.Instance)
		if err != nil {
			t.Fatal(err)
		}
		legacy := strings.Replace(string(b), torrc.HashedPorts+"\n", "", 1)
		if err := os.WriteFile(torrc.Path(cfg.TorrcDir, in.Port), []byte(legacy), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Generate(ctx, cfg, relays, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(portsByKey(p)) != fmt.Sprint(portsByKey(fresh)) {
		t.Errorf("migrated ports differ from an empty dir's")
	}
	stay := 0
	for i, in := range fresh.Instances {
		if in.Port == 9060+i {
			stay++
		}
	}
	if len(p.Moved) != len(fresh.Instances)-stay || len(p.Moved) == 0 {
		t.Errorf("moved %d, want %d (every legacy file not already on its hashed port)", len(p.Moved), len(fresh.Instances)-stay)
	}
	again, err := Generate(ctx, cfg, relays, nil)
	if err != nil || len(again.Moved) != 0 || len(again.Changed) != 0 {
		t.Errorf("second run after the migration: moved %v, changed %v, %v; want nothing", again.Moved, again.Changed, err)
	}
}
