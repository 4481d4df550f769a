package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/upstream"
)

// runStatus is "proxypoolctl status [--countries N]".
func runStatus(ctx context.Context, c *cmd) int {
	topN := c.fs.Int("countries", 15, "show the `N` countries with most healthy upstreams (0: all)")
	if _, code, ok := c.parse(""); !ok {
		return code
	}
	st, code := fetch(ctx, c, true, func(b *backend) (control.Status, error) { return b.Status(ctx) })
	if code != exitOK {
		return code
	}
	if c.JSON {
		printJSON(c.stdout, st)
		return exitOK
	}
	printStatus(c.stdout, st, *topN, time.Now())
	return exitOK
}

func printStatus(w io.Writer, st control.Status, topN int, now time.Time) {
	total := 0
	for s, n := range st.States {
		if s.InPool() {
			total += n
		}
	}
	fmt.Fprintf(w, "pool: %d upstreams: %d healthy, %d failing, %d dead, %d unknown (version %d)\n", total,
		st.States[upstream.Healthy], st.States[upstream.Failing], st.States[upstream.Dead], st.States[upstream.Unknown], st.Version)
	if rm, rt := st.States[upstream.Removed], st.States[upstream.Retired]; rm > 0 || rt > 0 {
		fmt.Fprintf(w, "out of the pool: removed: %d (by the operator), retired: %d (no source lists them; list --state removed|retired)\n", rm, rt)
	}
	if st.Exits != nil {
		fmt.Fprintf(w, "exits: %d distinct exit IPs, %d of them healthy\n", st.Exits.Distinct, st.Exits.Healthy)
	}
	printProbe(w, st.Probe, now)
	if gw := st.Gateway; gw != nil {
		fmt.Fprintf(w, "gateway: %d open connections, %d since start, %d failed on every try\n", gw.Active, gw.Total, gw.Errors)
	}
	for _, r := range st.Reloads {
		if r.Generation == 0 {
			fmt.Fprintf(w, "reload: %s (pid %d) none since it started at %s (%s)\n", r.Component, r.PID,
				r.At.Local().Format("2006-01-02 15:04:05"), ago(now, r.At))
			continue
		}
		outcome := "applied"
		if r.Error != "" {
			outcome = "FAILED, running config kept: " + r.Error
		} else if len(r.Restart) > 0 {
			outcome += "; needs a restart: " + strings.Join(r.Restart, ", ")
		}
		fmt.Fprintf(w, "reload: %s (pid %d) #%d at %s (%s): %s\n", r.Component, r.PID, r.Generation,
			r.At.Local().Format("2006-01-02 15:04:05"), ago(now, r.At), outcome)
	}

	if len(st.Floors) > 0 {
		tw := section(w, "GROUP\tHEALTHY\tMIN\tEXITS\tMIN\tFLOOR\tLAST ACTION")
		for _, f := range st.Floors {
			name, state := f.Group, "met"
			if name == "" {
				name = "(pool)"
			}
			if f.Below {
				state = "BELOW"
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", name, f.Healthy, f.MinHealthy, f.Exits, f.MinExits, state, dash(f.LastAction))
		}
		tw.Flush()
	}

	if len(st.Targets) > 0 {
		tw := section(w, "TARGET\tPASSING\tCHECKED\tPASS RATE")
		for _, t := range st.Targets {
			rate := "-"
			if t.Checked > 0 {
				rate = strconv.Itoa(100*t.Passing/t.Checked) + "%"
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", t.Name, t.Passing, t.Checked, rate)
		}
		tw.Flush()
	}

	if len(st.Reputation) > 0 || len(st.Sources) > 0 {
		tw := section(w, "SOURCE\tLISTED\tHEALTHY\tEVER HEALTHY\tHEALTHY TIME\tLAST FETCH")
		fetched := map[string]string{}
		for _, f := range st.SourceState {
			fetched[f.Name] = fetchNote(f, now)
		}
		seen := map[string]bool{}
		for _, r := range st.Reputation {
			seen[r.Source] = true
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", r.Source, r.Listed, r.HealthyNow, r.EverHealthy,
				(time.Duration(r.HealthySeconds) * time.Second).Round(time.Second), dash(fetched[r.Source]))
		}
		for _, kv := range sortedCounts(st.Sources) {
			if !seen[kv.k] {
				fmt.Fprintf(tw, "%s\t%d\t-\t-\t-\t%s\n", kv.k, kv.n, dash(fetched[kv.k]))
			}
		}
		tw.Flush()
	}

	if len(st.Countries) > 0 {
		countTable(w, "COUNTRY\tHEALTHY", st.Countries, topN)
	}
	if len(st.Groups) > 0 {
		countTable(w, "GROUP\tUPSTREAMS", st.Groups, 0)
	}
}

// section starts one table of the status after a blank line; the caller
// flushes it.
func section(w io.Writer, header string) *tabwriter.Writer {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}

// countTable prints m largest first; past topN rows (0: no limit) one row
// sums the rest.
func countTable(w io.Writer, header string, m map[string]int, topN int) {
	tw := section(w, header)
	cs := sortedCounts(m)
	for i, kv := range cs {
		if topN > 0 && i == topN {
			rest := 0
			for _, r := range cs[i:] {
				rest += r.n
			}
			fmt.Fprintf(tw, "(%d more)\t%d\n", len(cs)-i, rest)
			break
		}
		fmt.Fprintf(tw, "%s\t%d\n", kv.k, kv.n)
	}
	tw.Flush()
}

type kv struct {
	k string
	n int
}

// sortedCounts orders a count map by count, then name.
func sortedCounts(m map[string]int) []kv {
	out := make([]kv, 0, len(m))
	for k, n := range m {
		out = append(out, kv{k, n})
	}
	slices.SortFunc(out, func(a, b kv) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		return strings.Compare(a.k, b.k)
	})
	return out
}

