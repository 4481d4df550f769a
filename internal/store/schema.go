package store

import (
	"context"
	"database/sql"
	"fmt"
)

// applicationID marks a proxypool database in the SQLite header ("PPL1").
const applicationID = 0x50504c31

// migration is one schema step: sql for SQLite, pg for PostgreSQL where
// the dialects differ beyond types (pgTypes derives the rest).
type migration struct{ sql, pg string }

func (m migration) postgres() string {
	if m.pg != "" {
		return m.pg
	}
	return pgTypes.Replace(m.sql)
}

// migrations are applied in order at Open; PRAGMA user_version (on
// PostgreSQL, the proxypool_schema table) holds how many have been
// applied. Never edit a released entry: append a new one.
var migrations = []migration{
	// 1: initial schema. Times are unix milliseconds, 0 meaning never.
	{sql: `
CREATE TABLE meta (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	version INTEGER NOT NULL DEFAULT 0,
	history INTEGER NOT NULL DEFAULT 0 -- check history kept per upstream, as last opened
);
INSERT INTO meta (id, version) VALUES (1, 0);

CREATE TABLE upstreams (
	id            TEXT PRIMARY KEY,
	type          TEXT NOT NULL,
	server        TEXT NOT NULL,
	port          INTEGER NOT NULL,
	name          TEXT NOT NULL DEFAULT '',
	grp           TEXT NOT NULL DEFAULT '',
	options       TEXT NOT NULL DEFAULT '{}',
	state         TEXT NOT NULL DEFAULT 'unknown',
	latency_ms    REAL NOT NULL DEFAULT 0,
	exit_ip       TEXT NOT NULL DEFAULT '',
	country       TEXT NOT NULL DEFAULT '',
	anonymity     TEXT NOT NULL DEFAULT '',
	untrusted     INTEGER NOT NULL DEFAULT 0,
	failures      INTEGER NOT NULL DEFAULT 0,
	checks        INTEGER NOT NULL DEFAULT 0,
	oks           INTEGER NOT NULL DEFAULT 0,
	score         REAL NOT NULL DEFAULT 0,
	last_check    INTEGER NOT NULL DEFAULT 0,
	last_ok       INTEGER NOT NULL DEFAULT 0,
	next_check    INTEGER NOT NULL DEFAULT 0,
	first_seen    INTEGER NOT NULL DEFAULT 0,
	last_seen     INTEGER NOT NULL DEFAULT 0,
	last_error    TEXT NOT NULL DEFAULT '',
	healthy_since INTEGER NOT NULL DEFAULT 0, -- start of the current healthy run
	hist_seq      INTEGER NOT NULL DEFAULT 0  -- results recorded so far (history ring position)
);
CREATE INDEX upstreams_next_check ON upstreams (next_check);
CREATE INDEX upstreams_state ON upstreams (state, score DESC);
CREATE INDEX upstreams_country ON upstreams (country);
CREATE INDEX upstreams_type ON upstreams (type);
CREATE INDEX upstreams_grp ON upstreams (grp);

CREATE TABLE sources (
	name          TEXT PRIMARY KEY,
	url           TEXT NOT NULL DEFAULT '',
	format        TEXT NOT NULL DEFAULT '',
	etag          TEXT NOT NULL DEFAULT '',
	last_modified TEXT NOT NULL DEFAULT '',
	last_fetch    INTEGER NOT NULL DEFAULT 0,
	last_ok       INTEGER NOT NULL DEFAULT 0,
	last_error    TEXT NOT NULL DEFAULT '',
	lines         INTEGER NOT NULL DEFAULT 0,
	ok            INTEGER NOT NULL DEFAULT 0,
	failed        INTEGER NOT NULL DEFAULT 0,
	total         INTEGER NOT NULL DEFAULT 0,
	gen           INTEGER NOT NULL DEFAULT 0 -- bumped by every UpsertSource
);

CREATE TABLE upstream_sources (
	upstream_id TEXT NOT NULL REFERENCES upstreams (id) ON DELETE CASCADE,
	source      TEXT NOT NULL,
	gen         INTEGER NOT NULL DEFAULT 0,
	first_seen  INTEGER NOT NULL DEFAULT 0,
	last_seen   INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (upstream_id, source)
) WITHOUT ROWID;
CREATE INDEX upstream_sources_source ON upstream_sources (source, gen);

CREATE TABLE source_stats (
	source       TEXT PRIMARY KEY,
	ever_healthy INTEGER NOT NULL DEFAULT 0,
	healthy_ms   INTEGER NOT NULL DEFAULT 0 -- closed healthy runs only
) WITHOUT ROWID;

CREATE TABLE checks (
	upstream_id TEXT NOT NULL REFERENCES upstreams (id) ON DELETE CASCADE,
	slot        INTEGER NOT NULL,
	seq         INTEGER NOT NULL,
	at          INTEGER NOT NULL,
	ok          INTEGER NOT NULL,
	passive     INTEGER NOT NULL,
	err         TEXT NOT NULL DEFAULT '',
	connect_ms  REAL NOT NULL DEFAULT 0,
	ttfb_ms     REAL NOT NULL DEFAULT 0,
	total_ms    REAL NOT NULL DEFAULT 0,
	exit_ip     TEXT NOT NULL DEFAULT '',
	country     TEXT NOT NULL DEFAULT '',
	anonymity   TEXT NOT NULL DEFAULT '',
	untrusted   INTEGER NOT NULL DEFAULT 0,
	headers     TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (upstream_id, slot)
) WITHOUT ROWID;

CREATE TABLE relays (
	fingerprint TEXT PRIMARY KEY,
	nickname    TEXT NOT NULL DEFAULT '',
	address     TEXT NOT NULL DEFAULT '',
	or_port     INTEGER NOT NULL DEFAULT 0,
	exit_addrs  TEXT NOT NULL DEFAULT '[]',
	country     TEXT NOT NULL DEFAULT '',
	flags       TEXT NOT NULL DEFAULT '[]',
	bandwidth   INTEGER NOT NULL DEFAULT 0,
	updated     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
`},
	// 2: settings the processes share (Setting, SetSetting): the tor
	// control password (and, until 4, the tor groups' budget and unused
	// slots).
	{sql: `
CREATE TABLE settings (
	key     TEXT PRIMARY KEY,
	value   TEXT NOT NULL,
	updated INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
`},
	// 3: what the last OK active check proved the upstream can do
	// (upstream.Caps: CONNECT, forwarding, a pipelined SOCKS5 handshake).
	{sql: `ALTER TABLE upstreams ADD COLUMN caps INTEGER NOT NULL DEFAULT 0;`},
	// 4: the tor groups' state (TorGroups), moved out of the JSON blobs
	// settings tor.budget and tor.unused so an upgrade keeps what the SLO
	// guard raised. A blob that is not a JSON object of integers is
	// dropped, not fatal: the budget restarts from the floors.
	{sql: `
CREATE TABLE tor_groups (
	grp     TEXT PRIMARY KEY,
	budget  INTEGER NOT NULL DEFAULT 0,
	unused  INTEGER NOT NULL DEFAULT 0,
	updated INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
INSERT INTO tor_groups (grp, budget)
	SELECT key, value FROM json_each((SELECT value FROM settings WHERE key = 'tor.budget' AND json_valid(value) AND json_type(value) = 'object'))
	WHERE type = 'integer';
INSERT INTO tor_groups (grp, unused)
	SELECT key, value FROM json_each((SELECT value FROM settings WHERE key = 'tor.unused' AND json_valid(value) AND json_type(value) = 'object'))
	WHERE type = 'integer'
	ON CONFLICT (grp) DO UPDATE SET unused = excluded.unused;
DELETE FROM settings WHERE key IN ('tor.budget', 'tor.unused');
`,
		// A PostgreSQL store starts after the blobs were gone: no build
		// that wrote them had that backend.
		pg: `
CREATE TABLE tor_groups (
	grp     TEXT COLLATE "C" PRIMARY KEY,
	budget  BIGINT NOT NULL DEFAULT 0,
	unused  BIGINT NOT NULL DEFAULT 0,
	updated BIGINT NOT NULL DEFAULT 0
);
DELETE FROM settings WHERE key IN ('tor.budget', 'tor.unused');
`},
	// 5: the typed cause of the last failure (upstream.Cause's name),
	// beside last_error / err, which now hold its detail. Rows from
	// before keep '' here and their old free text there.
	{sql: `ALTER TABLE upstreams ADD COLUMN last_cause TEXT NOT NULL DEFAULT '';
ALTER TABLE checks ADD COLUMN cause TEXT NOT NULL DEFAULT '';`},
	// 6: the probe loop's state (ProbeState), one row, so status reads
	// it from any process: paused or running since when, the last pass
	// and the last full one.
	{sql: `
CREATE TABLE probe_state (
	id           INTEGER PRIMARY KEY CHECK (id = 1),
	paused       INTEGER NOT NULL DEFAULT 0,
	since        INTEGER NOT NULL DEFAULT 0,
	reason       TEXT NOT NULL DEFAULT '',
	last_at      INTEGER NOT NULL DEFAULT 0,
	last_size    INTEGER NOT NULL DEFAULT 0,
	last_healthy INTEGER NOT NULL DEFAULT 0,
	last_ms      INTEGER NOT NULL DEFAULT 0,
	full_at      INTEGER NOT NULL DEFAULT 0,
	full_size    INTEGER NOT NULL DEFAULT 0,
	full_healthy INTEGER NOT NULL DEFAULT 0,
	full_ms      INTEGER NOT NULL DEFAULT 0
);`},
	// 7: each tor group's part of tor.max-instances in the last plan
	// (planned) and how many of its share it went without (short), for
	// status and metrics: a starved group has no instance to show.
	{sql: `ALTER TABLE tor_groups ADD COLUMN planned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tor_groups ADD COLUMN short INTEGER NOT NULL DEFAULT 0;`},
	// 8: what each source's last fetch changed (new, seen again, gone),
	// for refresh --wait and status in any process.
	{sql: `ALTER TABLE sources ADD COLUMN last_new INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sources ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sources ADD COLUMN last_gone INTEGER NOT NULL DEFAULT 0;`},
	// 9: the usable exits discovery found for each tor group (metrics:
	// exits available, not only the ones instances use).
	{sql: `ALTER TABLE tor_groups ADD COLUMN usable INTEGER NOT NULL DEFAULT 0;`},
	// 10: tombstones and retirement (states 'removed' and 'retired'):
	// when the upstream left the pool and who removed it; and how many
	// of each source's last fetch were removed by the operator.
	{sql: `ALTER TABLE upstreams ADD COLUMN removed_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE upstreams ADD COLUMN removed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE sources ADD COLUMN last_removed INTEGER NOT NULL DEFAULT 0;`},
	// 11: the checks made through healthy upstreams (internal/checks):
	// each named target's last result per upstream, valid until
	// expires_at, and the last speed check's rates (bytes/s).
	{sql: `
CREATE TABLE target_results (
	upstream_id TEXT NOT NULL REFERENCES upstreams (id) ON DELETE CASCADE,
	target      TEXT NOT NULL,
	ok          INTEGER NOT NULL DEFAULT 0,
	detail      TEXT NOT NULL DEFAULT '',
	latency_ms  REAL NOT NULL DEFAULT 0,
	checked_at  INTEGER NOT NULL DEFAULT 0,
	expires_at  INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (upstream_id, target)
) WITHOUT ROWID;
CREATE TABLE speed_results (
	upstream_id TEXT PRIMARY KEY REFERENCES upstreams (id) ON DELETE CASCADE,
	down_bps    REAL NOT NULL DEFAULT 0,
	up_bps      REAL NOT NULL DEFAULT 0,
	bytes       INTEGER NOT NULL DEFAULT 0,
	checked_at  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;`},
	// 12: the exit's quality (upstream.Quality): its AS number and
	// organisation from the ASN database, the class they give, and
	// whether the upstream reached the IPv6 judge.
	{sql: `ALTER TABLE upstreams ADD COLUMN asn INTEGER NOT NULL DEFAULT 0;
ALTER TABLE upstreams ADD COLUMN org TEXT NOT NULL DEFAULT '';
ALTER TABLE upstreams ADD COLUMN class TEXT NOT NULL DEFAULT '';
ALTER TABLE upstreams ADD COLUMN ipv6 INTEGER NOT NULL DEFAULT 0;`},
}

