package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// servable is upstream.Status.Servable in SQL.
const servable = `(u.state = 'healthy' AND u.untrusted = 0 AND u.anonymity <> 'transparent')`

// servableInt is servable as 1 or 0, to sum (PostgreSQL does not add
// booleans).
const servableInt = `CASE WHEN ` + servable + ` THEN 1 ELSE 0 END`

// noLimit is LIMIT's argument for "all rows" on both backends (SQLite's
// -1 is an error on PostgreSQL).
const noLimit = math.MaxInt64

// inPool excludes the upstreams out of the pool (removed by the operator,
// retired): they are neither checked, served, counted nor listed by default.
const inPool = `u.state NOT IN ('removed', 'retired')`

// recordCols are the columns scanRecord reads, in order.
const recordCols = recordColsNoSources + `,
	coalesce((SELECT group_concat(x.source, char(31)) FROM upstream_sources x WHERE x.upstream_id = u.id), '')`

const recordColsNoSources = `u.id, u.type, u.server, u.port, u.name, u.grp, u.options, u.state, u.latency_ms,
	u.exit_ip, u.country, u.anonymity, u.untrusted, u.failures, u.checks, u.oks, u.score, u.last_check, u.last_ok,
	u.next_check, u.first_seen, u.last_seen, u.last_error, u.caps, u.last_cause, u.removed_at, u.removed_by,
	u.asn, u.org, u.class, u.ipv6`

type scanner interface{ Scan(dest ...any) error }

// scanRecord decodes one row of recordCols; decode turns the options
// text into the Options map.
func scanRecord(v []driver.Value, decode func(id, raw string) (map[string]any, error)) (upstream.Record, error) {
	var r upstream.Record
	r.ID, r.Type, r.Server, r.Port = vStr(v[0]), upstream.Kind(vStr(v[1])), vStr(v[2]), int(vInt(v[3]))
	r.Name, r.Group = vStr(v[4]), vStr(v[5])
	r.State, r.LatencyMS, r.ExitIP = upstream.State(vStr(v[7])), vFloat(v[8]), vStr(v[9])
	r.Country, r.Anonymity, r.Untrusted = vStr(v[10]), upstream.Anonymity(vStr(v[11])), vInt(v[12]) != 0
	r.Failures, r.Checks, r.OKs, r.Score = int(vInt(v[13])), int(vInt(v[14])), int(vInt(v[15])), vFloat(v[16])
	r.LastCheck, r.LastOK, r.NextCheck = fromMS(vInt(v[17])), fromMS(vInt(v[18])), fromMS(vInt(v[19]))
	r.FirstSeen, r.LastSeen, r.LastError = fromMS(vInt(v[20])), fromMS(vInt(v[21])), vStr(v[22])
	r.Caps, r.LastCause = upstream.Caps(vInt(v[23])), causeOf(vStr(v[24]))
	r.RemovedAt, r.RemovedBy = fromMS(vInt(v[25])), vStr(v[26])
	r.ASN, r.Org, r.Class, r.IPv6 = uint32(vInt(v[27])), vStr(v[28]), upstream.Class(vStr(v[29])), vInt(v[30]) != 0
	var err error
	if r.Options, err = decode(r.ID, vStr(v[6])); err != nil {
		return r, err
	}
	if sources := vStr(v[31]); sources != "" {
		r.Sources = strings.Split(sources, "\x1f")
		slices.Sort(r.Sources)
	}
	return r, nil
}

// decodeOptions is upstream.DecodeOptions naming the upstream in errors.
func decodeOptions(id, raw string) (map[string]any, error) {
	m, err := upstream.DecodeOptions(raw)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", id, err)
	}
	return m, nil
}

func (s *Store) queryRecords(ctx context.Context, query string, args ...any) ([]upstream.Record, error) {
	return s.appendRecords(ctx, nil, decodeOptions, query, args...)
}

