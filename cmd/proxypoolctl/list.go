package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/upstream"
)

// runList is "proxypoolctl list [--state S] [--country CC] [--group G]
// [--source S] [--anonymity A] [--min-score N] [--limit N] [--offset N]": a table, or with --json one JSON
// record a line. It pages through the daemon (or --db) so that a pool of
// any size streams without one huge reply.
func runList(ctx context.Context, c *cmd) int {
	var q control.ListQuery
	state := c.fs.String("state", "", "only upstreams in this `STATE` (healthy, failing, dead, unknown; removed, retired: out of the pool, listed only when asked for)")
	c.fs.StringVar(&q.Country, "country", "", "only upstreams whose exit is in country `CC`")
	c.fs.StringVar(&q.Group, "group", "", "only upstreams of the explicit group `G` (tor instances)")
	c.fs.StringVar(&q.Source, "source", "", "only upstreams listed by source `S` (manual: added by hand)")
	anon := c.fs.String("anonymity", "", "only upstreams whose last check found `A` (elite, anonymous, transparent)")
	c.fs.Float64Var(&q.MinScore, "min-score", 0, "only upstreams scoring at least `N` (0–1000)")
	asn, class := qualityFlags(c)
	c.fs.StringVar(&q.Target, "target", "", "only upstreams passing the target check `NAME` (probe.targets) now")
	c.fs.Float64Var(&q.MinThroughput, "min-throughput", 0, "only upstreams whose speed check measured at least `N` bytes/s")
	limit := c.fs.Int("limit", 0, "print at most `N` records (0: all)")
	offset := c.fs.Int("offset", 0, "skip the first `N` records")
	if _, code, ok := c.parse(""); !ok {
		return code
	}
	if !parseQuality(c, "list", &q, *asn, *class) {
		return exitUsage
	}
	q.Anonymity = upstream.Anonymity(strings.ToLower(*anon))
	switch q.Anonymity {
	case "", upstream.AnonElite, upstream.AnonAnonymous, upstream.AnonTransparent:
	default:
		fmt.Fprintf(c.stderr, "proxypoolctl list: unknown --anonymity %q (want elite, anonymous or transparent)\n", *anon)
		return exitUsage
	}
	q.State = upstream.State(strings.ToLower(*state))
	switch q.State {
	case "", upstream.Healthy, upstream.Failing, upstream.Dead, upstream.Unknown, upstream.Removed, upstream.Retired:
	default:
		fmt.Fprintf(c.stderr, "proxypoolctl list: unknown --state %q (want healthy, failing, dead, unknown, removed or retired)\n", *state)
		return exitUsage
	}
	if *limit < 0 || *offset < 0 {
		fmt.Fprintln(c.stderr, "proxypoolctl list: --limit and --offset must not be negative")
		return exitUsage
	}
	b, err := c.connect(ctx, true)
	if err != nil {
		return c.fail(err)
	}
	defer b.close()

	q.Offset, q.Limit = *offset, control.MaxListLimit
	if *limit > 0 {
		q.Limit = min(*limit, control.MaxListLimit)
	}
	var tw *tabwriter.Writer
	enc := json.NewEncoder(c.stdout)
	enc.SetEscapeHTML(false)
	if !c.JSON {
		tw = tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTYPE\tSERVER:PORT\tSTATE\tCAPS\tANON\tCOUNTRY\tASN\tCLASS\tIPV6\tLATENCY\tSPEED\tSCORE\tEXIT IP\tLAST CHECK\tSOURCES\tTARGETS\tLAST ERROR")
	}
	printed, total := 0, 0
	now := time.Now()
	err = control.ListAll(ctx, b, q, func(p control.ListPage) error {
		total = p.Total
		for _, r := range p.Records {
			if *limit > 0 && printed >= *limit {
				return errEnough
			}
			printed++
			if c.JSON {
				if err := enc.Encode(r); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Type, r.Addr(), r.State,
				dash(r.Caps.String()), dash(string(r.Anonymity)), dash(r.Country), asnColumn(r.Quality), dash(string(r.Class)), ipv6Column(r.Quality),
				latency(r), speed(r.Throughput), strconv.FormatFloat(r.Score, 'f', 0, 64), dash(r.ExitIP),
				ago(now, r.LastCheck), dash(strings.Join(r.Sources, ",")), dash(passed(r.Targets)), dash(oneLine(lastWord(r, now))))
		}
		if tw != nil {
			return tw.Flush() // one page at a time: columns are aligned per page
		}
		return nil
	})
	if tw != nil {
		tw.Flush()
	}
	if err != nil && err != errEnough {
		return c.fail(err)
	}
	if !c.JSON {
		fmt.Fprintf(c.stderr, "%d of %d upstreams\n", printed, total)
	}
	return exitOK
}

