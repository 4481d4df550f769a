package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/proxypool/proxypool/internal/config"
)

func init() {
	verbs["top"] = verb{run: runTop, summary: "live view of pool, gateway and probe, from the metrics endpoint"}
}

// ANSI: cursor home, clear screen.
const clearScreen = "\x1b[H\x1b[2J"

// runTop is "proxypoolctl top [--metrics URL] [--interval D] [--once]
// [--frames N]": scrape the metrics endpoint every interval, compute rates
// between scrapes, redraw. --json prints one JSON frame per line instead.
// Exit 1 when --once (or the first of --frames) cannot scrape.
func runTop(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) int {
	fs := g.verbFlags("top", "", stderr)
	url := fs.String("metrics", "", "metrics endpoint `URL` (default: http://<metrics.listen from the config>/metrics)")
	interval := fs.Duration("interval", 2*time.Second, "refresh every `D`")
	once := fs.Bool("once", false, "print one frame and exit (rates need two scrapes: shown as -)")
	frames := fs.Int("frames", 0, "exit after `N` frames (0: until interrupted)")
	pos, code, ok := parseVerbFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "proxypoolctl top: unexpected argument %q\n", pos[0])
		fs.Usage()
		return exitUsage
	}
	if *interval < 100*time.Millisecond {
		fmt.Fprintf(stderr, "proxypoolctl top: --interval %v is too short (at least 100ms)\n", *interval)
		return exitUsage
	}
	if *once {
		*frames = 1
	}
	if *url == "" {
		u, err := metricsURL(g.Config)
		if err != nil {
			fmt.Fprintf(stderr, "proxypoolctl top: %v\n", err)
			return exitFail
		}
		*url = u
	}

	client := &http.Client{Timeout: min(*interval, 5*time.Second) + time.Second}
	var prev *sample
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		cur, err := scrapeMetrics(ctx, client, *url)
		if err != nil && (n == 1 && *frames == 1 || ctx.Err() != nil) {
			if ctx.Err() != nil {
				return exitOK
			}
			fmt.Fprintf(stderr, "proxypoolctl top: %v\n", err)
			return exitFail
		}
		f := buildFrame(*url, prev, cur, err)
		if g.JSON {
			b, _ := json.Marshal(f)
			fmt.Fprintf(stdout, "%s\n", b)
		} else {
			var sb strings.Builder
			if *frames != 1 {
				sb.WriteString(clearScreen)
			}
			renderFrame(&sb, f, *interval)
			io.WriteString(stdout, sb.String())
		}
		if cur != nil {
			prev = cur
		}
		if *frames > 0 && n >= *frames {
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-tick.C:
		}
	}
}

// metricsURL is the scrape URL from the config's metrics.listen. A missing
// config file means the defaults; a broken one is an error.
func metricsURL(path string) (string, error) {
	cfg, err := config.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		cfg, err = config.Default(), nil
	}
	if err != nil {
		return "", err
	}
	if !cfg.Metrics.Enabled {
		return "", fmt.Errorf("metrics are disabled in %s (metrics.enabled: false); enable them or pass --metrics URL", path)
	}
	host, port, err := net.SplitHostPort(cfg.Metrics.Listen)
	if err != nil {
		return "", fmt.Errorf("%s: metrics.listen %q: %v", path, cfg.Metrics.Listen, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + "/metrics", nil
}

// sample is one scrape.
type sample struct {
	at   time.Time
	fams map[string]*dto.MetricFamily
}

func scrapeMetrics(ctx context.Context, c *http.Client, url string) (*sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w (is proxypoold running with metrics enabled?)", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	s := &sample{at: time.Now(), fams: map[string]*dto.MetricFamily{}}
	dec := expfmt.NewDecoder(io.LimitReader(resp.Body, 64<<20), expfmt.ResponseFormat(resp.Header))
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("scraping %s: parsing the metrics: %w", url, err)
		}
		s.fams[mf.GetName()] = &mf
	}
	if len(s.fams) == 0 {
		return nil, fmt.Errorf("scraping %s: no metrics in the response", url)
	}
	return s, nil
}

// series is one sample of a family: its labels and value (for histograms
// the sample count).
type series struct {
	labels map[string]string
	value  float64
	hist   *dto.Histogram
}