// SchemaVersion is the schema version this build writes and reads.
func SchemaVersion() int { return len(migrations) }

// migrate applies the pending migrations in one immediate transaction, so
// two processes opening a new file at once do not both migrate it.
func migrate(ctx context.Context, db *sql.DB, path string) error {
	tx, err := db.BeginTx(ctx, nil) // _txlock=immediate
	if err != nil {
		return fmt.Errorf("migrating %s: %w", path, err)
	}
	defer tx.Rollback()
	v, app, tables, err := schemaInfo(ctx, tx)
	if err != nil {
		return fmt.Errorf("migrating %s: %w", path, err)
	}
	if err := refuse(path, v, app, tables); err != nil {
		return err
	}
	if v == len(migrations) {
		return nil
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i].sql); err != nil {
			return fmt.Errorf("migrating %s to version %d: %w", path, i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA application_id = %d; PRAGMA user_version = %d", applicationID, len(migrations))); err != nil {
		return fmt.Errorf("migrating %s: %w", path, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrating %s: %w", path, err)
	}
	return nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func schemaInfo(ctx context.Context, q queryer) (version, app, tables int, err error) {
	if err = q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return
	}
	if err = q.QueryRowContext(ctx, "PRAGMA application_id").Scan(&app); err != nil {
		return
	}
	err = q.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'").Scan(&tables)
	return
}

// precheck refuses, without writing, a file migrate must not touch.
func precheck(ctx context.Context, db *sql.DB, path string) error {
	v, app, tables, err := schemaInfo(ctx, db)
	if err != nil {
		return fmt.Errorf("opening store %s: %w", path, err)
	}
	return refuse(path, v, app, tables)
}

func refuse(path string, v, app, tables int) error {
	switch {
	case app != 0 && app != applicationID:
		return fmt.Errorf("opening store %s: not a proxypool database (application_id %#x)", path, app)
	case v == 0 && tables > 0:
		return fmt.Errorf("opening store %s: not a proxypool database (has %d tables but no schema version)", path, tables)
	case v > len(migrations):
		return fmt.Errorf("opening store %s: schema version %d is newer than this program knows (%d); upgrade proxypool", path, v, len(migrations))
	}
	return nil
}

// checkSchema is OpenReadOnly's guard: it never changes the file.
func checkSchema(ctx context.Context, db *sql.DB, path string) error {
	v, app, _, err := schemaInfo(ctx, db)
	if err != nil {
		return fmt.Errorf("reading schema of %s: %w", path, err)
	}
	return schemaState(path, v, app)
}

// schemaState is the read-only guard on a schema version and
// application id read from either backend.
func schemaState(path string, v, app int) error {
	switch {
	case app != applicationID || v == 0:
		return fmt.Errorf("%s is not a proxypool database (or was never opened by proxypoold)", path)
	case v > len(migrations):
		return fmt.Errorf("%s has schema version %d, newer than this program knows (%d); upgrade proxypool", path, v, len(migrations))
	case v < len(migrations):
		return fmt.Errorf("%s has schema version %d, older than this program's %d; start proxypoold once to migrate it", path, v, len(migrations))
	}
	return nil
}