func (s *Store) appendRecords(ctx context.Context, out []upstream.Record, decode func(id, raw string) (map[string]any, error),
	query string, args ...any) ([]upstream.Record, error) {
	err := s.rawQuery(ctx, query, args, func(v []driver.Value) error {
		r, err := scanRecord(v, decode)
		if err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Get returns one upstream with its status and sources.
func (s *Store) Get(ctx context.Context, id string) (upstream.Record, error) {
	recs, err := s.queryRecords(ctx, "SELECT "+recordCols+" FROM upstreams u WHERE u.id = ?", id)
	if err != nil {
		return upstream.Record{}, fmt.Errorf("getting upstream %s: %w", id, err)
	}
	if len(recs) == 0 {
		return upstream.Record{}, fmt.Errorf("getting upstream %s: %w", id, ErrNotFound)
	}
	return recs[0], nil
}

// Filter selects upstreams for List. Zero fields match everything.
type Filter struct {
	// State "" selects the pool: every state but removed and retired.
	State   upstream.State
	Country string // ISO code, any case
	Source  string // listed by this source
	Group   string // the upstream's explicit group (tor instances), not a config group
	Type    string
	// Anonymity selects by the last check's finding (elite, anonymous,
	// transparent); MinScore keeps upstreams scoring at least it.
	Anonymity upstream.Anonymity
	MinScore  float64
	// ASN and Class select by the exit's autonomous system and its class
	// (upstream.Quality); 0 and "" for any.
	ASN   uint32
	Class upstream.Class
	// Members selects a config group's upstreams, as the gateway's pool
	// counts them.
	Members *Members
	// Target keeps upstreams passing that target check now;
	// MinThroughput those whose last speed check measured at least it
	// (bytes/s).
	Target        string
	MinThroughput float64
	IDs           []string
	Limit         int // 0: no limit
	Offset        int
	// OrderBy is one of id, type, server, state, country, latency, score,
	// last_check, last_ok, next_check, first_seen, last_seen; a leading "-"
	// sorts descending. Default "id". Ties break on id.
	OrderBy string
}

// Members is a config group (groups.<name>): its tor instances by name,
// pinned ids, and, when it filters at all, the upstreams matching every
// condition given (any of the countries, none of the excluded, any of the
// types, listed by any of the sources, in any of the ASNs, none of the
// excluded ASNs, of any of the classes).
type Members struct {
	Name                                        string
	Countries, ExcludeCountries, Types, Sources []string
	ASNs, ExcludeASNs                           []uint32
	Classes                                     []string
	IDs                                         []string
}

// where is m as an SQL condition on u and its arguments.
func (m Members) where() (string, []any) {
	in := func(col string, vals []string, upper bool) (string, any) {
		norm := make([]string, len(vals))
		for i, v := range vals {
			if upper {
				norm[i] = strings.ToUpper(v)
			} else {
				norm[i] = strings.ToLower(v)
			}
		}
		b, _ := json.Marshal(norm)
		return col + " IN (SELECT value FROM json_each(?))", string(b)
	}
	ids, _ := json.Marshal(nonNil(m.IDs)) // nil is JSON null, not a list
	or := []string{"u.grp = ?", "u.id IN (SELECT value FROM json_each(?))"}
	args := []any{m.Name, string(ids)}
	var and []string
	if len(m.Countries) > 0 {
		c, a := in("upper(u.country)", m.Countries, true)
		and, args = append(and, c), append(args, a)
	}
	if len(m.ExcludeCountries) > 0 {
		c, a := in("upper(u.country)", m.ExcludeCountries, true)
		and, args = append(and, "NOT "+c), append(args, a)
	}
	if len(m.Types) > 0 {
		c, a := in("lower(u.type)", m.Types, false)
		and, args = append(and, c), append(args, a)
	}
	if len(m.Sources) > 0 {
		b, _ := json.Marshal(m.Sources)
		and = append(and, "u.id IN (SELECT upstream_id FROM upstream_sources WHERE source IN (SELECT value FROM json_each(?)))")
		args = append(args, string(b))
	}
	if len(m.ASNs) > 0 {
		b, _ := json.Marshal(m.ASNs)
		and, args = append(and, "u.asn IN (SELECT CAST(value AS BIGINT) FROM json_each(?))"), append(args, string(b))
	}
	if len(m.ExcludeASNs) > 0 {
		b, _ := json.Marshal(m.ExcludeASNs)
		and, args = append(and, "u.asn NOT IN (SELECT CAST(value AS BIGINT) FROM json_each(?))"), append(args, string(b))
	}
	if len(m.Classes) > 0 {
		c, a := in("u.class", m.Classes, false)
		and, args = append(and, c), append(args, a)
	}
	if len(and) > 0 {
		or = append(or, "("+strings.Join(and, " AND ")+")")
	}
	return "(" + strings.Join(or, " OR ") + ")", args
}

var orderColumns = map[string]string{
	"id": "u.id", "type": "u.type", "server": "u.server", "state": "u.state", "country": "u.country",
	"latency": "u.latency_ms", "latency_ms": "u.latency_ms", "score": "u.score", "last_check": "u.last_check",
	"last_ok": "u.last_ok", "next_check": "u.next_check", "first_seen": "u.first_seen", "last_seen": "u.last_seen",
	"group": "u.grp", "name": "u.name", "asn": "u.asn", "class": "u.class",
}

// List returns the upstreams f selects, one page at a time.
func (s *Store) List(ctx context.Context, f Filter) ([]upstream.Record, error) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if f.State != "" {
		add("u.state = ?", string(f.State))
	} else {
		where = append(where, inPool)
	}
	if f.Country != "" {
		add("u.country = ?", strings.ToUpper(f.Country))
	}
	if f.Source != "" {
		add("u.id IN (SELECT upstream_id FROM upstream_sources WHERE source = ?)", f.Source)
	}
	if f.Group != "" {
		add("u.grp = ?", f.Group)
	}
	if f.Type != "" {
		add("u.type = ?", strings.ToLower(f.Type))
	}
	if f.Anonymity != "" {
		add("u.anonymity = ?", strings.ToLower(string(f.Anonymity)))
	}
	if f.MinScore > 0 {
		add("u.score >= ?", f.MinScore)
	}
	if f.ASN != 0 {
		add("u.asn = ?", int64(f.ASN))
	}
	if f.Class != "" {
		add("u.class = ?", string(f.Class))
	}
	if f.Members != nil {
		cond, margs := f.Members.where()
		where, args = append(where, cond), append(args, margs...)
	}
	if f.Target != "" {
		where = append(where, "u.id IN (SELECT upstream_id FROM target_results WHERE target = ? AND ok = 1 AND expires_at > ?)")
		args = append(args, f.Target, ms(time.Now()))
	}
	if f.MinThroughput > 0 {
		add("u.id IN (SELECT upstream_id FROM speed_results WHERE down_bps >= ?)", f.MinThroughput)
	}
	if f.IDs != nil {
		ids, _ := json.Marshal(f.IDs)
		add("u.id IN (SELECT value FROM json_each(?))", string(ids))
	}
	q := "SELECT " + recordCols + " FROM upstreams u"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	order, desc := f.OrderBy, false
	if strings.HasPrefix(order, "-") {
		order, desc = order[1:], true
	}
	if order == "" {
		order = "id"
	}
	col, ok := orderColumns[order]
	if !ok {
		return nil, fmt.Errorf("listing upstreams: unknown order %q", f.OrderBy)
	}
	dir := ""
	if desc {
		dir = " DESC"
	}
	q += " ORDER BY " + col + dir
	if col != "u.id" {
		q += ", u.id"
	}
	if f.Limit > 0 || f.Offset > 0 {
		limit := f.Limit
		if limit <= 0 {
			limit = noLimit
		}
		q += " LIMIT ? OFFSET ?"
		args = append(args, limit, max(f.Offset, 0))
	}
	recs, err := s.queryRecords(ctx, q, args...)
	if err == nil {
		err = s.addChecked(ctx, recs)
	}
	if err != nil {
		return nil, fmt.Errorf("listing upstreams: %w", err)
	}
	return recs, nil
}

// Due returns up to limit upstreams whose next check is at or before now,
// the longest overdue first.
func (s *Store) Due(ctx context.Context, now time.Time, limit int) ([]upstream.Record, error) {
	if limit <= 0 {
		limit = noLimit
	}
	recs, err := s.queryRecords(ctx, "SELECT "+recordCols+" FROM upstreams u WHERE u.next_check <= ? AND "+inPool+
		" ORDER BY u.next_check, u.id LIMIT ?", ms(now), limit)
	if err != nil {
		return nil, fmt.Errorf("loading due upstreams: %w", err)
	}
	return recs, nil
}

// Version is the counter bumped by every commit that changes what the
// gateway serves (an upstream enters or leaves the servable set, or a
// servable one's exit ip, country, anonymity or group changes). Latency and
// score updates do not bump it.
func (s *Store) Version(ctx context.Context) (uint64, error) {
	var v uint64
	if err := s.rdb.QueryRowContext(ctx, "SELECT version FROM meta WHERE id = 1").Scan(&v); err != nil {
		return 0, fmt.Errorf("reading version: %w", err)
	}
	return v, nil
}

// Manual is the source upstreams added by hand (proxypoolctl add, import)
// are listed under: they are never retired, and a link to it alone keeps
// no tombstone (Remove deletes them).
const Manual = "manual"

// Add inserts upstreams listed by source (Manual for proxypoolctl
// add/import) and links existing ones to it. New upstreams start unknown
// and due now; removed or retired ones come back (the operator asked for
// them), unknown and due now too. It returns how many entered the pool.
func (s *Store) Add(ctx context.Context, source string, ups ...upstream.Upstream) (int, error) {
	if source == "" {
		return 0, fmt.Errorf("adding upstreams: empty source name")
	}
	var added int
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		var gen int64
		err := tx.QueryRowContext(ctx, "SELECT gen FROM sources WHERE name = ?", source).Scan(&gen)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return false, err
		}
		res, err := link(ctx, tx, source, gen, dedupe(ups), time.Now(), true)
		added = res.added
		return res.bump, err
	})
	if err != nil {
		return 0, fmt.Errorf("adding upstreams from %s: %w", source, err)
	}
	return added, nil
}

