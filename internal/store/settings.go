package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Setting returns the value stored under key and whether there is one.
// Settings are small values the processes share through the store (the
// SLO guard's tor budget, torgen's unused slots, the tor control password);
// they never change the pool version.
func (s *Store) Setting(ctx context.Context, key string) (string, bool, error) {
	var v string
	err := s.rdb.QueryRowContext(ctx, "SELECT value FROM settings WHERE key = ?", key).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("reading setting %s: %w", key, err)
	}
	return v, true, nil
}

// SetSetting stores value under key (replacing any), durably when it
// returns.
func (s *Store) SetSetting(ctx context.Context, key, value string) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value, updated) VALUES (?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated`, key, value, ms(time.Now()))
		return false, err
	})
	if err != nil {
		return fmt.Errorf("storing setting %s: %w", key, err)
	}
	return nil
}

// SetSettingIfAbsent stores value under key unless key already has one,
// and returns the value key holds afterwards (two processes racing to
// create a secret agree on one).
func (s *Store) SetSettingIfAbsent(ctx context.Context, key, value string) (string, error) {
	var got string
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value, updated) VALUES (?, ?, ?)
			ON CONFLICT (key) DO NOTHING`, key, value, ms(time.Now())); err != nil {
			return false, err
		}
		return false, tx.QueryRowContext(ctx, "SELECT value FROM settings WHERE key = ?", key).Scan(&got)
	})
	if err != nil {
		return "", fmt.Errorf("storing setting %s: %w", key, err)
	}
	return got, nil
}
