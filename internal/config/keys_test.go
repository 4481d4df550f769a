package config

import (
	"os"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// keyProofs names, for every key of the shipped proxypool.yaml, the test
// that proves what the key does. "TODO" rows are keys no test proves yet:
// the test lists them instead of failing, so what is left stays visible.
var keyProofs = map[string]string{
	"tor.port-base":                   "config.TestDerivedDefaults",
	"tor.port-max":                    "config.TestDerivedDefaults",
	"probe.interval":                  "config.TestDerivedDefaults",
	"probe.failing-interval":          "config.TestDerivedDefaults",
	"gateway.session-ttl":             "config.TestDerivedDefaults",
	"gateway.max-session-ttl":         "config.TestDerivedDefaults",
	"gateway.eject-client-share":      "config.TestEjectClientShare",
	"gateway.eject-client-window":     "config.TestEjectClientShare",
	"api.listen":                      "config.TestAPIKeys",
	"api.secret":                      "api.TestAuth",
	"api.cors-origins":                "api.TestCORS",
	"database":                        "TODO",
	"gateway.allow-open":              "TODO",
	"gateway.auth-delay-max":          "TODO",
	"gateway.auth.users":              "TODO",
	"gateway.debug-header":            "TODO",
	"gateway.dial-timeout":            "TODO",
	"gateway.eject-after":             "TODO",
	"gateway.handshake-timeout":       "TODO",
	"gateway.idle-timeout":            "TODO",
	"gateway.listen":                  "TODO",
	"gateway.max-conns":               "TODO",
	"gateway.max-conns-per-client":    "TODO",
	"gateway.max-session-id":          "TODO",
	"gateway.max-sessions":            "TODO",
	"gateway.max-tries":               "TODO",
	"gateway.ports":                   "TODO",
	"gateway.rotate-every":            "TODO",
	"gateway.strategy":                "TODO",
	"gateway.total-timeout":           "TODO",
	"groups.<name>":                   "TODO",
	"groups.<name>.exclude-countries": "TODO",
	"groups.<name>.countries":         "TODO",
	"groups.<name>.min-exits":         "TODO",
	"groups.<name>.min-healthy":       "TODO",
	"groups.<name>.sources":           "TODO",
	"groups.<name>.tor-instances":     "TODO",
	"groups.<name>.types":             "TODO",
	"log.format":                      "TODO",
	"log.level":                       "TODO",
	"metrics.enabled":                 "TODO",
	"metrics.gateway-listen":          "TODO",
	"metrics.listen":                  "TODO",
	"probe.concurrency":               "TODO",
	"probe.dead-backoff-max":          "TODO",
	"probe.delete-after":              "TODO",
	"probe.geoip":                     "TODO",
	"probe.geoip6":                    "TODO",
	"probe.history":                   "TODO",
	"probe.judges":                    "TODO",
	"probe.max-failures":              "TODO",
	"probe.real-ip":                   "TODO",
	"probe.target.enabled":            "TODO",
	"probe.target.status":             "TODO",
	"probe.target.url":                "TODO",
	"probe.timeout":                   "TODO",
	"probe.uplink-check":              "TODO",
	"refresh.concurrency":             "TODO",
	"refresh.interval":                "TODO",
	"slo.check-interval":              "TODO",
	"slo.min-action-interval":         "TODO",
	"slo.min-exits":                   "TODO",
	"slo.min-healthy":                 "TODO",
	"sources":                         "TODO",
	"tor.binary":                      "TODO",
	"tor.bootstrap-grace":             "TODO",
	"tor.data-dir":                    "TODO",
	"tor.enabled":                     "TODO",
	"tor.extra-config":                "TODO",
	"tor.groups":                      "TODO",
	"tor.max-circuit-dirtiness":       "TODO",
	"tor.max-instances":               "TODO",
	"tor.mode":                        "TODO",
	"tor.newnym-period":               "TODO",
	"tor.refresh":                     "TODO",
	"tor.relays":                      "TODO",
	"tor.relays-format":               "TODO",
	"tor.runner":                      "TODO",
	"tor.torrc-dir":                   "TODO",
}

// shippedKeys is every dotted key path of the file (list items as []).
func shippedKeys(n *yaml.Node, path string, out map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			shippedKeys(c, path, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path == "groups" {
				p = "<name>" // groups are named by the user
			}
			if path != "" {
				p = path + "." + p
			}
			if v := n.Content[i+1]; v.Kind != yaml.MappingNode || path == "groups" {
				out[p] = true // a section is proven by its keys
			}
			shippedKeys(n.Content[i+1], p, out)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			shippedKeys(c, path+"[]", out)
		}
	}
}

// TestEveryShippedKeyHasAProof fails when the shipped file gains a key
// without a row in keyProofs.
func TestEveryShippedKeyHasAProof(t *testing.T) {
	b, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("parsing %s: %v", shipped, err)
	}
	keys := map[string]bool{}
	shippedKeys(&doc, "", keys)
	var missing, todo []string
	for k := range keys {
		switch proof, ok := keyProofs[k]; {
		case !ok && !strings.Contains(k, "[]"):
			missing = append(missing, k)
		case proof == "TODO":
			todo = append(todo, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(todo)
	for k := range keyProofs {
		if !keys[k] {
			t.Errorf("keyProofs row %q is not a key of %s any more", k, shipped)
		}
	}
	if len(todo) > 0 {
		t.Logf("%d keys without a test proving their effect (TODO): %s", len(todo), strings.Join(todo, ", "))
	}
	if len(missing) > 0 {
		t.Errorf("keys of %s without a row in keyProofs (name the test proving each, or TODO): %s", shipped, strings.Join(missing, ", "))
	}
}