func dedupe(ups []upstream.Upstream) []upstream.Upstream {
	seen := make(map[string]bool, len(ups))
	out := make([]upstream.Upstream, 0, len(ups))
	for _, u := range ups {
		if u.ID == "" || seen[u.ID] {
			continue
		}
		seen[u.ID] = true
		out = append(out, u)
	}
	return out
}

type linkResult struct {
	added, seen, removed int
	bump                 bool
}

// link inserts the new upstreams, touches the known ones and links all of
// them to source at generation gen. ups must be deduplicated. A retired
// upstream comes back (added); a removed one too when lift is set (the
// operator adds it), else it stays removed (counted in removed).
func link(ctx context.Context, tx *sql.Tx, source string, gen int64, ups []upstream.Upstream, now time.Time, lift bool) (linkResult, error) {
	var res linkResult
	at := ms(now)
	ins, err := tx.PrepareContext(ctx, `INSERT INTO upstreams (id, type, server, port, name, grp, options, state,
		next_check, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, 'unknown', ?, ?, ?) ON CONFLICT (id) DO NOTHING`)
	if err != nil {
		return res, err
	}
	look, err := tx.PrepareContext(ctx, "SELECT oks, "+servable+", grp, state FROM upstreams u WHERE id = ?")
	if err != nil {
		return res, err
	}
	touch, err := tx.PrepareContext(ctx, `UPDATE upstreams SET last_seen = ?1,
		grp = CASE WHEN ?2 <> '' THEN ?2 ELSE grp END WHERE id = ?3`)
	if err != nil {
		return res, err
	}
	lnk, err := tx.PrepareContext(ctx, `INSERT INTO upstream_sources (upstream_id, source, gen, first_seen, last_seen)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (upstream_id, source) DO UPDATE SET gen = excluded.gen, last_seen = excluded.last_seen`)
	if err != nil {
		return res, err
	}
	back, err := tx.PrepareContext(ctx, `UPDATE upstreams SET state = 'unknown', failures = 0, next_check = ?1,
		removed_at = 0, removed_by = '' WHERE id = ?2`)
	if err != nil {
		return res, err
	}
	linked, err := tx.PrepareContext(ctx, "SELECT count(*) FROM upstream_sources WHERE upstream_id = ? AND source = ?")
	if err != nil {
		return res, err
	}
	credit, err := tx.PrepareContext(ctx, `INSERT INTO source_stats (source, ever_healthy) VALUES (?, 1)
		ON CONFLICT (source) DO UPDATE SET ever_healthy = source_stats.ever_healthy + 1`)
	if err != nil {
		return res, err
	}
	for _, u := range ups {
		opts, err := json.Marshal(u.Options)
		if err != nil {
			return res, fmt.Errorf("upstream %s: encoding options: %w", u.ID, err)
		}
		r, err := ins.ExecContext(ctx, u.ID, string(u.Type), u.Server, u.Port, u.Name, u.Group, string(opts), at, at, at)
		if err != nil {
			return res, fmt.Errorf("inserting upstream %s: %w", u.ID, err)
		}
		if n, _ := r.RowsAffected(); n == 1 {
			res.added++
		} else {
			var oks int
			var serv bool
			var grp, state string
			if err := look.QueryRowContext(ctx, u.ID).Scan(&oks, &serv, &grp, &state); err != nil {
				return res, fmt.Errorf("reading upstream %s: %w", u.ID, err)
			}
			switch st := upstream.State(state); {
			case st == upstream.Removed && !lift:
				res.removed++
			case !st.InPool():
				if _, err := back.ExecContext(ctx, at, u.ID); err != nil {
					return res, fmt.Errorf("bringing back upstream %s: %w", u.ID, err)
				}
				res.added++
			default:
				res.seen++
			}
			if _, err := touch.ExecContext(ctx, at, u.Group, u.ID); err != nil {
				return res, fmt.Errorf("touching upstream %s: %w", u.ID, err)
			}
			if u.Group != "" && u.Group != grp && serv {
				res.bump = true // a served attribute changed
			}
			if oks > 0 {
				var n int
				if err := linked.QueryRowContext(ctx, u.ID, source).Scan(&n); err != nil {
					return res, err
				}
				if n == 0 {
					if _, err := credit.ExecContext(ctx, source); err != nil {
						return res, err
					}
				}
			}
		}
		if _, err := lnk.ExecContext(ctx, u.ID, source, gen, at, at); err != nil {
			return res, fmt.Errorf("linking upstream %s to %s: %w", u.ID, source, err)
		}
	}
	return res, nil
}

