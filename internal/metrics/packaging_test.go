package metrics_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/proxypool/proxypool/internal/metrics"
)

const (
	dashboardPath = "../../packaging/grafana/proxypool.json"
	rulesPath     = "../../packaging/prometheus/proxypool.rules.yml"
)

// exported is every metric name the program exports once all recorders
// have run (histograms with their _bucket/_sum/_count series).
func exported(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New()
	driveAll(m, time.Now())
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		n := f.GetName()
		names[n] = true
		if f.GetType().String() == "HISTOGRAM" || f.GetType().String() == "SUMMARY" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[n+suffix] = true
			}
		}
	}
	return names
}

// promqlKeywords are identifiers in PromQL that are not metric names.
var promqlKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "and": true, "or": true, "unless": true, "offset": true, "inf": true, "nan": true,
	"sum": true, "avg": true, "min": true, "max": true, "count": true, "topk": true, "bottomk": true,
	"quantile": true, "stddev": true, "stdvar": true, "count_values": true, "group": true,
}

var (
	promqlString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promqlRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promqlIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	grafanaVar     = regexp.MustCompile(`\$(__[A-Za-z_]+|\{[^}]*\}|[A-Za-z_]+)`)
)

// metricNames extracts the metric names a PromQL expression selects:
// strings, label matchers, ranges and grouping lists are dropped; what is
// left is identifiers, of which function calls (followed by "("),
// keywords and aggregators are not metrics.
func metricNames(expr string) []string {
	s := promqlString.ReplaceAllString(expr, `""`)
	s = grafanaVar.ReplaceAllString(s, "5m")
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlRange.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promqlIdent.FindAllStringIndex(s, -1) {
		id := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // the unit of a number or duration (5m, 1e3)
		}
		if promqlKeywords[id] {
			continue
		}
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") {
			continue // a function
		}
		out = append(out, id)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	tests := []struct{ expr, want string }{
		{`sum by (le) (rate(a_bucket{cause="ok", x=~"y|z"}[$__rate_interval]))`, "a_bucket"},
		{`histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))`, "x_bucket"},
		{`time() - max by (source) (src_ts)`, "src_ts"},
		{`a / on (job, instance) group_left(version) b > 0.2 and c`, "a b c"},
		{`rate(x[1h:5m]) * 1e3 unless d offset 5m`, "x d"},
		{`sum without (instance) (rate(y_total{a="b{c}"}[5m]))`, "y_total"},
		{"count(max by (group) (g) == 1) or vector(0)", "g"},
	}
	for _, tt := range tests {
		if got := strings.Join(metricNames(tt.expr), " "); got != tt.want {
			t.Errorf("metricNames(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}

// checkExpr reports the names in expr that the program does not export.
func checkExpr(t *testing.T, where, expr string, have map[string]bool) {
	t.Helper()
	names := metricNames(expr)
	if len(names) == 0 {
		t.Errorf("%s: no metric name found in %q", where, expr)
	}
	for _, n := range names {
		if !have[n] {
			t.Errorf("%s: %q names %s, which proxypool does not export", where, expr, n)
		}
	}
}

type grafanaPanel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) (grafanaDashboard, []grafanaPanel) {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var all []grafanaPanel
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels) // collapsed rows nest their panels
		}
	}
	walk(d.Panels)
	return d, all
}