var errEnough = fmt.Errorf("enough records")

// lastWord is the LAST ERROR column: why the last check failed, or, for
// an upstream out of the pool, who took it out and when.
func lastWord(r upstream.Record, now time.Time) string {
	switch r.State {
	case upstream.Removed:
		return "removed by " + cmp.Or(r.RemovedBy, "the operator") + ", " + ago(now, r.RemovedAt) + " (proxypoolctl restore " + r.ID + " undoes it)"
	case upstream.Retired:
		return "retired " + ago(now, r.RemovedAt) + ": no source lists it"
	}
	return upstream.Failure(r.LastCause, r.LastError)
}

// oneLine keeps a row a row: an error text may hold anything an upstream
// sent (newlines, tabs, escapes).
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// speed is a throughput for the SPEED column: "1.2MB/s", "-" unknown.
func speed(bps float64) string {
	switch {
	case bps <= 0:
		return "-"
	case bps >= 1e6:
		return strconv.FormatFloat(bps/1e6, 'f', 1, 64) + "MB/s"
	case bps >= 1e3:
		return strconv.FormatFloat(bps/1e3, 'f', 0, 64) + "kB/s"
	}
	return strconv.FormatFloat(bps, 'f', 0, 64) + "B/s"
}

// passed is the TARGETS column: the target checks an upstream passes.
func passed(ts []upstream.TargetPass) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.Name
	}
	return strings.Join(names, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func latency(r upstream.Record) string {
	if r.LatencyMS <= 0 {
		return "-"
	}
	return strconv.FormatFloat(r.LatencyMS, 'f', 0, 64) + "ms"
}

// ago is a short "how long ago": 5s, 3m, 2h, 4d; "-" for never.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return strconv.Itoa(max(int(d.Seconds()), 0)) + "s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h ago"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d ago"
}

// qualityFlags adds --asn and --class, the exit-quality filters list and
// export share.
func qualityFlags(c *cmd) (asn, class *string) {
	asn = c.fs.String("asn", "", "only upstreams whose exit is in AS `N` (13335 or AS13335)")
	class = c.fs.String("class", "", "only upstreams whose exit is of class `C` (datacenter, residential, mobile)")
	return asn, class
}

// parseQuality sets q's exit-quality filters; false (after saying why)
// for a value that is not one.
func parseQuality(c *cmd, verb string, q *control.ListQuery, asn, class string) bool {
	var err error
	if asn != "" {
		if q.ASN, err = upstream.ParseASN(asn); err != nil {
			fmt.Fprintf(c.stderr, "proxypoolctl %s: --asn: %v\n", verb, err)
			return false
		}
	}
	if class != "" {
		if q.Class, err = upstream.ParseClass(class); err != nil {
			fmt.Fprintf(c.stderr, "proxypoolctl %s: --class: %v\n", verb, err)
			return false
		}
	}
	return true
}

// asnColumn is the ASN column: AS13335, or "-" when unknown.
func asnColumn(q upstream.Quality) string {
	if q.ASN == 0 {
		return "-"
	}
	return "AS" + strconv.FormatUint(uint64(q.ASN), 10)
}

// ipv6Column is "yes" for an exit that reached the IPv6 judge.
func ipv6Column(q upstream.Quality) string {
	if q.IPv6 {
		return "yes"
	}
	return "-"
}
