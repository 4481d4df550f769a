package top

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// ClearScreen is ANSI cursor home + clear screen, written before each
// frame of a live view.
const ClearScreen = "\x1b[H\x1b[2J"

// Render writes f for a terminal.
func Render(w io.Writer, f Frame, every time.Duration) {
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
