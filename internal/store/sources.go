package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

const sourceCols = `s.name, s.url, s.format, s.etag, s.last_modified, s.last_fetch, s.last_ok, s.last_error,
	s.lines, s.ok, s.failed, s.total, coalesce(st.ever_healthy, 0), s.last_new, s.last_seen, s.last_gone, s.last_removed`

func scanSource(sc scanner) (upstream.SourceMeta, error) {
	var m upstream.SourceMeta
	var lastFetch, lastOK int64
	err := sc.Scan(&m.Name, &m.URL, &m.Format, &m.ETag, &m.LastModified, &lastFetch, &lastOK, &m.LastError,
		&m.Lines, &m.OK, &m.Failed, &m.Total, &m.EverHealthy, &m.New, &m.Seen, &m.Gone, &m.Removed)
	m.LastFetch, m.LastOK = fromMS(lastFetch), fromMS(lastOK)
	return m, err
}

// SourceMeta returns the fetch bookkeeping of one source; ErrNotFound if it
// was never fetched.
func (s *Store) SourceMeta(ctx context.Context, name string) (upstream.SourceMeta, error) {
	m, err := scanSource(s.rdb.QueryRowContext(ctx, "SELECT "+sourceCols+
		" FROM sources s LEFT JOIN source_stats st ON st.source = s.name WHERE s.name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("reading source %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return m, fmt.Errorf("reading source %s: %w", name, err)
	}
	return m, nil
}

// Sources returns every source ever fetched, by name.
func (s *Store) Sources(ctx context.Context) ([]upstream.SourceMeta, error) {
	rows, err := s.rdb.QueryContext(ctx, "SELECT "+sourceCols+
		" FROM sources s LEFT JOIN source_stats st ON st.source = s.name ORDER BY s.name")
	if err != nil {
		return nil, fmt.Errorf("listing sources: %w", err)
	}
	defer rows.Close()
	var out []upstream.SourceMeta
	for rows.Next() {
		m, err := scanSource(rows)
		if err != nil {
			return nil, fmt.Errorf("listing sources: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// UpsertSource records one successful fetch of a source in one
// transaction: the source row (meta, with LastFetch and LastOK defaulting to
// now and Total set to the distinct upstreams listed), new upstreams
// inserted (unknown, due now), listed ones touched and linked, and the ones
// the source no longer lists unlinked (Gone). A listed upstream the
// operator removed stays removed (Removed); a retired one comes back (New).
// An unlinked upstream no source lists any more is deleted if it was never
// healthy; ever-healthy ones stay until the probe finds them dead and
// PruneDead removes them, or Retire retires them.
func (s *Store) UpsertSource(ctx context.Context, meta upstream.SourceMeta, ups []upstream.Upstream) (upstream.SourceSummary, error) {
	sum := upstream.SourceSummary{Source: meta.Name, Failed: meta.Failed}
	if meta.Name == "" {
		return sum, fmt.Errorf("upserting source: empty name")
	}
	ups = dedupe(ups)
	now := time.Now()
	if meta.LastFetch.IsZero() {
		meta.LastFetch = now
	}
	if meta.LastOK.IsZero() {
		meta.LastOK = meta.LastFetch
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		var gen int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO sources (name, gen) VALUES (?, 1)
			ON CONFLICT (name) DO UPDATE SET gen = sources.gen + 1 RETURNING gen`, meta.Name).Scan(&gen); err != nil {
			return false, err
		}
		res, err := link(ctx, tx, meta.Name, gen, ups, now, false)
		if err != nil {
			return false, err
		}
		gone, err := unlinkStale(ctx, tx, meta.Name, gen)
		if err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sources SET url = ?, format = ?, etag = ?, last_modified = ?,
			last_fetch = ?, last_ok = ?, last_error = ?, lines = ?, ok = ?, failed = ?, total = ? WHERE name = ?`,
			meta.URL, meta.Format, meta.ETag, meta.LastModified, ms(meta.LastFetch), ms(meta.LastOK), meta.LastError,
			meta.Lines, meta.OK, meta.Failed, len(ups), meta.Name); err != nil {
			return false, err
		}
		sum.New, sum.Seen, sum.Gone, sum.Removed = res.added, res.seen, gone, res.removed
		if _, err := tx.ExecContext(ctx, "UPDATE sources SET last_new = ?, last_seen = ?, last_gone = ?, last_removed = ? WHERE name = ?",
			sum.New, sum.Seen, sum.Gone, sum.Removed, meta.Name); err != nil {
			return false, err
		}
		return res.bump, nil
	})
	if err != nil {
		return sum, fmt.Errorf("upserting source %s: %w", meta.Name, err)
	}
	return sum, nil
}

// unlinkStale removes source's links older than gen and deletes the
// unlinked upstreams that no source lists and that were never healthy.
func unlinkStale(ctx context.Context, tx *sql.Tx, source string, gen int64) (int, error) {
	rows, err := tx.QueryContext(ctx, "SELECT upstream_id FROM upstream_sources WHERE source = ? AND gen < ?", source, gen)
	if err != nil {
		return 0, err
	}
	var gone []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		gone = append(gone, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(gone) == 0 {
		return 0, nil
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM upstream_sources WHERE source = ? AND gen < ?", source, gen); err != nil {
		return 0, err
	}
	del, err := tx.PrepareContext(ctx, `DELETE FROM upstreams WHERE id = ?1 AND oks = 0
		AND NOT EXISTS (SELECT 1 FROM upstream_sources WHERE upstream_id = ?1)`)
	if err != nil {
		return 0, err
	}
	for _, id := range gone {
		if _, err := del.ExecContext(ctx, id); err != nil {
			return 0, err
		}
	}
	return len(gone), nil
}

// TouchSource records a fetch that found the source unchanged (HTTP 304):
// every link and upstream stays, their last_seen moves to now.
func (s *Store) TouchSource(ctx context.Context, meta upstream.SourceMeta) error {
	now := time.Now()
	if meta.LastFetch.IsZero() {
		meta.LastFetch = now
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO sources (name, url, format, etag, last_modified, last_fetch, last_ok)
			VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (name) DO UPDATE SET url = ?2, format = ?3,
			etag = CASE WHEN ?4 <> '' THEN ?4 ELSE sources.etag END,
			last_modified = CASE WHEN ?5 <> '' THEN ?5 ELSE sources.last_modified END,
			last_fetch = ?6, last_ok = ?6, last_error = '', last_new = 0, last_gone = 0`,
			meta.Name, meta.URL, meta.Format, meta.ETag, meta.LastModified, ms(meta.LastFetch)); err != nil {
			return false, err
		}
		// what it lists is seen again, but the tombstones among it (the
		// operator may have removed some since the last fetch)
		if _, err := tx.ExecContext(ctx, `UPDATE sources SET last_removed = (SELECT count(*) FROM upstream_sources x
			JOIN upstreams u ON u.id = x.upstream_id WHERE x.source = ?1 AND u.state = 'removed') WHERE name = ?1`, meta.Name); err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE sources SET last_seen = total - last_removed WHERE name = ?", meta.Name); err != nil {
			return false, err
		}
		_, err := tx.ExecContext(ctx, `UPDATE upstreams SET last_seen = ? WHERE id IN
			(SELECT upstream_id FROM upstream_sources WHERE source = ?)`, ms(now), meta.Name)
		return false, err
	})
	if err != nil {
		return fmt.Errorf("touching source %s: %w", meta.Name, err)
	}
	return nil
}

// RecordSourceError records a failed fetch: last_fetch and last_error
// change, the source's upstreams and its last good meta stay.
func (s *Store) RecordSourceError(ctx context.Context, meta upstream.SourceMeta, fetchErr error) error {
	if meta.LastFetch.IsZero() {
		meta.LastFetch = time.Now()
	}
	msg := "unknown error"
	if fetchErr != nil {
		msg = fetchErr.Error()
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO sources (name, url, format, last_fetch, last_error)
			VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO UPDATE SET url = ?2, format = ?3, last_fetch = ?4, last_error = ?5`,
			meta.Name, meta.URL, meta.Format, ms(meta.LastFetch), msg)
		return false, err
	})
	if err != nil {
		return fmt.Errorf("recording error of source %s: %w", meta.Name, err)
	}
	return nil
}

// Reputation is how useful a source has been.
type Reputation struct {
	Source         string  `json:"source"`
	Listed         int     `json:"listed"`          // upstreams it lists now
	EverHealthy    int     `json:"ever_healthy"`    // upstreams it listed that were healthy at least once (kept after they are pruned)
	HealthyNow     int     `json:"healthy_now"`     // servable upstreams it lists now
	HealthySeconds float64 `json:"healthy_seconds"` // cumulative time its upstreams spent healthy
}

// SourceReputation returns one row per source (fetched sources, and the
// "manual"/"tor" pseudo-sources that Add links), by name.
func (s *Store) SourceReputation(ctx context.Context) ([]Reputation, error) {
	now := ms(time.Now())
	rows, err := s.rdb.QueryContext(ctx, `
WITH l AS (
	SELECT x.source AS source, count(*) AS listed,
		sum(`+servableInt+`) AS healthy_now,
		sum(CASE WHEN u.state = 'healthy' AND u.healthy_since > 0 AND ?1 > u.healthy_since THEN ?1 - u.healthy_since ELSE 0 END) AS open_ms
	FROM upstream_sources x JOIN upstreams u ON u.id = x.upstream_id GROUP BY x.source
), n AS (
	SELECT source AS name FROM l UNION SELECT source FROM source_stats UNION SELECT name FROM sources
)
SELECT n.name, coalesce(l.listed, 0), coalesce(st.ever_healthy, 0), coalesce(l.healthy_now, 0),
	coalesce(st.healthy_ms, 0) + coalesce(l.open_ms, 0)
FROM n LEFT JOIN l ON l.source = n.name LEFT JOIN source_stats st ON st.source = n.name ORDER BY n.name`, now)
	if err != nil {
		return nil, fmt.Errorf("reading source reputation: %w", err)
	}
	defer rows.Close()
	var out []Reputation
	for rows.Next() {
		var r Reputation
		var healthyMS int64
		if err := rows.Scan(&r.Source, &r.Listed, &r.EverHealthy, &r.HealthyNow, &healthyMS); err != nil {
			return nil, fmt.Errorf("reading source reputation: %w", err)
		}
		r.HealthySeconds = float64(healthyMS) / 1000
		out = append(out, r)
	}
	return out, rows.Err()
}