func TestDashboard(t *testing.T) {
	have := exported(t)
	d, panels := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 30 {
		t.Errorf("dashboard uid %q title %q schemaVersion %d: want a stable uid, a title and a current schema", d.UID, d.Title, d.SchemaVersion)
	}
	// Importable as is: the data source is a variable, not an id of
	// someone's Grafana, nor an __inputs prompt.
	var dsVar bool
	for _, v := range d.Templating.List {
		if v.Type == "datasource" && v.Query == "prometheus" {
			dsVar = true
		}
		if v.Type == "query" {
			checkExpr(t, "variable "+v.Name, fmt.Sprint(v.Query), have)
		}
	}
	if !dsVar {
		t.Error("no datasource template variable of type prometheus")
	}
	raw, _ := os.ReadFile(dashboardPath)
	if strings.Contains(string(raw), "DS_PROMETHEUS") || strings.Contains(string(raw), "__inputs") {
		t.Error("dashboard needs import-time inputs; it must be importable as is")
	}

	ids := map[int]string{}
	var exprs int
	used := map[string]bool{}
	for _, p := range panels {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("%s: id also used by %q", where, prev)
		}
		ids[p.ID] = p.Title
		if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: bad gridPos %+v", where, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no queries", where)
		}
		for _, tg := range p.Targets {
			exprs++
			checkExpr(t, where+" "+tg.RefID, tg.Expr, have)
			for _, n := range metricNames(tg.Expr) {
				used[n] = true
			}
		}
	}
	t.Logf("%d panels, %d expressions, %d distinct metrics", len(panels), exprs, len(used))

	// The list of what the dashboard must show.
	for _, must := range []string{
		"proxypool_pool_upstreams", "proxypool_pool_healthy_by_country", "proxypool_group_healthy_upstreams",
		"proxypool_gateway_connections_total", "proxypool_gateway_dial_duration_seconds_bucket",
		"proxypool_gateway_retries_total", "proxypool_tor_exits", "proxypool_source_last_success_timestamp_seconds",
		"process_cpu_seconds_total", "process_resident_memory_bytes", "proxypool_slo_below_floor",
		"proxypool_probe_checks_total",
		"proxypool_tor_exits_usable", "proxypool_tor_instances_short", "proxypool_tor_discovery_timestamp_seconds",
		"proxypool_tor_instances_active",
		"proxypool_tor_instance_cpu_seconds_total", "proxypool_tor_instance_memory_bytes", "proxypool_tor_traffic_bytes_total",
		"proxypool_checks_target_passing", "proxypool_checks_target_upstreams", "proxypool_checks_target_outages_total",
		"proxypool_checks_speed_bytes_total",
	} {
		if !used[must] {
			t.Errorf("no panel shows %s", must)
		}
	}
	// The seed's geo pie: healthy upstreams by country as a pie chart.
	pie := false
	for _, p := range panels {
		for _, tg := range p.Targets {
			if p.Type == "piechart" && strings.Contains(tg.Expr, "proxypool_pool_healthy_by_country") {
				pie = true
			}
		}
	}
	if !pie {
		t.Error("no pie chart of healthy upstreams by country")
	}
}

type rulesFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func TestAlertRules(t *testing.T) {
	have := exported(t)
	b, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	var rf rulesFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", rulesPath, err)
	}
	alerts := map[string]string{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			where := fmt.Sprintf("%s: alert %s", rulesPath, r.Alert)
			if r.Alert == "" {
				t.Errorf("%s: rule without alert name", rulesPath)
				continue
			}
			alerts[r.Alert] = r.Expr
			checkExpr(t, where, r.Expr, have)
			if _, err := time.ParseDuration(r.For); err != nil || r.For == "" {
				t.Errorf("%s: for %q: want a duration", where, r.For)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", where, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary annotation", where)
			}
		}
	}
	// The alerts, each present.
	for _, want := range []struct{ alert, metric string }{
		{"ProxypoolHealthyPoolDropped", "proxypool_pool_healthy_upstreams"},
		{"ProxypoolGroupEmpty", "proxypool_group_healthy_upstreams"},
		{"ProxypoolGroupBelowFloor", "proxypool_slo_below_floor"},
		{"ProxypoolSourceFailing", "proxypool_source_failing"},
		{"ProxypoolGatewayErrorRateHigh", "proxypool_gateway_connections_total"},
	} {
		if !strings.Contains(alerts[want.alert], want.metric) {
			t.Errorf("alert %s missing or not on %s", want.alert, want.metric)
		}
	}
}

// TestPromtoolChecks validates the rules and every dashboard expression
// (as recording rules) with `promtool check rules`, when promtool is
// installed (Debian package prometheus).
func TestPromtoolChecks(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	if out, err := exec.Command(promtool, "check", "rules", rulesPath).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules %s: %v\n%s", rulesPath, err, out)
	}
	_, panels := loadDashboard(t)
	var rules []map[string]string
	for _, p := range panels {
		for _, tg := range p.Targets {
			expr := grafanaVar.ReplaceAllString(tg.Expr, "5m")
			rules = append(rules, map[string]string{
				"record": fmt.Sprintf("dashboard:panel%d:%s", p.ID, strings.ToLower(tg.RefID)),
				"expr":   expr,
			})
		}
	}
	sort.Slice(rules, func(i, j int) bool { return rules[i]["record"] < rules[j]["record"] })
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("dashboard expressions fail promtool: %v\n%s", err, out)
	}
}

// TestDocTable keeps doc.go's metric table equal to what the registry
// exports.
func TestDocTable(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.TrimPrefix(line, "//"))
		if len(f) >= 2 && strings.HasPrefix(f[0], "proxypool_") && (f[1] == "gauge" || f[1] == "counter" || f[1] == "histogram") {
			documented[f[0]] = true
		}
	}
	m := metrics.New()
	driveAll(m, time.Now())
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "proxypool_") {
			got[f.GetName()] = true
			if !documented[f.GetName()] {
				t.Errorf("%s is exported but not in doc.go's table", f.GetName())
			}
		}
	}
	for n := range documented {
		if !got[n] {
			t.Errorf("doc.go documents %s, which is not exported", n)
		}
	}
	t.Logf("%d proxypool metrics documented and exported", len(got))
}