// Remove takes upstreams out of the pool by id, by saying who (shown in
// list --state removed). One that a source other than Manual still lists
// becomes a tombstone (state removed, row, links and history kept): the
// source's refreshes do not bring it back, Restore does. Any other is
// deleted with its links and history, a retired one included (no source
// lists it). It returns how many were in the pool or retired; an already
// removed upstream does not count.
func (s *Store) Remove(ctx context.Context, by string, ids ...string) (int, error) {
	var removed int
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		removed = 0
		now := ms(time.Now())
		bump := false
		for _, id := range ids {
			var healthySince int64
			var serv, listed bool
			var state string
			err := tx.QueryRowContext(ctx, "SELECT healthy_since, "+servable+", state, "+
				"EXISTS (SELECT 1 FROM upstream_sources x WHERE x.upstream_id = u.id AND x.source <> ?) FROM upstreams u WHERE id = ?",
				Manual, id).Scan(&healthySince, &serv, &state, &listed)
			if errors.Is(err, sql.ErrNoRows) || upstream.State(state) == upstream.Removed {
				continue
			}
			if err != nil {
				return false, err
			}
			if err := creditHealthy(ctx, tx, id, healthySince, now); err != nil {
				return false, err
			}
			if listed && upstream.State(state).InPool() {
				_, err = tx.ExecContext(ctx, `UPDATE upstreams SET state = 'removed', removed_at = ?, removed_by = ?,
					healthy_since = 0 WHERE id = ?`, now, by, id)
			} else {
				_, err = tx.ExecContext(ctx, "DELETE FROM upstreams WHERE id = ?", id)
			}
			if err != nil {
				return false, err
			}
			removed++
			bump = bump || serv
		}
		return bump, nil
	})
	if err != nil {
		return 0, fmt.Errorf("removing upstreams: %w", err)
	}
	return removed, nil
}

