package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// TargetResult and SpeedResult are upstream's: what internal/checks
// produces is stored as it comes.
type (
	TargetResult = upstream.TargetResult
	SpeedResult  = upstream.SpeedResult
)

// RecordTargets stores rs, replacing each upstream's previous result for
// the same target. The pool's version bumps when a result turns an
// upstream from failing (or unchecked) to passing or back, so groups and
// "-target-" requests that require the target follow within one check.
// Results for upstreams no longer in the store are dropped.
func (s *Store) RecordTargets(ctx context.Context, rs []TargetResult) error {
	if len(rs) == 0 {
		return nil
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		bump := false
		for _, r := range rs {
			var was sql.NullBool
			err := tx.QueryRowContext(ctx, "SELECT ok FROM target_results WHERE upstream_id = ? AND target = ?", r.ID, r.Target).Scan(&was)
			if err != nil && err != sql.ErrNoRows {
				return false, err
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO target_results (upstream_id, target, ok, detail, latency_ms, checked_at, expires_at)
				SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM upstreams WHERE id = ?)
				ON CONFLICT (upstream_id, target) DO UPDATE SET ok = excluded.ok, detail = excluded.detail,
				latency_ms = excluded.latency_ms, checked_at = excluded.checked_at, expires_at = excluded.expires_at`,
				r.ID, r.Target, b2i(r.OK), r.Detail, r.LatencyMS, ms(r.At), ms(r.Until), r.ID)
			if err != nil {
				return false, err
			}
			// A pass moves its expiry, which the snapshot holds; a
			// failure matters only where the upstream passed before.
			if n, _ := res.RowsAffected(); n > 0 && (r.OK || was.Valid && was.Bool) {
				bump = true
			}
		}
		return bump, nil
	})
	if err != nil {
		return fmt.Errorf("storing %d target results: %w", len(rs), err)
	}
	return nil
}

// RecordSpeeds stores rs, replacing each upstream's previous speed; the
// pool's version bumps, since the snapshot carries throughput.
func (s *Store) RecordSpeeds(ctx context.Context, rs []SpeedResult) error {
	if len(rs) == 0 {
		return nil
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		for _, r := range rs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO speed_results (upstream_id, down_bps, up_bps, bytes, checked_at)
				SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM upstreams WHERE id = ?)
				ON CONFLICT (upstream_id) DO UPDATE SET down_bps = excluded.down_bps, up_bps = excluded.up_bps,
				bytes = excluded.bytes, checked_at = excluded.checked_at`,
				r.ID, r.Down, r.Up, r.Bytes, ms(r.At), r.ID); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("storing %d speed results: %w", len(rs), err)
	}
	return nil
}

// TargetResults returns every stored target result, by upstream then
// target.
func (s *Store) TargetResults(ctx context.Context) ([]TargetResult, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT upstream_id, target, ok, detail, latency_ms, checked_at, expires_at
		FROM target_results ORDER BY upstream_id, target`)
	if err != nil {
		return nil, fmt.Errorf("reading target results: %w", err)
	}
	defer rows.Close()
	var out []TargetResult
	for rows.Next() {
		var r TargetResult
		var at, until int64
		if err := rows.Scan(&r.ID, &r.Target, &r.OK, &r.Detail, &r.LatencyMS, &at, &until); err != nil {
			return nil, fmt.Errorf("reading target results: %w", err)
		}
		r.At, r.Until = fromMS(at), fromMS(until)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading target results: %w", err)
	}
	return out, nil
}

// Speeds returns every stored speed result by upstream id.
func (s *Store) Speeds(ctx context.Context) (map[string]SpeedResult, error) {
	rows, err := s.rdb.QueryContext(ctx, "SELECT upstream_id, down_bps, up_bps, bytes, checked_at FROM speed_results")
	if err != nil {
		return nil, fmt.Errorf("reading speed results: %w", err)
	}
	defer rows.Close()
	out := map[string]SpeedResult{}
	for rows.Next() {
		var r SpeedResult
		var at int64
		if err := rows.Scan(&r.ID, &r.Down, &r.Up, &r.Bytes, &at); err != nil {
			return nil, fmt.Errorf("reading speed results: %w", err)
		}
		r.At = fromMS(at)
		out[r.ID] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading speed results: %w", err)
	}
	return out, nil
}

// TargetStat is one target across the pool: upstreams with a valid
// result, and how many of them pass.
type TargetStat struct {
	Checked, Passing int
}

// TargetStats counts each target's valid results at now.
func (s *Store) TargetStats(ctx context.Context, now time.Time) (map[string]TargetStat, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT target, count(*), sum(ok) FROM target_results
		WHERE expires_at > ? GROUP BY target`, ms(now))
	if err != nil {
		return nil, fmt.Errorf("counting target results: %w", err)
	}
	defer rows.Close()
	out := map[string]TargetStat{}
	for rows.Next() {
		var name string
		var st TargetStat
		if err := rows.Scan(&name, &st.Checked, &st.Passing); err != nil {
			return nil, fmt.Errorf("counting target results: %w", err)
		}
		out[name] = st
	}
	return out, rows.Err()
}

