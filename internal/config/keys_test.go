package config

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// keyProofs names, for every key of the shipped proxypool.yaml, the tests
// that prove what the key does ("pkg.TestName" or "pkg.TestName/subtest",
// several joined by ", "; pkg is the last element of the test's
// directory). A key that cmd/proxypoold only passes on is proven twice: by
// the owning package's test of the effect and by proxypoold's
// TestKeysReachTheirOptions, which fails when a key is parsed and never
// passed.
var keyProofs = map[string]string{
	"tor.port-base":                   "config.TestDerivedDefaults",
	"tor.port-max":                    "config.TestDerivedDefaults",
	"probe.interval":                  "config.TestDerivedDefaults",
	"probe.failing-interval":          "config.TestDerivedDefaults",
	"gateway.session-ttl":             "config.TestDerivedDefaults",
	"gateway.max-session-ttl":         "config.TestDerivedDefaults",
	"gateway.eject-client-share":      "config.TestEjectClientShare",
	"gateway.eject-client-window":     "config.TestEjectClientShare",
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

// pendingKeys17b are the keys whose new behaviour another branch (keys17b:
// rotate-every, handshake timeouts, instant-refusal retries, Tor discovery
// backoff) proves; their rows may stay TODO until that branch lands, and
// the lead removes each from here when its row names the proof.
var pendingKeys17b = map[string]bool{
	"gateway.rotate-every":      true,
	"gateway.handshake-timeout": true,
	"gateway.max-tries":         true,
	"tor.refresh":               true,
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

// testFunc matches a top-level test function's declaration.
var testFunc = regexp.MustCompile(`(?m)^func (Test\w+)\(`)

// testPackage is what the *_test.go files of one directory declare: their
// top-level tests and their text, where a subtest's name is looked for.
type testPackage struct {
	dir   string
	tests map[string]bool
	text  string
}

// testIndex scans every *_test.go under root, keyed by the last element of
// its directory ("gateway", "failover", "proxypoold"): the "pkg" of a
// keyProofs row. A cheap text scan is enough to tell a name that exists
// from one that does not.
func testIndex(t *testing.T, root string) map[string]*testPackage {
	t.Helper()
	idx := map[string]*testPackage{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "var" || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		name := filepath.Base(dir)
		p := idx[name]
		switch {
		case p == nil:
			p = &testPackage{dir: dir, tests: map[string]bool{}}
			idx[name] = p
		case p.dir != dir:
			return fmt.Errorf("%s and %s both hold tests: a keyProofs row could not tell them apart", p.dir, dir)
		}
		for _, m := range testFunc.FindAllSubmatch(b, -1) {
			p.tests[string(m[1])] = true
		}
		p.text += string(b)
		return nil
	})
	if err != nil {
		t.Fatalf("scanning the tests under %s: %v", root, err)
	}
	return idx
}

// checkProof says what is wrong with one proof, "pkg.TestName" or
// "pkg.TestName/subtest", or "" when it names a test that exists.
func checkProof(idx map[string]*testPackage, proof string) string {
	pkg, rest, ok := strings.Cut(proof, ".")
	if !ok || pkg == "" || !strings.HasPrefix(rest, "Test") {
		return fmt.Sprintf("%q is not pkg.TestName or pkg.TestName/subtest", proof)
	}
	name, sub, hasSub := strings.Cut(rest, "/")
	p := idx[pkg]
	switch {
	case p == nil:
		return fmt.Sprintf("%q: no directory %q holds tests", proof, pkg)
	case !p.tests[name]:
		return fmt.Sprintf("%q: no func %s( in %s/*_test.go", proof, name, p.dir)
	case hasSub && !strings.Contains(p.text, `"`+sub+`"`) && !strings.Contains(p.text, `"`+strings.ReplaceAll(sub, "_", " ")+`"`):
		return fmt.Sprintf("%q: no subtest named %q in %s/*_test.go", proof, sub, p.dir)
	}
	return ""
}

// TestEveryShippedKeyHasAProof fails when the shipped file gains a key
// without a row in keyProofs, when a row names a test that does not exist,
// and when a row is still TODO (but for pendingKeys17b).
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
	idx := testIndex(t, "../..")
	var missing, todo, pending []string
	for k := range keys {
		proof, ok := keyProofs[k]
		switch {
		case !ok && !strings.Contains(k, "[]"):
			missing = append(missing, k)
		case proof == "TODO" && pendingKeys17b[k]:
			pending = append(pending, k)
		case proof == "TODO":
			todo = append(todo, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(todo)
	sort.Strings(pending)
	rows := make([]string, 0, len(keyProofs))
	for k := range keyProofs {
		rows = append(rows, k)
	}
	sort.Strings(rows)
	for _, k := range rows {
		if !keys[k] {
			t.Errorf("keyProofs row %q is not a key of %s any more", k, shipped)
		}
		proof := keyProofs[k]
		if proof == "TODO" {
			continue
		}
		if pendingKeys17b[k] {
			t.Errorf("keyProofs row %q names its proof: remove it from pendingKeys17b", k)
		}
		for _, p := range strings.Split(proof, ", ") {
			if why := checkProof(idx, p); why != "" {
				t.Errorf("keyProofs row %q: %s", k, why)
			}
		}
	}
	if len(pending) > 0 {
		t.Logf("%d keys whose proof comes with keys17b: %s", len(pending), strings.Join(pending, ", "))
	}
	if len(todo) > 0 {
		t.Logf("%d keys without a test proving their effect (TODO): %s", len(todo), strings.Join(todo, ", "))
	}
	if len(missing) > 0 {
		t.Errorf("keys of %s without a row in keyProofs (name the test proving each): %s", shipped, strings.Join(missing, ", "))
	}
}

// TestCheckProof proves the row check itself: a made-up test or subtest
// name is an error, a real one is not.
func TestCheckProof(t *testing.T) {
	idx := testIndex(t, "../..")
	tests := []struct {
		proof string
		ok    bool
	}{
		{"config.TestDerivedDefaults", true},
		{"config.TestCheckProof/config.TestNoSuchTest", true},
		{"config.TestNoSuchTest", false},
		{"config.TestDerivedDefaults/no such subtest here", false},
		{"nosuchpkg.TestDerivedDefaults", false},
		{"TestDerivedDefaults", false},
		{"config.DerivedDefaults", false},
	}
	for _, tt := range tests {
		t.Run(tt.proof, func(t *testing.T) {
			if why := checkProof(idx, tt.proof); (why == "") != tt.ok {
				t.Errorf("checkProof(%q) = %q, want ok %v", tt.proof, why, tt.ok)
			}
		})
	}
}
