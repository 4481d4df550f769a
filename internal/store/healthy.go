package store

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// healthyCols select a servable upstream in few columns, so that a row
// costs the driver few allocations: the text fields joined by \x1f (one
// string, which the record's fields then slice; concat_ws builds it in
// one piece, a chain of || copies it at every step), the integers, the
// options text, latency and score. State and Untrusted are implied by
// servable.
const healthyCols = `concat_ws(char(31), u.id, u.type, u.server, u.name, u.grp, u.exit_ip, u.country, u.anonymity,
	u.last_error, u.org, u.class),
	u.port, u.failures, u.checks, u.oks, u.last_check, u.last_ok, u.next_check, u.first_seen, u.last_seen,
	u.options, u.latency_ms, u.score, u.caps, u.asn, u.ipv6`

const healthyTexts = 11 // \x1f-separated fields of the first column

// gatewayCols are healthyCols cut to what a gateway serves by
// (upstream.Served: a third less for SQLite to read and the driver to
// convert).
const gatewayCols = `concat_ws(char(31), u.id, u.type, u.server, u.grp, u.exit_ip, u.country, u.org, u.class),
	u.port, u.last_check, u.options, u.latency_ms, u.score, u.caps, u.asn, u.ipv6`

const gatewayTexts = 8

// Healthy returns every servable upstream (upstream.Status.Servable), best
// score first, ties by id; each record's Sources are sorted. Options maps
// are shared with the previous call's records (decoded once per
// upstream), Sources slices between records listed by the same sources:
// treat both as read-only, as upstream.Upstream asks.
func (s *Store) Healthy(ctx context.Context) ([]upstream.Record, error) {
	var recs []upstream.Record
	err := s.eachHealthy(ctx, false, func(n int, h *healthyRow, odd *upstream.Record) error {
		if recs == nil {
			recs = make([]upstream.Record, 0, n)
		}
		if odd == nil {
			recs = append(recs, upstream.Record{})
			h.record(&recs[len(recs)-1])
		} else {
			recs = append(recs, *odd)
		}
		return nil
	})
	return recs, err
}

// GatewayHealthy is the gateway's snapshot: the upstreams Healthy returns,
// in the same order, passed to fn one at a time instead of as a slice (a
// 100k-upstream pool is ~37 MB of Records; what this holds meanwhile is a
// third of that), as the gateway serves them (upstream.Served: options
// as stored JSON, none when they say nothing beyond type, server and
// port). n is the number of upstreams the call passes in all; r is reused
// between calls (its strings and Sources are not: fn may keep them). An
// error from fn stops the call and is returned.
func (s *Store) GatewayHealthy(ctx context.Context, fn func(n int, r *upstream.Served) error) error {
	checked, err := s.loadChecked(ctx, time.Now())
	if err != nil {
		return err
	}
	var r upstream.Served
	return s.eachHealthy(ctx, true, func(n int, h *healthyRow, odd *upstream.Record) error {
		if odd == nil {
			h.served(&r)
		} else {
			var err error
			if r, err = odd.Served(); err != nil {
				return err
			}
		}
		r.Targets, r.Throughput = checked.targets[r.ID], checked.speed[r.ID]
		return fn(n, &r)
	})
}

