package store

import (
	"cmp"
	"context"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/proxypool/proxypool/internal/upstream"
)

// healthyCols select a servable upstream in few columns, so that a row
// costs the driver few allocations: the text fields joined by \x1f (one
// string, which the record's fields then slice), the integers, the
// options text, latency and score. State and Untrusted are implied by
// servable.
const healthyCols = `u.id || char(31) || u.type || char(31) || u.server || char(31) || u.name
	|| char(31) || u.grp || char(31) || u.exit_ip || char(31) || u.country || char(31) || u.anonymity
	|| char(31) || u.last_error,
	u.port, u.failures, u.checks, u.oks, u.last_check, u.last_ok, u.next_check, u.first_seen, u.last_seen,
	u.options, u.latency_ms, u.score`

const healthyTexts = 9 // \x1f-separated fields of the first column

// Healthy returns every servable upstream (upstream.Status.Servable), best
// score first, ties by id; each record's Sources are sorted. It is the
// gateway's snapshot. Options maps are shared with the previous call's
// records (decoded once per upstream): treat them as read-only, as
// upstream.Upstream asks.
func (s *Store) Healthy(ctx context.Context) ([]upstream.Record, error) {
	// Two flat scans (records, then the source links) are cheaper than
	// 100k correlated subqueries.
	s.optsMu.Lock()
	old := s.optsCache
	s.optsMu.Unlock()
	// The index on state finds the healthy rows, but reading each through
	// it costs a random table lookup: when they are most of the table, a
	// plain scan is cheaper.
	var n, total int
	if err := s.rdb.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM upstreams WHERE state = 'healthy'),
		(SELECT count(*) FROM upstreams)`).Scan(&n, &total); err != nil {
		return nil, fmt.Errorf("counting healthy upstreams: %w", err)
	}
	from := "upstreams u"
	if 3*n >= total {
		from += " NOT INDEXED"
	}
	cache := make(map[string]cachedOptions, n)
	decode := func(id, raw string) (map[string]any, error) {
		if c, ok := old[id]; ok && c.raw == raw {
			cache[id] = c
			return c.m, nil
		}
		m, err := decodeOptions(id, raw)
		if err == nil {
			cache[id] = cachedOptions{raw: raw, m: m}
		}
		return m, err
	}
	recs := make([]upstream.Record, 0, n)
	var odd []string // rows the packed form cannot carry (a \x1f in a name, a non-integer count)
	err := s.rawQuery(ctx, "SELECT "+healthyCols+" FROM "+from+" WHERE "+servable, nil, func(v []driver.Value) error {
		var r upstream.Record
		if !unpackHealthy(&r, vStr(v[0]), v[1:10]) {
			if id, _, _ := strings.Cut(vStr(v[0]), "\x1f"); id != "" {
				odd = append(odd, id)
			}
			return nil
		}
		r.LatencyMS, r.Score = vFloat(v[11]), vFloat(v[12])
		var err error
		if r.Options, err = decode(r.ID, vStr(v[10])); err != nil {
			return err
		}
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading healthy upstreams: %w", err)
	}
	if len(odd) > 0 {
		ids, _ := json.Marshal(odd)
		recs, err = s.appendRecords(ctx, recs, decode, "SELECT "+recordColsNoSources+", '' FROM upstreams u WHERE "+
			servable+" AND u.id IN (SELECT value FROM json_each(?))", string(ids))
		if err != nil {
			return nil, fmt.Errorf("loading healthy upstreams: %w", err)
		}
	}
	s.optsMu.Lock()
	s.optsCache = cache
	s.optsMu.Unlock()

	byID := make(map[string]int32, len(recs))
	for i := range recs {
		byID[recs[i].ID] = int32(i)
	}
	names := map[string]string{} // few distinct source names: one string each
	err = s.rawQuery(ctx, "SELECT upstream_id, source FROM upstream_sources", nil, func(v []driver.Value) error {
		i, ok := byID[vStr(v[0])]
		if !ok {
			return nil
		}
		src := vStr(v[1])
		if n, ok := names[src]; ok {
			src = n
		} else {
			names[src] = src
		}
		recs[i].Sources = append(recs[i].Sources, src)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading sources of healthy upstreams: %w", err)
	}
	sortHealthy(recs)
	return recs, nil
}

// unpackHealthy fills r from healthyCols' first ten columns; false when
// the first does not hold exactly healthyTexts fields.
func unpackHealthy(r *upstream.Record, texts string, n []driver.Value) bool {
	var f [healthyTexts]string
	for k := range healthyTexts - 1 {
		i := strings.IndexByte(texts, '\x1f')
		if i < 0 {
			return false
		}
		f[k], texts = texts[:i], texts[i+1:]
	}
	if strings.IndexByte(texts, '\x1f') >= 0 {
		return false
	}
	f[healthyTexts-1] = texts
	r.ID, r.Type, r.Server, r.Name, r.Group = f[0], upstream.Kind(f[1]), f[2], f[3], f[4]
	r.State, r.ExitIP, r.Country, r.Anonymity, r.LastError = upstream.Healthy, f[5], f[6], upstream.Anonymity(f[7]), f[8]
	r.Port, r.Failures, r.Checks, r.OKs = int(vInt(n[0])), int(vInt(n[1])), int(vInt(n[2])), int(vInt(n[3]))
	r.LastCheck, r.LastOK, r.NextCheck = fromMS(vInt(n[4])), fromMS(vInt(n[5])), fromMS(vInt(n[6]))
	r.FirstSeen, r.LastSeen = fromMS(vInt(n[7])), fromMS(vInt(n[8]))
	return true
}

// sortHealthy orders recs best score first, then by id, and sorts each
// record's sources. It sorts small keys, then moves each record once into
// place (records are large; no second slice of them).
func sortHealthy(recs []upstream.Record) {
	type key struct {
		score float64
		id    string
		i     int32
	}
	keys := make([]key, len(recs))
	for i := range recs {
		keys[i] = key{recs[i].Score, recs[i].ID, int32(i)}
		if len(recs[i].Sources) > 1 {
			slices.Sort(recs[i].Sources)
		}
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	// Position p takes the record at keys[p].i: follow each cycle once.
	for start := range keys {
		if keys[start].i < 0 || int(keys[start].i) == start {
			continue
		}
		tmp := recs[start]
		p := start
		for {
			from := int(keys[p].i)
			keys[p].i = -1
			if from == start {
				recs[p] = tmp
				break
			}
			recs[p] = recs[from]
			p = from
		}
	}
}