func (s *sample) series(name string) []series {
	if s == nil {
		return nil
	}
	var out []series
	for _, m := range s.fams[name].GetMetric() {
		ls := map[string]string{}
		for _, l := range m.GetLabel() {
			ls[l.GetName()] = l.GetValue()
		}
		v := series{labels: ls}
		switch {
		case m.Counter != nil:
			v.value = m.GetCounter().GetValue()
		case m.Gauge != nil:
			v.value = m.GetGauge().GetValue()
		case m.Untyped != nil:
			v.value = m.GetUntyped().GetValue()
		case m.Histogram != nil:
			v.value = float64(m.GetHistogram().GetSampleCount())
			v.hist = m.GetHistogram()
		}
		out = append(out, v)
	}
	return out
}

// sum adds the series of name whose labels match want (label=value pairs;
// a value starting with "!" excludes, "prefix*" matches a prefix).
func (s *sample) sum(name string, want ...string) (float64, bool) {
	total, found := 0.0, false
	for _, v := range s.series(name) {
		if matches(v.labels, want) {
			total += v.value
			found = true
		}
	}
	return total, found
}

func matches(ls map[string]string, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		if !matchOne(ls[want[i]], want[i+1]) {
			return false
		}
	}
	return true
}

func matchOne(v, pattern string) bool {
	for _, alt := range strings.Split(pattern, "|") {
		neg := strings.HasPrefix(alt, "!")
		alt = strings.TrimPrefix(alt, "!")
		hit := v == alt || strings.HasSuffix(alt, "*") && strings.HasPrefix(v, strings.TrimSuffix(alt, "*"))
		if neg {
			if hit {
				return false
			}
			continue
		}
		if hit {
			return true
		}
	}
	return strings.HasPrefix(pattern, "!")
}

// byLabel sums name's series per value of label.
func (s *sample) byLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, v := range s.series(name) {
		out[v.labels[label]] += v.value
	}
	return out
}

// notErrors are the outcomes that are not the gateway's failure (see
// internal/metrics doc).
const notErrors = "!ok|!client_*|!auth_rejected"

// frame is what one refresh shows; rates are nil until two scrapes exist.
type frame struct {
	At       time.Time `json:"at"`
	URL      string    `json:"url"`
	Error    string    `json:"error,omitempty"`
	Interval float64   `json:"interval_seconds,omitempty"`

	Pool    poolView     `json:"pool"`
	Groups  []groupView  `json:"groups"`
	Gateway gatewayView  `json:"gateway"`
	Probe   probeView    `json:"probe"`
	Sources []sourceView `json:"sources"`
	Process processView  `json:"process"`
}

type poolView struct {
	Healthy      float64            `json:"healthy"`
	Total        float64            `json:"total"`
	ByState      map[string]float64 `json:"by_state"`
	Exits        float64            `json:"exits"`
	HealthyExits float64            `json:"healthy_exits"`
	SnapshotAge  *float64           `json:"snapshot_age_seconds"`
}

type groupView struct {
	Name            string   `json:"name"`
	Healthy         *float64 `json:"healthy"`
	Exits           *float64 `json:"exits"`
	MinHealthy      *float64 `json:"min_healthy"`
	MinExits        *float64 `json:"min_exits"`
	BelowFloor      bool     `json:"below_floor"`
	TorActive       *float64 `json:"tor_active"`
	TorBootstrapped *float64 `json:"tor_bootstrapped"`
	TorExits        *float64 `json:"tor_exits"`
}

type gatewayView struct {
	Connections     float64            `json:"connections"` // finished, since start
	Errors          float64            `json:"errors"`
	Active          float64            `json:"active"`
	Tunnels         float64            `json:"tunnels"`
	Outcomes        map[string]float64 `json:"outcomes"`
	RatePerSec      *float64           `json:"rate_per_second"`
	ErrorsPerSec    *float64           `json:"errors_per_second"`
	RetriesPerSec   *float64           `json:"retries_per_second"`
	UpBytesPerSec   *float64           `json:"up_bytes_per_second"`
	DownBytesPerSec *float64           `json:"down_bytes_per_second"`
	DialP50         *float64           `json:"dial_p50_seconds"`
	DialP90         *float64           `json:"dial_p90_seconds"`
	DialP99         *float64           `json:"dial_p99_seconds"`
	SnapshotVersion *float64           `json:"snapshot_version"`
}

