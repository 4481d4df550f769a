package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// IsPostgres reports whether database names a PostgreSQL store (a
// postgres:// or postgresql:// URL) rather than a SQLite file.
func IsPostgres(database string) bool {
	return strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://")
}

// redactURL is u with its password replaced, for errors and Path.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	return p.Redacted()
}

// openPostgres opens the pool of connections the store uses on
// PostgreSQL. A read-only store's sessions default to read-only
// transactions, so the server refuses any write whatever the code does.
func openPostgres(ctx context.Context, dbURL string, readOnly bool, conns int) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("parsing the database URL: %w", err)
	}
	if readOnly {
		cfg.RuntimeParams["default_transaction_read_only"] = "on"
	}
	cfg.RuntimeParams["application_name"] = "proxypool"
	db := sql.OpenDB(&rebindConnector{c: stdlib.GetConnector(*cfg)})
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// rebindConnector hands out pgx connections that take the store's
// SQLite-flavoured statements: placeholders ? and ?N become $N and the few
// SQLite spellings the queries share with PostgreSQL under another name
// are renamed, once per distinct statement. Everything else in the SQL is
// common to both dialects, so the store keeps one set of queries.
type rebindConnector struct {
	c     driver.Connector
	cache sync.Map // statement → rebound statement
}

func (r *rebindConnector) Connect(ctx context.Context) (driver.Conn, error) {
	c, err := r.c.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &rebindConn{Conn: c, r: r}, nil
}

func (r *rebindConnector) Driver() driver.Driver { return r.c.Driver() }

func (r *rebindConnector) rebind(q string) string {
	if v, ok := r.cache.Load(q); ok {
		return v.(string)
	}
	out := rebind(q)
	r.cache.Store(q, out)
	return out
}

// pgNames are the SQLite spellings the store's queries use and what
// PostgreSQL calls the same thing. NOT INDEXED is a SQLite planner hint
// PostgreSQL does without.
var pgNames = strings.NewReplacer(
	"char(31)", "chr(31)",
	"group_concat(", "string_agg(",
	"json_each(", "json_array_elements_text(",
	" NOT INDEXED", "",
)