// eachHealthy passes the servable upstreams to fn in Healthy's order:
// each either as a row read in the packed form (healthyCols, or
// gatewayCols for the gateway) or, for the few that form cannot carry, as
// a record (odd). fn may keep what the row points to.
func (s *Store) eachHealthy(ctx context.Context, gateway bool, fn func(n int, h *healthyRow, odd *upstream.Record) error) error {
	rows, odd, err := s.scanHealthy(ctx, gateway)
	if err != nil {
		return err
	}
	// Order small keys, then hand the rows over in that order. Most ties
	// on score are settled by the ids' first 8 bytes, held in the key.
	type key struct {
		score float64
		pfx   uint64
		id    string
		i     int32 // rows[i], or odd[i-len(rows)]
	}
	keys := make([]key, 0, len(rows)+len(odd))
	for i := range rows {
		id, _, _ := strings.Cut(rows[i].texts, "\x1f")
		keys = append(keys, key{rows[i].score, idPrefix(id), id, int32(i)})
	}
	for i := range odd {
		keys = append(keys, key{odd[i].Score, idPrefix(odd[i].ID), odd[i].ID, int32(len(rows) + i)})
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		if c := cmp.Compare(a.pfx, b.pfx); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	for _, k := range keys {
		var err error
		if int(k.i) < len(rows) {
			err = fn(len(keys), &rows[k.i], nil)
			rows[k.i] = healthyRow{} // fn may keep what it points to; the rows need not
		} else {
			err = fn(len(keys), nil, &odd[int(k.i)-len(rows)])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// kindOf is the type field of packed texts (id, type, …).
func kindOf(texts string) string {
	_, rest, _ := strings.Cut(texts, "\x1f")
	typ, _, _ := strings.Cut(rest, "\x1f")
	return typ
}

// idPrefix is the first 8 bytes of id, big-endian (zero-padded): ordered
// as the strings are, when it differs.
func idPrefix(id string) uint64 {
	var b [8]byte
	copy(b[:], id)
	return binary.BigEndian.Uint64(b[:])
}

// healthyRow is one servable upstream between the scan and the sorted
// hand-over: healthyCols' (gatewayCols') packed text fields, the decoded
// options (the stored ones, for the gateway), the numbers (~120 bytes; a
// Record is ~370).
type healthyRow struct {
	texts                       string
	opts                        map[string]any
	raw                         string // the gateway's upstream.Entry.Options
	sources                     []string
	srcBits                     uint64 // sources by their index in sorted order, while being read
	latency, score              float64
	port, failures, checks, oks int32
	caps                        upstream.Caps
	asn                         uint32
	ipv6                        bool
	times                       [5]int64 // last_check, last_ok, next_check, first_seen, last_seen (ms)
}

// fields splits h's packed texts into f.
func (h *healthyRow) fields(f []string) {
	texts := h.texts
	for k := range len(f) - 1 {
		i := strings.IndexByte(texts, '\x1f')
		f[k], texts = texts[:i], texts[i+1:]
	}
	f[len(f)-1] = texts
}

// record fills r from h, read with healthyCols.
func (h *healthyRow) record(r *upstream.Record) {
	var f [healthyTexts]string
	h.fields(f[:])
	*r = upstream.Record{
		Upstream: upstream.Upstream{ID: f[0], Type: upstream.Kind(f[1]), Server: f[2], Port: int(h.port),
			Name: f[3], Group: f[4], Options: h.opts},
		Status: upstream.Status{State: upstream.Healthy, LatencyMS: h.latency, ExitIP: f[5], Country: f[6],
			Anonymity: upstream.Anonymity(f[7]), Failures: int(h.failures), Checks: int(h.checks), OKs: int(h.oks),
			Score: h.score, LastCheck: fromMS(h.times[0]), LastOK: fromMS(h.times[1]), NextCheck: fromMS(h.times[2]),
			FirstSeen: fromMS(h.times[3]), LastSeen: fromMS(h.times[4]), LastError: f[8], Caps: h.caps,
			Quality: upstream.Quality{ASN: h.asn, Org: f[9], Class: upstream.Class(f[10]), IPv6: h.ipv6}},
		Sources: h.sources,
	}
}

// served fills r from h, read with gatewayCols.
func (h *healthyRow) served(r *upstream.Served) {
	var f [gatewayTexts]string
	h.fields(f[:])
	*r = upstream.Served{
		Choice: upstream.Choice{
			Entry: upstream.Entry{ID: f[0], Type: upstream.Kind(f[1]), Server: f[2], Port: int(h.port), Group: f[3],
				Caps: h.caps, Options: h.raw},
			ExitIP: f[4], Country: f[5], LatencyMS: h.latency,
			Quality: upstream.Quality{ASN: h.asn, Org: f[6], Class: upstream.Class(f[7]), IPv6: h.ipv6},
		},
		Sources: h.sources, LastCheck: fromMS(h.times[0]),
	}
}

// scanHealthy reads the servable upstreams in table order, with their
// sorted sources: those healthyCols (gatewayCols) carries as rows, the
// few it cannot (a \x1f in a text field, a count beyond 32 bits) as
// records.
func (s *Store) scanHealthy(ctx context.Context, gateway bool) ([]healthyRow, []upstream.Record, error) {
	query := func(q string, row func([]driver.Value) error) error { return s.rawQuery(ctx, q, nil, row) }
	var db interface {
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	} = s.rdb
	if gateway {
		c, err := s.scanConn(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("loading healthy upstreams: %w", err)
		}
		defer c.release()
		query, db = c.query, c.conn
	}
	// Two flat scans (records, then the source links) are cheaper than
	// 100k correlated subqueries.
	//
	// The options cache is updated in place, so calls take turns.
	s.optsMu.Lock()
	defer s.optsMu.Unlock()
	// The index on state finds the healthy rows, but reading each through
	// it costs a random table lookup: when they are most of the table, a
	// plain scan is cheaper.
	var n, total int
	if err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM upstreams WHERE state = 'healthy'),
		(SELECT count(*) FROM upstreams)`).Scan(&n, &total); err != nil {
		return nil, nil, fmt.Errorf("counting healthy upstreams: %w", err)
	}
	from := "upstreams u"
	if 3*n >= total {
		from += " NOT INDEXED"
	}
	// The gateway keeps options as stored (upstream.Entry) and needs no
	// cache of decoded ones.
	cache := s.optsCache
	if cache == nil && !gateway {
		cache = make(map[string]cachedOptions, n)
		s.optsCache = cache
	}
	decode := func(id, raw string) (map[string]any, error) {
		if gateway {
			return decodeOptions(id, raw)
		}
		c, ok := cache[id]
		if !ok || c.raw != raw {
			m, err := decodeOptions(id, raw)
			if err != nil {
				return nil, err
			}
			c = cachedOptions{raw: raw, m: m}
			cache[strings.Clone(id)] = c // the key pins no row text
		}
		return c.m, nil
	}
	rows := make([]healthyRow, 0, n)
	var oddIDs []string // rows the packed form cannot carry
	cols, opts := healthyCols, 10
	if gateway {
		cols, opts = gatewayCols, 3
	}
	err := query("SELECT "+cols+" FROM "+from+" WHERE "+servable, func(v []driver.Value) error {
		texts := vStr(v[0])
		id, _, _ := strings.Cut(texts, "\x1f")
		var h healthyRow
		if ok := gateway && h.fillGateway(texts, v[1:]) || !gateway && h.fill(texts, v[1:]); !ok {
			if id != "" {
				oddIDs = append(oddIDs, id)
			}
			return nil
		}
		var err error
		switch raw := vStr(v[opts]); {
		case !gateway:
			h.opts, err = decode(id, raw)
		case !upstream.Kind(kindOf(texts)).Plain():
			h.raw = raw // a share link's options are never bare
		default:
			// A plain upstream's are decoded only to see whether they
			// say more than its fields.
			var m map[string]any
			if m, err = decode(id, raw); err == nil && !upstream.BareOptions(m) {
				h.raw = raw
			}
		}
		if err != nil {
			return err
		}
		rows = append(rows, h)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("loading healthy upstreams: %w", err)
	}
	var odd []upstream.Record
	if len(oddIDs) > 0 {
		ids, _ := json.Marshal(oddIDs)
		odd, err = s.appendRecords(ctx, nil, decode, "SELECT "+recordColsNoSources+", '' FROM upstreams u WHERE "+
			servable+" AND u.id IN (SELECT value FROM json_each(?))", string(ids))
		if err != nil {
			return nil, nil, fmt.Errorf("loading healthy upstreams: %w", err)
		}
	}

	byID := make(map[string]int32, len(rows)+len(odd)) // rows[i], or odd[i-len(rows)]
	for i := range rows {
		id, _, _ := strings.Cut(rows[i].texts, "\x1f")
		byID[id] = int32(i)
	}
	for i := range odd {
		byID[odd[i].ID] = int32(len(rows) + i)
	}
	if !gateway && len(cache) > len(byID) { // upstreams gone since the last call
		for id := range cache {
			if _, ok := byID[id]; !ok {
				delete(cache, id)
			}
		}
	}
	// One row per source with the ids it lists: a handful of rows and
	// strings instead of one of each per link. (Ids hold no \x1f: the
	// packed scan above relies on that too.) While there are at most 64
	// sources a row notes its own as a bit set, and the rows listed by
	// the same sources share one slice of them.
	type listing struct{ src, ids string }
	var lists []listing
	err = query("SELECT source, group_concat(upstream_id, char(31)) FROM upstream_sources GROUP BY source", func(v []driver.Value) error {
		lists = append(lists, listing{vStr(v[0]), vStr(v[1])})
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("loading sources of healthy upstreams: %w", err)
	}
	slices.SortFunc(lists, func(a, b listing) int { return strings.Compare(a.src, b.src) }) // sources come out sorted
	bits := len(lists) <= 64
	for k, l := range lists {
		for ids := l.ids; ids != ""; {
			id := ids
			if j := strings.IndexByte(ids, '\x1f'); j >= 0 {
				id, ids = ids[:j], ids[j+1:]
			} else {
				ids = ""
			}
			i, ok := byID[id]
			switch {
			case !ok:
			case int(i) >= len(rows):
				odd[int(i)-len(rows)].Sources = append(odd[int(i)-len(rows)].Sources, l.src)
			case bits:
				rows[i].srcBits |= 1 << k
			default:
				rows[i].sources = append(rows[i].sources, l.src)
			}
		}
	}
	if bits {
		sets := map[uint64][]string{}
		for i := range rows {
			b := rows[i].srcBits
			if b == 0 {
				continue
			}
			set, ok := sets[b]
			if !ok {
				for k := range lists {
					if b&(1<<k) != 0 {
						set = append(set, lists[k].src)
					}
				}
				set = slices.Clip(set)
				sets[b] = set
			}
			rows[i].sources = set
		}
	}
	return rows, odd, nil
}

// fill sets h from healthyCols but the options; false when the first
// column does not hold exactly healthyTexts fields or a count does not
// fit in 32 bits.
func (h *healthyRow) fill(texts string, n []driver.Value) bool {
	if strings.Count(texts, "\x1f") != healthyTexts-1 {
		return false
	}
	h.texts = texts
	var c [4]int32 // port, failures, checks, oks
	for k := range c {
		x := vInt(n[k])
		if int64(int32(x)) != x {
			return false
		}
		c[k] = int32(x)
	}
	h.port, h.failures, h.checks, h.oks = c[0], c[1], c[2], c[3]
	for k := range h.times {
		h.times[k] = vInt(n[4+k])
	}
	h.latency, h.score, h.caps = vFloat(n[10]), vFloat(n[11]), upstream.Caps(vInt(n[12]))
	return h.quality(n[13], n[14])
}

// fillGateway is fill for gatewayCols.
func (h *healthyRow) fillGateway(texts string, n []driver.Value) bool {
	if strings.Count(texts, "\x1f") != gatewayTexts-1 {
		return false
	}
	port := vInt(n[0])
	if int64(int32(port)) != port {
		return false
	}
	h.texts, h.port, h.times[0] = texts, int32(port), vInt(n[1])
	h.latency, h.score, h.caps = vFloat(n[3]), vFloat(n[4]), upstream.Caps(vInt(n[5]))
	return h.quality(n[6], n[7])
}

// quality sets the exit's ASN and IPv6 reach; false for an ASN beyond
// 32 bits, which only a hand-edited row holds (read as a record).
func (h *healthyRow) quality(asn, ipv6 driver.Value) bool {
	a := vInt(asn)
	if int64(uint32(a)) != a {
		return false
	}
	h.asn, h.ipv6 = uint32(a), vInt(ipv6) != 0
	return true
}

// gatewayCacheKiB is the page cache of the gateway's scans, which read
// the database through read(2) rather than the memory map: mapped, every
// page a scan touches stays resident in the gateway (55 MiB of its RSS at
// 100k upstreams, on top of the Go heap); read, the pages stay in the
// kernel's cache and a full scan costs about the same.
const gatewayCacheKiB = 2 << 10

// scanConn is a read connection without the memory map and with a small
// page cache, for the gateway's full scans.
type scanConn struct {
	ctx  context.Context
	conn *sql.Conn
	pg   bool // PostgreSQL, which has neither knob
}

func (s *Store) scanConn(ctx context.Context) (*scanConn, error) {
	conn, err := s.rdb.Conn(ctx)
	if err != nil {
		return nil, err
	}
	c := &scanConn{ctx: ctx, conn: conn, pg: s.pg}
	if err := c.pragmas(0, gatewayCacheKiB); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *scanConn) pragmas(mmap, cacheKiB int) error {
	if c.pg {
		return nil
	}
	_, err := c.conn.ExecContext(c.ctx, fmt.Sprintf("PRAGMA mmap_size = %d", mmap))
	if err == nil {
		_, err = c.conn.ExecContext(c.ctx, fmt.Sprintf("PRAGMA cache_size = -%d", cacheKiB))
	}
	return err
}

// release restores the connection's settings and returns it to the pool
// (or closes it, when it cannot).
func (c *scanConn) release() {
	if c.ctx.Err() != nil || c.pragmas(mmapBytes, readerCacheKiB) != nil {
		c.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	c.conn.Close()
}

// query is Store.rawQuery on this connection, without arguments.
func (c *scanConn) query(query string, row func(vals []driver.Value) error) error {
	return queryRaw(c.ctx, c.conn, query, nil, row)
}