type probeView struct {
	PassDone     float64  `json:"pass_done"`
	PassSize     float64  `json:"pass_size"`
	PassHealthy  float64  `json:"pass_healthy"`
	Backlog      float64  `json:"backlog"`
	Checks       float64  `json:"checks"`
	ChecksOK     float64  `json:"checks_ok"`
	ChecksPerSec *float64 `json:"checks_per_second"`
}

type sourceView struct {
	Name       string   `json:"name"`
	Failing    bool     `json:"failing"`
	LastOKAge  *float64 `json:"last_ok_age_seconds"`
	LastTryAge *float64 `json:"last_attempt_age_seconds"`
}

type processView struct {
	CPU        *float64 `json:"cpu_ratio"` // cores busy
	RSS        float64  `json:"rss_bytes"`
	Goroutines float64  `json:"goroutines"`
}

func ptr(v float64) *float64 { return &v }

func opt(v float64, ok bool) *float64 {
	if !ok {
		return nil
	}
	return &v
}

// buildFrame turns the current scrape (and the previous, for rates) into a
// frame. cur may be nil when this scrape failed: the frame says why.
func buildFrame(url string, prev, cur *sample, err error) frame {
	f := frame{At: time.Now(), URL: url, Groups: []groupView{}, Sources: []sourceView{}}
	if err != nil {
		f.Error = err.Error()
	}
	if cur == nil {
		return f
	}
	f.At = cur.at
	var dt float64
	if prev != nil {
		dt = cur.at.Sub(prev.at).Seconds()
		f.Interval = dt
	}
	// rate of a counter (sum of matching series) between the two scrapes.
	rate := func(name string, want ...string) *float64 {
		if prev == nil || dt <= 0 {
			return nil
		}
		a, _ := prev.sum(name, want...)
		b, ok := cur.sum(name, want...)
		if !ok {
			return nil
		}
		d := b - a
		if d < 0 { // restarted
			d = b
		}
		return ptr(d / dt)
	}
	now := cur.at

	// Pool.
	f.Pool.ByState = cur.byLabel("proxypool_pool_upstreams", "state")
	for _, v := range f.Pool.ByState {
		f.Pool.Total += v
	}
	f.Pool.Healthy, _ = cur.sum("proxypool_pool_healthy_upstreams")
	f.Pool.Exits, _ = cur.sum("proxypool_pool_exits")
	f.Pool.HealthyExits, _ = cur.sum("proxypool_pool_healthy_exits")
	if ts, ok := cur.sum("proxypool_pool_snapshot_timestamp_seconds"); ok && ts > 0 {
		f.Pool.SnapshotAge = ptr(math.Max(0, float64(now.UnixNano())/1e9-ts))
	}

	// Groups: the union of every group-labelled family.
	groups := map[string]*groupView{}
	gv := func(name string) *groupView {
		if groups[name] == nil {
			groups[name] = &groupView{Name: name}
		}
		return groups[name]
	}
	for _, fam := range []struct {
		name string
		set  func(*groupView, float64)
	}{
		{"proxypool_group_healthy_upstreams", func(g *groupView, v float64) { g.Healthy = ptr(v) }},
		{"proxypool_group_healthy_exits", func(g *groupView, v float64) { g.Exits = ptr(v) }},
		{"proxypool_slo_min_healthy", func(g *groupView, v float64) { g.MinHealthy = ptr(v) }},
		{"proxypool_slo_min_exits", func(g *groupView, v float64) { g.MinExits = ptr(v) }},
		{"proxypool_slo_below_floor", func(g *groupView, v float64) { g.BelowFloor = v > 0 }},
		{"proxypool_tor_instances_active", func(g *groupView, v float64) { g.TorActive = ptr(v) }},
		{"proxypool_tor_instances_bootstrapped", func(g *groupView, v float64) { g.TorBootstrapped = ptr(v) }},
		{"proxypool_tor_exits", func(g *groupView, v float64) { g.TorExits = ptr(v) }},
	} {
		for name, v := range cur.byLabel(fam.name, "group") {
			fam.set(gv(name), v)
		}
	}
	for _, g := range groups {
		f.Groups = append(f.Groups, *g)
	}
	sort.Slice(f.Groups, func(i, j int) bool {
		a, b := f.Groups[i].Name, f.Groups[j].Name
		if (a == "_pool") != (b == "_pool") {
			return a == "_pool"
		}
		return a < b
	})

	// Gateway.
	gw := &f.Gateway
	gw.Outcomes = cur.byLabel("proxypool_gateway_connections_total", "outcome")
	gw.Connections, _ = cur.sum("proxypool_gateway_connections_total")
	gw.Errors, _ = cur.sum("proxypool_gateway_connections_total", "outcome", notErrors)
	gw.Active, _ = cur.sum("proxypool_gateway_connections_active")
	gw.Tunnels, _ = cur.sum("proxypool_gateway_tunnels_active")
	gw.RatePerSec = rate("proxypool_gateway_connections_total")
	gw.ErrorsPerSec = rate("proxypool_gateway_connections_total", "outcome", notErrors)
	gw.RetriesPerSec = rate("proxypool_gateway_retries_total")
	gw.UpBytesPerSec = rate("proxypool_gateway_bytes_total", "direction", "up")
	gw.DownBytesPerSec = rate("proxypool_gateway_bytes_total", "direction", "down")
	gw.SnapshotVersion = opt(cur.sum("proxypool_gateway_snapshot_version"))
	if h := histDelta(prev, cur, "proxypool_gateway_dial_duration_seconds", "cause", "ok"); h != nil {
		gw.DialP50, gw.DialP90, gw.DialP99 = h.quantile(0.5), h.quantile(0.9), h.quantile(0.99)
	}

	// Probe.
	p := &f.Probe
	p.PassDone, _ = cur.sum("proxypool_probe_pass_done")
	p.PassSize, _ = cur.sum("proxypool_probe_pass_size")
	p.PassHealthy, _ = cur.sum("proxypool_probe_pass_healthy")
	p.Backlog, _ = cur.sum("proxypool_probe_backlog")
	p.Checks, _ = cur.sum("proxypool_probe_checks_total")
	p.ChecksOK, _ = cur.sum("proxypool_probe_checks_total", "outcome", "ok")
	p.ChecksPerSec = rate("proxypool_probe_checks_total")

	// Sources.
	nowS := float64(now.UnixNano()) / 1e9
	lastOK := cur.byLabel("proxypool_source_last_success_timestamp_seconds", "source")
	lastTry := cur.byLabel("proxypool_source_last_attempt_timestamp_seconds", "source")
	for name, failing := range cur.byLabel("proxypool_source_failing", "source") {
		s := sourceView{Name: name, Failing: failing > 0}
		if ts, ok := lastOK[name]; ok {
			s.LastOKAge = ptr(math.Max(0, nowS-ts))
		}
		if ts, ok := lastTry[name]; ok {
			s.LastTryAge = ptr(math.Max(0, nowS-ts))
		}
		f.Sources = append(f.Sources, s)
	}
	sort.Slice(f.Sources, func(i, j int) bool { return f.Sources[i].Name < f.Sources[j].Name })

	// Process.
	f.Process.CPU = rate("process_cpu_seconds_total")
	f.Process.RSS, _ = cur.sum("process_resident_memory_bytes")
	f.Process.Goroutines, _ = cur.sum("go_goroutines")
	return f
}