// addChecked fills each record's passed targets and throughput.
func (s *Store) addChecked(ctx context.Context, recs []upstream.Record) error {
	if len(recs) == 0 {
		return nil
	}
	ids := make([]string, len(recs))
	at := make(map[string]int, len(recs))
	for i := range recs {
		ids[i], at[recs[i].ID] = recs[i].ID, i
	}
	b, _ := json.Marshal(ids)
	rows, err := s.rdb.QueryContext(ctx, `SELECT upstream_id, target, expires_at FROM target_results
		WHERE upstream_id IN (SELECT value FROM json_each(?)) AND ok = 1 AND expires_at > ? ORDER BY upstream_id, target`, string(b), ms(time.Now()))
	if err != nil {
		return fmt.Errorf("reading passed targets: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, name string
		var until int64
		if err := rows.Scan(&id, &name, &until); err != nil {
			return fmt.Errorf("reading passed targets: %w", err)
		}
		r := &recs[at[id]]
		r.Targets = append(r.Targets, upstream.TargetPass{Name: name, Until: fromMS(until)})
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading passed targets: %w", err)
	}
	speeds, err := s.rdb.QueryContext(ctx, "SELECT upstream_id, down_bps FROM speed_results WHERE upstream_id IN (SELECT value FROM json_each(?))", string(b))
	if err != nil {
		return fmt.Errorf("reading speeds: %w", err)
	}
	defer speeds.Close()
	for speeds.Next() {
		var id string
		var bps float64
		if err := speeds.Scan(&id, &bps); err != nil {
			return fmt.Errorf("reading speeds: %w", err)
		}
		recs[at[id]].Throughput = bps
	}
	return speeds.Err()
}

// checkedServing is what the gateway's snapshot carries from the checks
// made through healthy upstreams: passed targets and throughput by id.
type checkedServing struct {
	targets map[string][]upstream.TargetPass
	speed   map[string]float64
}

// loadChecked reads the passing, unexpired target results and the
// speeds. Upstreams passing the same targets until the same times share
// one slice.
func (s *Store) loadChecked(ctx context.Context, now time.Time) (checkedServing, error) {
	c := checkedServing{targets: map[string][]upstream.TargetPass{}, speed: map[string]float64{}}
	rows, err := s.rdb.QueryContext(ctx, `SELECT upstream_id, target, expires_at FROM target_results
		WHERE ok = 1 AND expires_at > ? ORDER BY upstream_id, target`, ms(now))
	if err != nil {
		return c, fmt.Errorf("loading passed targets: %w", err)
	}
	defer rows.Close()
	shared := map[string][]upstream.TargetPass{}
	var key strings.Builder
	flush := func(id string, ts []upstream.TargetPass) {
		if id == "" {
			return
		}
		key.Reset()
		for _, t := range ts {
			fmt.Fprintf(&key, "%s\x1f%d\x1f", t.Name, t.Until.UnixMilli())
		}
		k := key.String()
		if set, ok := shared[k]; ok {
			ts = set
		} else {
			ts = slices.Clip(ts)
			shared[k] = ts
		}
		c.targets[id] = ts
	}
	var cur string
	var ts []upstream.TargetPass
	for rows.Next() {
		var id, name string
		var until int64
		if err := rows.Scan(&id, &name, &until); err != nil {
			return c, fmt.Errorf("loading passed targets: %w", err)
		}
		if id != cur {
			flush(cur, ts)
			cur, ts = id, nil
		}
		ts = append(ts, upstream.TargetPass{Name: name, Until: fromMS(until)})
	}
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("loading passed targets: %w", err)
	}
	flush(cur, ts)
	speeds, err := s.rdb.QueryContext(ctx, "SELECT upstream_id, down_bps FROM speed_results WHERE down_bps > 0")
	if err != nil {
		return c, fmt.Errorf("loading speeds: %w", err)
	}
	defer speeds.Close()
	for speeds.Next() {
		var id string
		var bps float64
		if err := speeds.Scan(&id, &bps); err != nil {
			return c, fmt.Errorf("loading speeds: %w", err)
		}
		c.speed[id] = bps
	}
	return c, speeds.Err()
}