// Restore brings removed and retired upstreams back into the pool, unknown
// and due now, with their history. One that no source lists (retired, or
// removed and since dropped by its sources) is linked to adopt (the
// manager passes Manual): the operator keeps it as added by hand, never
// retired. It returns how many came back.
func (s *Store) Restore(ctx context.Context, adopt string, ids ...string) (int, error) {
	var restored int
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		restored = 0
		now := time.Now()
		at := ms(now)
		var gen int64
		if err := tx.QueryRowContext(ctx, "SELECT gen FROM sources WHERE name = ?", adopt).Scan(&gen); err != nil && !errors.Is(err, sql.ErrNoRows) {
			return false, err
		}
		for _, id := range ids {
			var state string
			err := tx.QueryRowContext(ctx, "SELECT state FROM upstreams WHERE id = ?", id).Scan(&state)
			if errors.Is(err, sql.ErrNoRows) || upstream.State(state).InPool() {
				continue
			}
			if err != nil {
				return false, err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO upstream_sources (upstream_id, source, gen, first_seen, last_seen)
				SELECT ?1, ?2, CAST(?3 AS BIGINT), CAST(?4 AS BIGINT), CAST(?4 AS BIGINT) WHERE NOT EXISTS (SELECT 1 FROM upstream_sources WHERE upstream_id = ?1)`,
				id, adopt, gen, at); err != nil {
				return false, err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE upstreams SET state = 'unknown', failures = 0, next_check = ?1,
				last_seen = ?1, removed_at = 0, removed_by = '' WHERE id = ?2`, at, id); err != nil {
				return false, err
			}
			restored++
		}
		return false, nil // unknown is not served: nothing the gateway sees changed yet
	})
	if err != nil {
		return 0, fmt.Errorf("restoring upstreams: %w", err)
	}
	return restored, nil
}