// hist is a cumulative histogram: upper bounds ascending, counts.
type hist struct {
	bounds []float64
	counts []float64
	total  float64
}

// histDelta is the matching series' histogram between the scrapes (or the
// whole of cur when there is no earlier scrape or nothing new).
func histDelta(prev, cur *sample, name string, want ...string) *hist {
	collect := func(s *sample) *hist {
		var h *hist
		for _, v := range s.series(name) {
			if v.hist == nil || !matches(v.labels, want) {
				continue
			}
			if h == nil {
				h = &hist{}
				for _, b := range v.hist.GetBucket() {
					h.bounds = append(h.bounds, b.GetUpperBound())
					h.counts = append(h.counts, 0)
				}
			}
			for i, b := range v.hist.GetBucket() {
				if i < len(h.counts) {
					h.counts[i] += float64(b.GetCumulativeCount())
				}
			}
			h.total += float64(v.hist.GetSampleCount())
		}
		return h
	}
	c := collect(cur)
	if c == nil || c.total == 0 {
		return nil
	}
	if prev == nil {
		return c
	}
	p := collect(prev)
	if p == nil || len(p.counts) != len(c.counts) || c.total-p.total <= 0 {
		return c
	}
	d := &hist{bounds: c.bounds, counts: make([]float64, len(c.counts)), total: c.total - p.total}
	for i := range c.counts {
		d.counts[i] = c.counts[i] - p.counts[i]
	}
	return d
}

