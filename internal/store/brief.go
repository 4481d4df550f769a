package store

import (
	"context"
	"database/sql/driver"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Brief is an upstream as a list for people shows it (the Clash API's
// /proxies): no options, its latest checks.
type Brief struct {
	ID, Name, Server, Group string
	Type                    upstream.Kind
	Port                    int
	Status                  upstream.Status // State, LatencyMS, ExitIP, Country, Anonymity, Untrusted, LastCheck, LastOK
	Sources                 []string
	History                 []BriefCheck // oldest first
}

// BriefCheck is one recorded check: when, whether it passed, how long.
type BriefCheck struct {
	At      time.Time
	OK      bool
	TotalMS float64
}

// EachBrief calls fn for every upstream in ID order with up to history
// of its latest checks (0: none, and no look at the checks at all),
// without holding them all: b and its slices are reused between calls.
// An error from fn stops it.
func (s *Store) EachBrief(ctx context.Context, history int, fn func(b *Brief) error) error {
	// The checks come as one string per upstream from a correlated
	// subquery (the checks key starts with upstream_id), which keeps the
	// scan a single pass; it still costs about as much again as the rest,
	// hence history 0 for a list of 100k.
	checks := `''`
	var args []any
	if history > 0 {
		checks = `coalesce((SELECT group_concat(h.at || ' ' || h.ok || ' ' || h.total_ms, ',') FROM
			(SELECT at, ok, total_ms FROM checks c WHERE c.upstream_id = u.id ORDER BY c.seq DESC LIMIT ?) h), '')`
		args = append(args, history)
	}
	q := `SELECT u.id, u.type, u.server, u.port, u.name, u.grp, u.state, u.latency_ms, u.exit_ip, u.country,
		u.anonymity, u.untrusted, u.last_check, u.last_ok,
		coalesce((SELECT group_concat(x.source, char(31)) FROM upstream_sources x WHERE x.upstream_id = u.id), ''),
		` + checks + ` FROM upstreams u ORDER BY u.id`
	var b Brief
	err := s.rawQuery(ctx, q, args, func(v []driver.Value) error {
		b.ID, b.Type, b.Server, b.Port = vStr(v[0]), upstream.Kind(vStr(v[1])), vStr(v[2]), int(vInt(v[3]))
		b.Name, b.Group = vStr(v[4]), vStr(v[5])
		b.Status = upstream.Status{State: upstream.State(vStr(v[6])), LatencyMS: vFloat(v[7]), ExitIP: vStr(v[8]),
			Country: vStr(v[9]), Anonymity: upstream.Anonymity(vStr(v[10])), Untrusted: vInt(v[11]) != 0,
			LastCheck: fromMS(vInt(v[12])), LastOK: fromMS(vInt(v[13]))}
		b.Sources = b.Sources[:0]
		if src := vStr(v[14]); src != "" {
			b.Sources = append(b.Sources, strings.Split(src, "\x1f")...)
		}
		var err error
		if b.History, err = parseBriefChecks(b.History[:0], vStr(v[15])); err != nil {
			return fmt.Errorf("upstream %s: %w", b.ID, err)
		}
		return fn(&b)
	})
	if err != nil {
		return fmt.Errorf("listing upstreams in brief: %w", err)
	}
	return nil
}

// parseBriefChecks reads "at ok total_ms" triples into out, oldest first.
func parseBriefChecks(out []BriefCheck, s string) ([]BriefCheck, error) {
	if s == "" {
		return out, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		f := strings.Fields(part)
		if len(f) != 3 {
			return out, fmt.Errorf("check %q: want 3 fields", part)
		}
		at, err1 := strconv.ParseInt(f[0], 10, 64)
		total, err2 := strconv.ParseFloat(f[2], 64)
		if err1 != nil || err2 != nil {
			return out, fmt.Errorf("check %q: not numbers", part)
		}
		out = append(out, BriefCheck{At: fromMS(at), OK: f[1] == "1", TotalMS: total})
	}
	// group_concat keeps no promised order: sort by time
	slices.SortStableFunc(out, func(a, b BriefCheck) int { return a.At.Compare(b.At) })
	return out, nil
}