// Retire takes out of the pool the upstreams that no source has listed
// for longer than after (their last_seen), Manual's never (they stay
// linked to it): state retired, row and history kept, so a source that
// lists one again brings it back. live, when not nil, names the sources
// that still exist (the configured ones and pseudo-sources such as tor):
// a link to any other (a source taken out of the config) no longer counts
// as listing. after <= 0 retires nothing. It returns how many it retired.
func (s *Store) Retire(ctx context.Context, after time.Duration, live []string) (int, error) {
	if after <= 0 {
		return 0, nil
	}
	listing, args := "", []any{ms(time.Now().Add(-after))}
	if live != nil {
		b, _ := json.Marshal(append([]string{Manual}, live...))
		listing, args = " AND x.source IN (SELECT value FROM json_each(?))", append(args, string(b))
	}
	var retired int
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		retired = 0
		now := time.Now()
		// an orphan is linked to no source, so no healthy run is credited
		rows, err := tx.QueryContext(ctx, "SELECT id, "+servable+" FROM upstreams u WHERE "+inPool+
			" AND last_seen < ? AND NOT EXISTS (SELECT 1 FROM upstream_sources x WHERE x.upstream_id = u.id"+listing+")", args...)
		if err != nil {
			return false, err
		}
		var orphans []string
		bump := false
		for rows.Next() {
			var id string
			var serv bool
			if err := rows.Scan(&id, &serv); err != nil {
				rows.Close()
				return false, err
			}
			orphans = append(orphans, id)
			bump = bump || serv
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return false, err
		}
		for _, id := range orphans {
			if _, err := tx.ExecContext(ctx, `UPDATE upstreams SET state = 'retired', removed_at = ?, removed_by = '',
				healthy_since = 0 WHERE id = ?`, ms(now), id); err != nil {
				return false, err
			}
		}
		retired = len(orphans)
		return bump, nil
	})
	if err != nil {
		return 0, fmt.Errorf("retiring upstreams no source lists: %w", err)
	}
	return retired, nil
}