// quantile interpolates linearly inside the bucket, like PromQL's
// histogram_quantile; past the last finite bound it answers that bound.
func (h *hist) quantile(q float64) *float64 {
	if h == nil || h.total <= 0 || len(h.bounds) == 0 {
		return nil
	}
	rank := q * h.total
	lower, below := 0.0, 0.0
	for i, ub := range h.bounds {
		if h.counts[i] >= rank {
			if math.IsInf(ub, 1) {
				return ptr(lower)
			}
			in := h.counts[i] - below
			if in <= 0 {
				return ptr(ub)
			}
			return ptr(lower + (ub-lower)*(rank-below)/in)
		}
		lower, below = ub, h.counts[i]
	}
	return ptr(h.bounds[len(h.bounds)-1])
}

// renderFrame writes f for a terminal.
func renderFrame(w io.Writer, f frame, every time.Duration) {
	fmt.Fprintf(w, "proxypool top  %s  %s  (every %v, Ctrl-C quits)\n", f.URL, f.At.Format("2006-01-02 15:04:05"), every)
	if f.Error != "" {
		fmt.Fprintf(w, "\n! %s\n", f.Error)
	}
	if f.Pool.ByState == nil && f.Error != "" {
		return
	}
	fmt.Fprintln(w)

	// Pool.
	states := make([]string, 0, len(f.Pool.ByState))
	for s := range f.Pool.ByState {
		states = append(states, s)
	}
	sort.Slice(states, func(i, j int) bool { return stateOrder(states[i]) < stateOrder(states[j]) })
	var byState []string
	for _, s := range states {
		byState = append(byState, fmt.Sprintf("%s %s", s, num(f.Pool.ByState[s])))
	}
	snap := "no snapshot yet"
	if f.Pool.SnapshotAge != nil {
		snap = "counted " + age(*f.Pool.SnapshotAge) + " ago"
	}
	fmt.Fprintf(w, "POOL     %s healthy of %s  ·  exits %s healthy, %s seen  ·  %s  (%s)\n",
		num(f.Pool.Healthy), num(f.Pool.Total), num(f.Pool.HealthyExits), num(f.Pool.Exits),
		strings.Join(byState, ", "), snap)

	if len(f.Groups) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tHEALTHY\tEXITS\tFLOOR H/E\tSTATE\tTOR ACT/BOOT\tTOR EXITS\t")
		for _, g := range f.Groups {
			floor := "-"
			if g.MinHealthy != nil && *g.MinHealthy > 0 || g.MinExits != nil && *g.MinExits > 0 {
				floor = optNum(g.MinHealthy) + "/" + optNum(g.MinExits)
			}
			state := "ok"
			switch {
			case g.Healthy != nil && *g.Healthy == 0:
				state = "EMPTY"
			case g.BelowFloor:
				state = "BELOW FLOOR"
			}
			tor := "-"
			if g.TorActive != nil || g.TorBootstrapped != nil {
				tor = optNum(g.TorActive) + "/" + optNum(g.TorBootstrapped)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", g.Name, optNum(g.Healthy), optNum(g.Exits), floor, state, tor, optNum(g.TorExits))
		}
		tw.Flush()
	}

	// Gateway.
	gw := f.Gateway
	fmt.Fprintln(w)
	errPct := "-"
	if gw.RatePerSec != nil && gw.ErrorsPerSec != nil && *gw.RatePerSec > 0 {
		errPct = fmt.Sprintf("%.1f%%", 100**gw.ErrorsPerSec / *gw.RatePerSec)
	}
	fmt.Fprintf(w, "GATEWAY  %s req/s  ·  errors %s/s (%s)  ·  retries %s/s  ·  open %s conns, %s tunnels  ·  up %s/s  down %s/s\n",
		rateStr(gw.RatePerSec), rateStr(gw.ErrorsPerSec), errPct, rateStr(gw.RetriesPerSec),
		num(gw.Active), num(gw.Tunnels), bytesStr(gw.UpBytesPerSec), bytesStr(gw.DownBytesPerSec))
	fmt.Fprintf(w, "         dial p50 %s  p90 %s  p99 %s  ·  snapshot v%s  ·  since start: %s conns, %s errors",
		dur(gw.DialP50), dur(gw.DialP90), dur(gw.DialP99), optNum(gw.SnapshotVersion), num(gw.Connections), num(gw.Errors))
	if len(gw.Outcomes) > 0 {
		outs := make([]string, 0, len(gw.Outcomes))
		for o := range gw.Outcomes {
			outs = append(outs, o)
		}
		sort.Slice(outs, func(i, j int) bool {
			return gw.Outcomes[outs[i]] > gw.Outcomes[outs[j]] || gw.Outcomes[outs[i]] == gw.Outcomes[outs[j]] && outs[i] < outs[j]
		})
		var parts []string
		for _, o := range outs {
			parts = append(parts, o+" "+num(gw.Outcomes[o]))
		}
		fmt.Fprintf(w, " (%s)", strings.Join(parts, ", "))
	}
	fmt.Fprintln(w)

	// Probe.
	p := f.Probe
	pct := "-"
	if p.PassSize > 0 {
		pct = fmt.Sprintf("%.0f%%", 100*p.PassDone/p.PassSize)
	}
	okPct := "-"
	if p.Checks > 0 {
		okPct = fmt.Sprintf("%.0f%%", 100*p.ChecksOK/p.Checks)
	}
	fmt.Fprintf(w, "PROBE    pass %s/%s (%s) %s  ·  healthy %s  ·  backlog %s  ·  %s checks/s  ·  %s ok of %s checks\n",
		num(p.PassDone), num(p.PassSize), pct, bar(p.PassDone, p.PassSize, 20), num(p.PassHealthy), num(p.Backlog),
		rateStr(p.ChecksPerSec), okPct, num(p.Checks))

	// Sources.
	if len(f.Sources) > 0 {
		var parts []string
		for _, s := range f.Sources {
			last := "never ok"
			if s.LastOKAge != nil {
				last = "ok " + age(*s.LastOKAge) + " ago"
			}
			if s.Failing {
				parts = append(parts, s.Name+" FAILING ("+last+")")
			} else {
				parts = append(parts, s.Name+" "+last)
			}
		}
		fmt.Fprintf(w, "SOURCES  %s\n", strings.Join(parts, "  ·  "))
	}

	cpu := "-"
	if f.Process.CPU != nil {
		cpu = fmt.Sprintf("%.1f%%", 100**f.Process.CPU)
	}
	fmt.Fprintf(w, "PROCESS  cpu %s  ·  rss %s  ·  goroutines %s\n", cpu, bytesStr(ptr(f.Process.RSS)), num(f.Process.Goroutines))
}

func stateOrder(s string) int {
	switch s {
	case "healthy":
		return 0
	case "unknown":
		return 1
	case "failing":
		return 2
	case "dead":
		return 3
	}
	return 4
}

func num(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.2f", v)
}

func optNum(v *float64) string {
	if v == nil {
		return "-"
	}
	return num(*v)
}

func rateStr(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *v)
}

func bytesStr(v *float64) string {
	if v == nil {
		return "-"
	}
	b := *v
	for _, u := range []string{"B", "KiB", "MiB", "GiB"} {
		if b < 1024 || u == "GiB" {
			if u == "B" {
				return fmt.Sprintf("%.0f %s", b, u)
			}
			return fmt.Sprintf("%.1f %s", b, u)
		}
		b /= 1024
	}
	return ""
}

func dur(v *float64) string {
	if v == nil {
		return "-"
	}
	return time.Duration(*v * float64(time.Second)).Round(time.Millisecond).String()
}

func age(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Hour).String()
}

func bar(done, total float64, width int) string {
	if total <= 0 {
		return ""
	}
	n := int(math.Round(float64(width) * math.Min(1, done/total)))
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}