// printProbe is status's probe lines: what it does now (a job, a pass,
// paused since when and why), then its last pass and last full pass.
func printProbe(w io.Writer, p control.ProbeStatus, now time.Time) {
	switch {
	case p.Paused:
		fmt.Fprintf(w, "probe: PAUSED since %s (%s): %s\n", p.Since.Local().Format("2006-01-02 15:04:05"), ago(now, p.Since), p.Reason)
	case p.Job != "":
		fmt.Fprintf(w, "probe: %s running, %d of %d checked\n", p.Job, p.Done, p.Total)
	case p.Done < p.Total:
		fmt.Fprintf(w, "probe: pass running, %d of %d checked\n", p.Done, p.Total)
	case p.Last == nil && p.LastPass.IsZero():
		fmt.Fprintln(w, "probe: no pass yet")
		return
	default:
		fmt.Fprintln(w, "probe: running")
	}
	last := p.Last
	if last == nil { // a daemon that keeps no pass in the store
		last = &control.Pass{At: p.LastPass, Size: p.Total, Seconds: -1}
	}
	for _, x := range []struct {
		name string
		p    *control.Pass
	}{{"last pass", last}, {"last full pass", p.LastFull}} {
		switch {
		case x.p == nil:
		case x.p.Seconds < 0:
			fmt.Fprintf(w, "  %s: %s, %d upstreams\n", x.name, ago(now, x.p.At), x.p.Size)
		default:
			fmt.Fprintf(w, "  %s: %s, %d upstreams checked in %s, %d healthy\n", x.name, ago(now, x.p.At), x.p.Size,
				(time.Duration(x.p.Seconds * float64(time.Second))).Round(time.Millisecond), x.p.Healthy)
		}
	}
}

// fetchNote is a source's last fetch in a few words: when, and its error.
func fetchNote(f control.SourceStatus, now time.Time) string {
	switch {
	case f.LastFetch.IsZero():
		return ""
	case f.Error != "":
		return ago(now, f.LastFetch) + ": " + f.Error
	}
	return ago(now, f.LastFetch) + ": ok"
}