// Reschedule makes ids due at at ("check these now"); no ids means every
// upstream.
func (s *Store) Reschedule(ctx context.Context, ids []string, at time.Time) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		if len(ids) == 0 {
			_, err := tx.ExecContext(ctx, "UPDATE upstreams SET next_check = ?", ms(at))
			return false, err
		}
		b, _ := json.Marshal(ids)
		_, err := tx.ExecContext(ctx, "UPDATE upstreams SET next_check = ? WHERE id IN (SELECT value FROM json_each(?))", ms(at), string(b))
		return false, err
	})
	if err != nil {
		return fmt.Errorf("rescheduling upstreams: %w", err)
	}
	return nil
}

// PruneDead deletes upstreams that are dead and have had no ok check (or,
// never ok, were first seen) more than deadFor ago. It returns how many.
func (s *Store) PruneDead(ctx context.Context, deadFor time.Duration) (int, error) {
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		cutoff := ms(time.Now().Add(-deadFor))
		r, err := tx.ExecContext(ctx, `DELETE FROM upstreams WHERE state = 'dead'
			AND CASE WHEN last_ok > 0 THEN last_ok ELSE first_seen END < ?`, cutoff)
		if err != nil {
			return false, err
		}
		n, err = r.RowsAffected()
		return false, err
	})
	if err != nil {
		return 0, fmt.Errorf("pruning dead upstreams: %w", err)
	}
	return int(n), nil
}

// PruneEvery is how often RetainDead prunes: delete-after is honoured within
// it, whatever its value, for the cost of one indexed DELETE a minute.
const PruneEvery = time.Minute

// RetainDead runs PruneDead(deadFor) now and then every `every` (PruneEvery
// when 0) until ctx ends, telling pruned how many went each time it
// deleted some.
func (s *Store) RetainDead(ctx context.Context, deadFor, every time.Duration, pruned func(n int, err error)) {
	if every <= 0 {
		every = PruneEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := s.PruneDead(ctx, deadFor); (n > 0 || err != nil) && ctx.Err() == nil && pruned != nil {
			pruned(n, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// History returns up to limit (0: all kept) of the latest results recorded
// for id, newest first.
func (s *Store) History(ctx context.Context, id string, limit int) ([]upstream.CheckResult, error) {
	var one int
	if err := s.rdb.QueryRowContext(ctx, "SELECT 1 FROM upstreams WHERE id = ?", id).Scan(&one); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			err = ErrNotFound
		}
		return nil, fmt.Errorf("reading history of %s: %w", id, err)
	}
	if limit <= 0 {
		limit = noLimit
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT at, ok, passive, cause, err, connect_ms, ttfb_ms, total_ms, exit_ip, country,
		anonymity, untrusted, headers FROM checks WHERE upstream_id = ? ORDER BY seq DESC LIMIT ?`, id, limit)
	if err != nil {
		return nil, fmt.Errorf("reading history of %s: %w", id, err)
	}
	defer rows.Close()
	var out []upstream.CheckResult
	for rows.Next() {
		r := upstream.CheckResult{ID: id}
		var at int64
		var anon, headers, cause string
		if err := rows.Scan(&at, &r.OK, &r.Passive, &cause, &r.Detail, &r.ConnectMS, &r.TTFBMS, &r.TotalMS, &r.ExitIP, &r.Country,
			&anon, &r.Untrusted, &headers); err != nil {
			return nil, fmt.Errorf("reading history of %s: %w", id, err)
		}
		r.At, r.Anonymity, r.Cause = fromMS(at), upstream.Anonymity(anon), causeOf(cause)
		if headers != "" {
			if err := json.Unmarshal([]byte(headers), &r.Headers); err != nil {
				return nil, fmt.Errorf("reading history of %s: headers: %w", id, err)
			}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
