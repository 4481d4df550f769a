package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// PoolChannel is the PostgreSQL notification channel every write that
// changes the pool (a version bump) is announced on, its payload the new
// version.
const PoolChannel = "proxypool_pool_changed"

// ListenAppName is the application_name of a listener's connection, so an
// operator (and a test) finds it in pg_stat_activity.
const ListenAppName = "proxypool-listen"

// ErrNotPostgres is returned by what only a PostgreSQL store can do.
var ErrNotPostgres = errors.New("the store is not on PostgreSQL")

// Listener backoff and liveness: a broken connection is retried after
// 100 ms, doubling to 10 s; an idle one is pinged every 30 s, since a
// peer that vanished (host down, no RST) would leave the wait blocked.
const (
	listenMinBackoff = 100 * time.Millisecond
	listenMaxBackoff = 10 * time.Second
	listenPingEvery  = 30 * time.Second
)

// IsPostgres reports whether the store is on PostgreSQL.
func (s *Store) IsPostgres() bool { return s.pg }

// ListenPoolChanged calls changed whenever a write that changes the pool
// commits, in any process on the database, until ctx ends (then it
// returns nil). It holds one connection of its own LISTENing on
// PoolChannel; when that breaks it reconnects with backoff and calls
// changed once it listens again, since notifications sent while it was
// away are lost. changed must not block: a send to a buffered channel,
// whose reader coalesces a burst.
func (s *Store) ListenPoolChanged(ctx context.Context, changed func()) error {
	if !s.pg || s.dbURL == "" {
		return fmt.Errorf("listening for pool changes on %s: %w", s.path, ErrNotPostgres)
	}
	cfg, err := pgx.ParseConfig(s.dbURL)
	if err != nil {
		return fmt.Errorf("listening for pool changes: parsing the database URL: %w", err)
	}
	cfg.RuntimeParams["application_name"] = ListenAppName
	backoff := listenMinBackoff
	for {
		listened, err := listenOnce(ctx, cfg, changed)
		if ctx.Err() != nil {
			return nil
		}
		if listened {
			backoff = listenMinBackoff
		}
		s.log.WithError(err).Warnf("listening for pool changes on %s: reconnecting in %s", s.path, backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, listenMaxBackoff)
	}
}

// listenOnce is one connection's life: connect, LISTEN, report a change
// (whatever was announced before LISTEN took effect), then one per
// notification. listened says LISTEN took effect.
func listenOnce(ctx context.Context, cfg *pgx.ConnConfig, changed func()) (listened bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connecting: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+PoolChannel); err != nil {
		return false, fmt.Errorf("LISTEN %s: %w", PoolChannel, err)
	}
	changed()
	for {
		wctx, cancel := context.WithTimeout(ctx, listenPingEvery)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			changed()
		case ctx.Err() != nil:
			return true, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			// idle: the connection must still answer
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return true, fmt.Errorf("pinging the idle listener: %w", err)
			}
		default:
			return true, fmt.Errorf("waiting for a notification: %w", err)
		}
	}
}