// rebind turns q's placeholders into PostgreSQL's: ?N into $N, each bare ?
// into the next $n. String literals are copied as they are.
func rebind(q string) string {
	q = pgNames.Replace(q)
	var b strings.Builder
	b.Grow(len(q) + 16)
	n, quoted := 0, false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'':
			quoted = !quoted
			b.WriteByte(c)
		case c == '?' && !quoted:
			j := i + 1
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			b.WriteByte('$')
			if j > i+1 {
				b.WriteString(q[i+1 : j])
				i = j - 1
			} else {
				n++
				b.WriteString(strconv.Itoa(n))
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// rebindConn is a pgx stdlib connection whose statements are rebound.
type rebindConn struct {
	driver.Conn
	r *rebindConnector
}

var errNoDriverSupport = errors.New("postgres driver lacks a database/sql interface the store needs")

func (c *rebindConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	p, ok := c.Conn.(driver.ConnPrepareContext)
	if !ok {
		return nil, errNoDriverSupport
	}
	return p.PrepareContext(ctx, c.r.rebind(q))
}

func (c *rebindConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	return e.ExecContext(ctx, c.r.rebind(q), args)
}

func (c *rebindConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	e, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	return e.QueryContext(ctx, c.r.rebind(q), args)
}

func (c *rebindConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	b, ok := c.Conn.(driver.ConnBeginTx)
	if !ok {
		return nil, errNoDriverSupport
	}
	return b.BeginTx(ctx, opts)
}

func (c *rebindConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *rebindConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *rebindConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *rebindConn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.Conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// openPG is Open for a PostgreSQL URL: one connection for the writer (the
// batching writer stays the one writer of this process; other processes
// write through their own), a few for reads.
func openPG(ctx context.Context, dbURL string, opts Options) (*Store, error) {
	name := redactURL(dbURL)
	wdb, err := openPostgres(ctx, dbURL, false, 1)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", name, err)
	}
	oneConn(wdb)
	if err := migratePG(ctx, wdb, name); err != nil {
		wdb.Close()
		return nil, err
	}
	return opened(ctx, &Store{path: name, pg: true, dbURL: dbURL, opts: opts, log: opts.Logger, wdb: wdb}, func() (*sql.DB, error) {
		return openPostgres(ctx, dbURL, false, 4)
	})
}

// openPGReadOnly is OpenReadOnly for a PostgreSQL URL: every session is
// read-only (default_transaction_read_only), and a database this build
// did not migrate is refused.
func openPGReadOnly(ctx context.Context, dbURL string) (*Store, error) {
	name := redactURL(dbURL)
	rdb, err := openPostgres(ctx, dbURL, true, 4)
	if err != nil {
		return nil, fmt.Errorf("opening store %s read-only: %w", name, err)
	}
	v, app, _, err := schemaInfoPG(ctx, rdb)
	if err == nil {
		err = schemaState(name, v, app)
	} else {
		err = fmt.Errorf("reading schema of %s: %w", name, err)
	}
	if err != nil {
		rdb.Close()
		return nil, err
	}
	opts := Options{}.withDefaults()
	return &Store{path: name, pg: true, opts: opts, log: opts.Logger, rdb: rdb}, nil
}

// pgSchemaTable holds, on PostgreSQL, what the SQLite header's
// application_id and user_version hold.
const pgSchemaTable = "proxypool_schema"

// pgMigrateLock is the advisory lock key migrations hold, so two
// processes opening a new database at once do not both migrate it.
const pgMigrateLock = applicationID

func schemaInfoPG(ctx context.Context, q queryer) (version, app, tables int, err error) {
	if err = q.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = current_schema()`).Scan(&tables); err != nil {
		return
	}
	var has bool
	if err = q.QueryRowContext(ctx, "SELECT to_regclass('"+pgSchemaTable+"') IS NOT NULL").Scan(&has); err != nil || !has {
		return
	}
	err = q.QueryRowContext(ctx, "SELECT app, version FROM "+pgSchemaTable).Scan(&app, &version)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	return
}

// migratePG applies the pending migrations in one transaction under an
// advisory lock.
func migratePG(ctx context.Context, db *sql.DB, name string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrating %s: %w", name, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", int64(pgMigrateLock)); err != nil {
		return fmt.Errorf("migrating %s: taking the migration lock: %w", name, err)
	}
	v, app, tables, err := schemaInfoPG(ctx, tx)
	if err != nil {
		return fmt.Errorf("migrating %s: %w", name, err)
	}
	if app == 0 && tables == 1 {
		tables = 0 // only the schema table, from a run that failed to migrate
	}
	if err := refuse(name, v, app, tables); err != nil {
		return err
	}
	if v == len(migrations) {
		return nil
	}
	if v == 0 {
		if _, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+pgSchemaTable+" (app BIGINT NOT NULL, version BIGINT NOT NULL)"); err != nil {
			return fmt.Errorf("migrating %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+pgSchemaTable+" (app, version) VALUES (?, 0)", int64(applicationID)); err != nil {
			return fmt.Errorf("migrating %s: %w", name, err)
		}
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i].postgres()); err != nil {
			return fmt.Errorf("migrating %s to version %d: %w", name, i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "UPDATE "+pgSchemaTable+" SET version = ?", len(migrations)); err != nil {
		return fmt.Errorf("migrating %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrating %s: %w", name, err)
	}
	return nil
}

// pgTypes turns a migration's SQLite DDL into PostgreSQL's: 64-bit
// integers (times are unix milliseconds), doubles, byte-order text
// collation (ids sort as they do in SQLite, whatever the database's
// locale), no WITHOUT ROWID.
var pgTypes = strings.NewReplacer(
	"INTEGER", "BIGINT",
	" REAL ", " DOUBLE PRECISION ",
	" TEXT ", ` TEXT COLLATE "C" `,
	") WITHOUT ROWID;", ");",
)
