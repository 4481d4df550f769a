package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestTargetAndSpeedKeys: probe.targets items get their defaults (ttl
// three intervals unless set), probe.speed its own, groups name the
// targets they require; each hostile value is refused naming
// file:line: key.
func TestTargetAndSpeedKeys(t *testing.T) {
	c, err := Parse([]byte(`probe:
  targets:
    imot:
      url: https://www.imot.bg/
      status: [200, 301]
      not-body: "(?i)captcha"
      headers: {Accept-Language: bg}
      interval: 2m
    shop: {url: "http://127.90.0.1:22001/", ttl: 1m, body: "price"}
  speed: {url: "http://127.90.0.1:22002/blob", size: 2MiB, budget-bytes: 10MiB, kinds: [SOCKS5], sources: [free]}
groups:
  scrape: {require-targets: [imot, shop]}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	imot, shop := c.Probe.Targets["imot"], c.Probe.Targets["shop"]
	want := TargetCheck{URL: "https://www.imot.bg/", Status: []int{200, 301}, NotBody: "(?i)captcha",
		Headers: map[string]string{"Accept-Language": "bg"}, MaxTime: 10 * time.Second, Interval: 2 * time.Minute,
		TTL: 6 * time.Minute, Concurrency: 16}
	if !reflect.DeepEqual(imot, want) {
		t.Errorf("imot = %+v, want %+v", imot, want)
	}
	if shop.TTL != time.Minute || shop.Interval != 10*time.Minute || shop.Body != "price" {
		t.Errorf("shop = %+v, want its own ttl 1m, the default interval 10m, body price", shop)
	}
	wantSpeed := Speed{URL: "http://127.90.0.1:22002/blob", Size: 2 << 20, BudgetBytes: 10 << 20, Concurrency: 2,
		Interval: time.Hour, MaxTime: 30 * time.Second, Kinds: []string{"socks5"}, Sources: []string{"free"}}
	if !reflect.DeepEqual(c.Probe.Speed, wantSpeed) {
		t.Errorf("speed = %+v, want %+v", c.Probe.Speed, wantSpeed)
	}
	if got := c.Groups["scrape"].RequireTargets; !reflect.DeepEqual(got, []string{"imot", "shop"}) {
		t.Errorf("groups.scrape.require-targets = %v", got)
	}

	for _, tt := range []struct{ in, want string }{
		{"probe: {targets: {a: {}}}", "t.yaml:1: probe.targets.a.url: missing"},
		{"probe: {targets: {a-b: {url: 'http://x/'}}}", "probe.targets.a-b: target names may hold"},
		{"probe: {targets: {a: {url: 'ftp://x/'}}}", `probe.targets.a.url: "ftp://x/" is not an http`},
		{"probe: {targets: {a: {url: 'http://x/', status: [99]}}}", "probe.targets.a.status[0]: 99 is not an HTTP status"},
		{"probe: {targets: {a: {url: 'http://x/', body: '(['}}}", "probe.targets.a.body: not a regular expression"},
		{"probe: {targets: {a: {url: 'http://x/', not-body: '*'}}}", "probe.targets.a.not-body: not a regular expression"},
		{"probe: {targets: {a: {url: 'http://x/', concurrency: 0}}}", "probe.targets.a.concurrency"},
		{"probe: {targets: {a: {url: 'http://x/', budget: -1}}}", "probe.targets.a.budget"},
		{"probe: {targets: {a: {url: 'http://x/', max-time: -1s}}}", "probe.targets.a.max-time"},
		{"probe: {targets: {a: {url: 'http://x/', headers: {'a b': c}}}}", `probe.targets.a.headers: "a b" is not a header name`},
		{"probe: {targets: {a: {url: 'http://x/', colour: red}}}", "probe.targets.a.colour: unknown key"},
		{"groups: {g: {require-targets: [nosuch]}}", `t.yaml:1: groups.g.require-targets[0]: "nosuch" is not a probe.targets name`},
		{"probe: {speed: {url: 'http://x/', size: 2MiB, budget-bytes: 1MiB}}", "probe.speed.budget-bytes: 1MiB is less than one check"},
		{"probe: {speed: {url: 'http://x/', kinds: [carrier-pigeon]}}", "probe.speed.kinds[0]"},
		{"probe: {speed: {url: 'http://x/', concurrency: 0}}", "probe.speed.concurrency"},
		{"probe: {speed: {url: 'x'}}", "probe.speed.url"},
	} {
		_, err := Parse([]byte(tt.in), "t.yaml")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.in, err, tt.want)
		}
	}
}
