package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ProbeState is what the probe loop last reported, kept in the store so
// `proxypoolctl status` shows it from any process (D-Bus or --db).
type ProbeState struct {
	Paused bool
	Since  time.Time // when it last paused or resumed
	Reason string    // why it is paused
	// LastPass is the most recent pass, however small; LastFull the most
	// recent one over every upstream that is not dead.
	LastPass, LastFull Pass
}

// Pass is one finished pass of the probe.
type Pass struct {
	At      time.Time // when it ended
	Size    int       // upstreams checked
	Healthy int       // of them found healthy
	Took    time.Duration
}

// ProbeState returns the probe loop's state (zero before it ran).
func (s *Store) ProbeState(ctx context.Context) (ProbeState, error) {
	var (
		p                                     ProbeState
		since, lastAt, lastMS, fullAt, fullMS int64
	)
	err := s.rdb.QueryRowContext(ctx, `SELECT paused, since, reason, last_at, last_size, last_healthy, last_ms,
		full_at, full_size, full_healthy, full_ms FROM probe_state WHERE id = 1`).Scan(&p.Paused, &since, &p.Reason,
		&lastAt, &p.LastPass.Size, &p.LastPass.Healthy, &lastMS, &fullAt, &p.LastFull.Size, &p.LastFull.Healthy, &fullMS)
	if errors.Is(err, sql.ErrNoRows) {
		return ProbeState{}, nil
	}
	if err != nil {
		return ProbeState{}, fmt.Errorf("reading the probe's state: %w", err)
	}
	p.Since, p.LastPass.At, p.LastFull.At = fromMS(since), fromMS(lastAt), fromMS(fullAt)
	p.LastPass.Took, p.LastFull.Took = time.Duration(lastMS)*time.Millisecond, time.Duration(fullMS)*time.Millisecond
	return p, nil
}

// RecordPass stores a finished pass, also as the last full one when it
// checked at least as many upstreams as are not dead, and that the probe
// runs: a paused probe resumed with it.
func (s *Store) RecordPass(ctx context.Context, p Pass) error {
	at, took := ms(p.At), p.Took.Milliseconds()
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO probe_state (id, since) VALUES (1, ?1)
			ON CONFLICT (id) DO UPDATE SET since = CASE WHEN probe_state.paused <> 0 THEN ?1 ELSE probe_state.since END, paused = 0, reason = ''`, at); err != nil {
			return false, err
		}
		_, err := tx.ExecContext(ctx, `UPDATE probe_state SET last_at = ?1, last_size = ?2, last_healthy = ?3, last_ms = ?4,
			(full_at, full_size, full_healthy, full_ms) = (SELECT
				CASE WHEN whole THEN ?1 ELSE full_at END, CASE WHEN whole THEN ?2 ELSE full_size END,
				CASE WHEN whole THEN ?3 ELSE full_healthy END, CASE WHEN whole THEN ?4 ELSE full_ms END
				FROM (SELECT ?2 >= (SELECT count(*) FROM upstreams WHERE state != 'dead') AS whole) AS f)
			WHERE id = 1`, at, p.Size, p.Healthy, took)
		return false, err
	})
	if err != nil {
		return fmt.Errorf("recording a probe pass: %w", err)
	}
	return nil
}

// PauseProbe stores that the probe paused at `at` for reason; a probe
// already paused keeps the time it paused first.
func (s *Store) PauseProbe(ctx context.Context, at time.Time, reason string) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO probe_state (id, paused, since, reason) VALUES (1, 1, ?1, ?2)
			ON CONFLICT (id) DO UPDATE SET since = CASE WHEN probe_state.paused <> 0 THEN probe_state.since ELSE ?1 END, paused = 1, reason = ?2`, ms(at), reason)
		return false, err
	})
	if err != nil {
		return fmt.Errorf("recording that the probe paused: %w", err)
	}
	return nil
}
