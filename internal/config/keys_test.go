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
	"database":                         "proxypoold.TestDaemonKeysTakeEffect/gateway.listen, proxypoold.TestStackE2E, proxypoold.TestRunOnPostgres",
	"gateway.allow-open":               "gateway.TestOpenListenerNeedsAllowOpen, proxypoold.TestKeysReachTheirOptions/gateway.allow-open",
	"gateway.auth-delay-max":           "gateway.TestAuthFailuresAreDelayedPerSource, proxypoold.TestKeysReachTheirOptions/gateway.auth-delay-max",
	"gateway.auth.users":               "gateway.TestAuth, proxypoold.TestKeysReachTheirOptions/gateway.auth.users",
	"gateway.debug-header":             "gateway.TestKeepAliveRequestsUseDifferentUpstreams, gateway.TestHTTPForwardAddsNoHeader, proxypoold.TestKeysReachTheirOptions/gateway.debug-header",
	"gateway.dial-timeout":             "dial.TestDialTimeoutDefault, proxypoold.TestKeysReachTheirOptions/gateway.dial-timeout",
	"gateway.eject-after":              "pool.TestEjectionAndReadmission, proxypoold.TestKeysReachTheirOptions/gateway.eject-after",
	"gateway.eject-client-share":       "config.TestEjectClientShare, pool.TestEjectBudgetPerClient, proxypoold.TestKeysReachTheirOptions/gateway.eject-client-share",
	"gateway.eject-client-window":      "config.TestEjectClientShare, pool.TestEjectBudgetPerClient, proxypoold.TestKeysReachTheirOptions/gateway.eject-client-window",
	"gateway.idle-timeout":             "gateway.TestLoopMaxConnsAndIdle, gateway.TestStreamingOutlivesIdleTimeout, proxypoold.TestKeysReachTheirOptions/gateway.idle-timeout",
	"gateway.listen":                   "proxypoold.TestDaemonKeysTakeEffect/gateway.listen, proxypoold.TestKeysReachTheirOptions/gateway.listen, proxypoold.TestStackE2E, proxypoold.TestReloadLiveKeys/gateway.listen",
	"gateway.max-conns":                "gateway.TestLoopMaxConnsAndIdle, gateway.TestLoopMaxConnsResumeAfterQueuedTurn, proxypoold.TestKeysReachTheirOptions/gateway.max-conns",
	"gateway.max-conns-per-client":     "gateway.TestMaxConnsPerClient, proxypoold.TestKeysReachTheirOptions/gateway.max-conns-per-client",
	"gateway.max-session-id":           "gateway.TestRequestBounds/usernames, gateway.TestSessionIDFloodBoundsTheHeap, proxypoold.TestKeysReachTheirOptions/gateway.max-session-id",
	"gateway.max-session-ttl":          "config.TestDerivedDefaults, gateway.TestRequestBounds/usernames, proxypoold.TestKeysReachTheirOptions/gateway.max-session-ttl",
	"gateway.max-sessions":             "pool.TestSessionsBoundedLRU, proxypoold.TestKeysReachTheirOptions/gateway.max-sessions",
	"gateway.max-tries":                "gateway.TestInstantRefusalsDoNotUseUpTries, failover.TestFailover, proxypoold.TestReloadLiveKeys/gateway.max-tries",
	"gateway.ports":                    "gateway.TestCountryTargeting, proxypoold.TestDaemonKeysTakeEffect/gateway.listen, proxypoold.TestKeysReachTheirOptions/gateway.ports, gateway.TestSetPorts, proxypoold.TestReloadLiveKeys/gateway.ports, proxypoold.TestReloadE2E, clashbackend.TestSetPorts",
	"gateway.rotate-every":             "gateway.TestRotateEvery, proxypoold.TestRotateEveryE2E, proxypoold.TestReloadPickers, proxypoold.TestReloadLiveKeys/gateway.rotate-every",
	"gateway.session-ttl":              "config.TestDerivedDefaults, pool.TestSessionTTLAndFailover, proxypoold.TestKeysReachTheirOptions/gateway.session-ttl",
	"gateway.strategy":                 "pool.TestStrategies, gateway.TestPortStrategies, proxypoold.TestKeysReachTheirOptions/gateway.strategy, proxypoold.TestReloadPickers, proxypoold.TestReloadLiveKeys/gateway.strategy, proxypoold.TestReloadE2E",
	"gateway.total-timeout":            "gateway.TestRequestBounds/total-timeout, failover.TestFailoverDeadline, proxypoold.TestKeysReachTheirOptions/gateway.total-timeout",
	"groups.<name>":                    "pool.TestSelection, proxypoold.TestKeysReachTheirOptions/groups.<name>, pool.TestReconfigure, pool.TestSetGroupsFilters",
	"groups.<name>.countries":          "pool.TestSelection, gateway.TestCountryTargeting, proxypoold.TestKeysReachTheirOptions/groups.<name>.countries, pool.TestReconfigure, proxypoold.TestReloadLiveKeys/groups.us.countries",
	"groups.<name>.exclude-countries":  "pool.TestSelection, gateway.TestCountryTargeting, proxypoold.TestKeysReachTheirOptions/groups.<name>.exclude-countries",
	"groups.<name>.min-exits":          "slo.TestGroupRunsDryAndRecovers, slo.TestNothingLoops, proxypoold.TestKeysReachTheirOptions/groups.<name>.min-exits, proxypoold.TestReloadLiveKeys/groups.us.min-exits",
	"groups.<name>.min-healthy":        "slo.TestGroupRunsDryAndRecovers, slo.TestLadder, proxypoold.TestKeysReachTheirOptions/groups.<name>.min-healthy, proxypoold.TestReloadLiveKeys/groups.us.min-healthy",
	"groups.<name>.sources":            "pool.TestGroupKeys/sources, proxypoold.TestKeysReachTheirOptions/groups.<name>.sources",
	"groups.<name>.asn":                "pool.TestGroupKeys/asn, store.TestListByQuality, proxypoold.TestKeysReachTheirOptions/groups.<name>.asn, pool.TestSetGroupsFilters, proxypoold.TestReloadLiveKeys/groups.us.asn",
	"groups.<name>.exclude-asn":        "pool.TestGroupKeys/exclude-asn, store.TestListByQuality, proxypoold.TestKeysReachTheirOptions/groups.<name>.exclude-asn, pool.TestSetGroupsFilters, proxypoold.TestReloadLiveKeys/groups.us.exclude-asn",
	"groups.<name>.class":              "pool.TestGroupKeys/class, store.TestListByQuality, proxypoold.TestKeysReachTheirOptions/groups.<name>.class, pool.TestSetGroupsFilters, proxypoold.TestReloadLiveKeys/groups.us.class",
	"groups.<name>.min-throughput":     "pool.TestGroupKeys/min-throughput, proxypoold.TestKeysReachTheirOptions/groups.<name>.min-throughput, pool.TestSetGroupsFilters, proxypoold.TestReloadLiveKeys/groups.us.min-throughput",
	"groups.<name>.tor-instances":      "torops.TestSupervisorBudget, proxypoold.TestKeysReachTheirOptions/groups.<name>.tor-instances",
	"groups.<name>.types":              "pool.TestGroupKeys/types, proxypoold.TestKeysReachTheirOptions/groups.<name>.types",
	"log.format":                       "logging.TestFormats, proxypoold.TestKeysReachTheirOptions/log.format",
	"log.level":                        "logging.TestFormats, proxypoold.TestKeysReachTheirOptions/log.level, proxypoold.TestReloadLiveKeys/log.level",
	"metrics.enabled":                  "proxypoold.TestDaemonKeysTakeEffect/metrics.enabled",
	"metrics.gateway-listen":           "proxypoold.TestDaemonKeysTakeEffect/gateway.listen",
	"metrics.listen":                   "proxypoold.TestDaemonKeysTakeEffect/metrics.listen, proxypoold.TestStackE2E",
	"probe.concurrency":                "probe.TestOptionEffects, proxypoold.TestKeysReachTheirOptions/probe.concurrency",
	"probe.dead-backoff-max":           "upstream.TestLifecycle, proxypoold.TestKeysReachTheirOptions/probe.dead-backoff-max",
	"probe.delete-after":               "store.TestRetainDeadHonoursShortDeleteAfter, proxypoold.TestDaemonKeysTakeEffect/probe.delete-after",
	"probe.failing-interval":           "config.TestDerivedDefaults, upstream.TestLifecycle, proxypoold.TestKeysReachTheirOptions/probe.failing-interval",
	"probe.geoip":                      "geoip.TestCountryTorFiles, geoip.TestCountryMMDB, proxypoold.TestKeysReachTheirOptions/probe.geoip, proxypoold.TestStackE2E",
	"probe.geoip6":                     "geoip.TestOpenPathFindsGeoip6, proxypoold.TestKeysReachTheirOptions/probe.geoip6",
	"probe.asn-database":               "geoip.TestASNFromRecordedTable, probe.TestOptionEffects, proxypoold.TestKeysReachTheirOptions/probe.asn-database, proxypoold.TestReloadLiveKeys/probe.asn-database",
	"probe.asn-classes":                "geoip.TestClassOfRecordedExits, proxypoold.TestKeysReachTheirOptions/probe.asn-classes",
	"probe.ipv6-judge":                 "probe.TestOptionEffects, proxypoold.TestKeysReachTheirOptions/probe.ipv6-judge, proxypoold.TestReloadLiveKeys/probe.ipv6-judge",
	"probe.history":                    "store.TestHistoryIsBounded, proxypoold.TestKeysReachTheirOptions/probe.history",
	"probe.interval":                   "config.TestDerivedDefaults, upstream.TestLifecycle, proxypoold.TestKeysReachTheirOptions/probe.interval",
	"probe.judges":                     "probe.TestOptionEffects, proxypoold.TestKeysReachTheirOptions/probe.judges, proxypoold.TestStackE2E, proxypoold.TestReloadLiveKeys/probe.judges",
	"probe.max-failures":               "upstream.TestLifecycle, proxypoold.TestKeysReachTheirOptions/probe.max-failures",
	"probe.real-ip":                    "probe.TestOptionEffects, proxypoold.TestKeysReachTheirOptions/probe.real-ip",
	"probe.target.enabled":             "probe.TestOptionEffects, proxypoold.TestKeysReachTheirOptions/probe.target.enabled",
	"probe.target.status":              "probe.TestOptionEffects, proxypoold.TestKeysReachTheirOptions/probe.target.status",
	"probe.target.url":                 "probe.TestOptionEffects, proxypoold.TestKeysReachTheirOptions/probe.target.url",
	"probe.timeout":                    "probe.TestOptionEffects, proxypoold.TestKeysReachTheirOptions/probe.timeout",
	"probe.uplink-check":               "probe.TestUplinkDownPausesInsteadOfKilling, proxypoold.TestKeysReachTheirOptions/probe.uplink-check",
	"refresh.concurrency":              "source.TestRefreshManySourcesOneFailing, proxypoold.TestKeysReachTheirOptions/refresh.concurrency",
	"refresh.interval":                 "source.TestIntervals, proxypoold.TestKeysReachTheirOptions/refresh.interval",
	"slo.check-interval":               "slo.TestGroupRunsDryAndRecovers, proxypoold.TestKeysReachTheirOptions/slo.check-interval",
	"slo.min-action-interval":          "slo.TestNothingLoops, slo.TestFlappingGroup, proxypoold.TestKeysReachTheirOptions/slo.min-action-interval",
	"slo.min-exits":                    "slo.TestPoolFloors, proxypoold.TestKeysReachTheirOptions/slo.min-exits",
	"slo.min-healthy":                  "slo.TestPoolFloors, proxypoold.TestKeysReachTheirOptions/slo.min-healthy",
	"sources":                          "source.TestRefreshIntoStore, source.TestIntervals, proxypoold.TestDaemonKeysTakeEffect/sources, proxypoold.TestKeysReachTheirOptions/sources, proxypoold.TestStackE2E, proxypoold.TestReloadLiveKeys/sources, proxypoold.TestReloadE2E",
	"tor.binary":                       "torgen.TestProcessRunnerSupervises, torrc.TestVerifierFor, proxypoold.TestKeysReachTheirOptions/tor.binary",
	"tor.bootstrap-grace":              "torops.TestSupervisorBudget, proxypoold.TestKeysReachTheirOptions/tor.bootstrap-grace",
	"tor.data-dir":                     "torrc.TestRenderGolden, proxypoold.TestKeysReachTheirOptions/tor.data-dir",
	"tor.enabled":                      "proxypoold.TestTorgenDryRunChangesNothing, proxypoold.TestTorGatewayE2E",
	"tor.extra-config":                 "torrc.TestWriteRealTorRejectsBadConfig, torgen.TestPrivateNetwork, proxypoold.TestKeysReachTheirOptions/tor.extra-config",
	"tor.groups":                       "torgen.TestSharesOnRecordedConsensus, proxypoold.TestKeysReachTheirOptions/tor.groups",
	"tor.max-circuit-dirtiness":        "torrc.TestRenderGolden, proxypoold.TestKeysReachTheirOptions/tor.max-circuit-dirtiness",
	"tor.max-instances":                "exits.TestAssignPortsCapAndRange, torops.TestScaleUpAtTheCap, proxypoold.TestKeysReachTheirOptions/tor.max-instances",
	"tor.mode":                         "exits.TestSlotsModes, proxypoold.TestKeysReachTheirOptions/tor.mode",
	"tor.newnym-period":                "torctl.TestNewNymEveryStopsWithContext, proxypoold.TestKeysReachTheirOptions/tor.newnym-period",
	"tor.port-base":                    "config.TestDerivedDefaults, exits.TestAssignPortsCapAndRange, proxypoold.TestKeysReachTheirOptions/tor.port-base",
	"tor.port-max":                     "config.TestDerivedDefaults, exits.TestAssignPortsCapAndRange, proxypoold.TestKeysReachTheirOptions/tor.port-max",
	"tor.refresh":                      "torops.TestSupervisorRetriesAFailedDiscovery, torops.TestDue, proxypoold.TestTorgenDueFollowsTorRefresh",
	"tor.relays":                       "exits.TestSourceRecordedFiles, exits.TestFromControl, proxypoold.TestKeysReachTheirOptions/tor.relays",
	"tor.relays-format":                "exits.TestSourceRecordedFiles, proxypoold.TestKeysReachTheirOptions/tor.relays-format",
	"tor.runner":                       "proxypoold.TestDaemonKeysTakeEffect/tor.runner, proxypoold.TestTorGatewayE2E",
	"tor.torrc-dir":                    "torgen.TestGenerateFilesAndRunner, proxypoold.TestKeysReachTheirOptions/tor.torrc-dir",
	"probe.targets.<name>":             "checks.TestFleetTargets, proxypoold.TestKeysReachTheirOptions/probe.targets.<name>, proxypoold.TestReloadTargetsE2E, proxypoold.TestReloadLiveKeys/probe.targets.shop.url",
	"probe.targets.<name>.url":         "checks.TestFleetTargets, proxypoold.TestKeysReachTheirOptions/probe.targets.<name>.url, proxypoold.TestReloadTargetsE2E, proxypoold.TestReloadLiveKeys/probe.targets.shop.url",
	"probe.targets.<name>.status":      "checks.TestFleetTargets, proxypoold.TestKeysReachTheirOptions/probe.targets.<name>.status",
	"probe.targets.<name>.body":        "checks.TestFleetTargets, proxypoold.TestKeysReachTheirOptions/probe.targets.<name>.body",
	"probe.targets.<name>.not-body":    "checks.TestFleetTargets, proxypoold.TestKeysReachTheirOptions/probe.targets.<name>.not-body",
	"probe.targets.<name>.max-time":    "checks.TestFleetTargets, proxypoold.TestKeysReachTheirOptions/probe.targets.<name>.max-time",
	"probe.targets.<name>.headers":     "checks.TestFleetTargets, proxypoold.TestKeysReachTheirOptions/probe.targets.<name>.headers",
	"probe.targets.<name>.interval":    "checks.TestRunEachOnItsInterval, proxypoold.TestKeysReachTheirOptions/probe.targets.<name>.interval",
	"probe.targets.<name>.ttl":         "checks.TestFleetTargets, store.TestTargetAndSpeedResults, config.TestTargetAndSpeedKeys, proxypoold.TestKeysReachTheirOptions/probe.targets.<name>.ttl",
	"probe.targets.<name>.concurrency": "checks.TestFleetTargets, proxypoold.TestKeysReachTheirOptions/probe.targets.<name>.concurrency",
	"probe.targets.<name>.budget":      "checks.TestFleetTargets, proxypoold.TestKeysReachTheirOptions/probe.targets.<name>.budget",
	"probe.speed.url":                  "checks.TestFleetSpeed, proxypoold.TestKeysReachTheirOptions/probe.speed.url, proxypoold.TestReloadLiveKeys/probe.speed.url",
	"probe.speed.size":                 "checks.TestFleetSpeed, proxypoold.TestKeysReachTheirOptions/probe.speed.size",
	"probe.speed.upload":               "checks.TestFleetSpeed, proxypoold.TestKeysReachTheirOptions/probe.speed.upload",
	"probe.speed.budget-bytes":         "checks.TestFleetSpeed, proxypoold.TestKeysReachTheirOptions/probe.speed.budget-bytes",
	"probe.speed.concurrency":          "checks.TestFleetSpeed, proxypoold.TestKeysReachTheirOptions/probe.speed.concurrency",
	"probe.speed.interval":             "checks.TestRunEachOnItsInterval, proxypoold.TestKeysReachTheirOptions/probe.speed.interval",
	"probe.speed.max-time":             "checks.TestFleetSpeed, proxypoold.TestKeysReachTheirOptions/probe.speed.max-time",
	"probe.speed.kinds":                "checks.TestFleetSpeed, proxypoold.TestKeysReachTheirOptions/probe.speed.kinds",
	"probe.speed.sources":              "checks.TestFleetSpeed, proxypoold.TestKeysReachTheirOptions/probe.speed.sources",
	"groups.<name>.require-targets":    "pool.TestRequireTargets, proxypoold.TestTargetsE2E, proxypoold.TestKeysReachTheirOptions/groups.<name>.require-targets, pool.TestSetGroupsFilters, proxypoold.TestReloadTargetsE2E, proxypoold.TestReloadLiveKeys/groups.us.require-targets",
	// Keys of the gateway's try bounds (keys17b).
	"gateway.client-timeout":             "gateway.TestLoopMaxConnsAndIdle, gateway.TestSlowlorisAndHeaderCap, proxypoold.TestReloadLiveKeys/gateway.client-timeout",
	"gateway.upstream-handshake-timeout": "gateway.TestUpstreamHandshakeTimeout, config.TestHandshakeTimeoutIsDeprecated, proxypoold.TestReloadLiveKeys/gateway.upstream-handshake-timeout",
	"gateway.max-attempts":               "gateway.TestInstantRefusalsDoNotUseUpTries, config.TestGatewayTryKeys, proxypoold.TestReloadLiveKeys/gateway.max-attempts",
	"refresh.retire-after":               "source.TestRefresherRetires",
	"api.listen":                         "config.TestAPIKeys",
	"api.secret":                         "api.TestAuth",
	"api.cors-origins":                   "api.TestCORS",
	"api.clash.group-limit":              "clashbackend.TestProxiesLargePool, config.TestAPIKeys, proxypoold.TestKeysReachTheirOptions/api.clash.group-limit",
	"api.clash.pin-ttl":                  "clashbackend.TestPinGroup, config.TestAPIKeys, proxypoold.TestKeysReachTheirOptions/api.clash.pin-ttl, proxypoold.TestReloadLiveKeys/api.clash.pin-ttl",
	"api.clash.test-url":                 "clashapi.TestAppendUpstreamMatches, config.TestAPIKeys, proxypoold.TestKeysReachTheirOptions/api.clash.test-url, proxypoold.TestDashboardE2E",
}

// pendingKeys17b are the keys whose new behaviour another branch (keys17b:
// rotate-every, handshake timeouts, instant-refusal retries, Tor discovery
// backoff) proves; their rows may stay TODO until that branch lands, and
// the lead removes each from here when its row names the proof.
var pendingKeys17b = map[string]bool{}

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
			if path == "groups" || path == "probe.targets" {
				p = "<name>" // groups and targets are named by the user
			}
			if path != "" {
				p = path + "." + p
			}
			if v := n.Content[i+1]; v.Kind != yaml.MappingNode || path == "groups" || path == "probe.targets" || strings.HasSuffix(p, ".headers") {
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
		t.Errorf("%d keys without a test proving their effect (TODO): %s", len(todo), strings.Join(todo, ", "))
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
