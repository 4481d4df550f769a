package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/upstream"
)

// Errors callers test with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrReadOnly = errors.New("store is read-only")
	ErrClosed   = errors.New("store is closed")
)

// Options tune a writable store. Zero values take the defaults.
type Options struct {
	Logger logrus.FieldLogger
	// Policy is the life-cycle: the writer applies Policy.Apply to each
	// CheckResult inside its transaction.
	Policy             upstream.Policy
	BatchSize          int           // results per transaction at most (default 512)
	FlushInterval      time.Duration // longest a submitted result waits (default 100ms)
	HistoryPerUpstream int           // check history kept per upstream (default 32)
	// OnChange is called after a commit that bumped the version, from its
	// own goroutine (never inside a transaction). Bumps that happen while it
	// runs are coalesced: it sees the latest version.
	OnChange func(version uint64)
	// BusyTimeout is how long a statement waits for another process's
	// lock (default 10s).
	BusyTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		l := logrus.New()
		l.Out = io.Discard
		o.Logger = l
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 512
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 100 * time.Millisecond
	}
	if o.HistoryPerUpstream <= 0 {
		o.HistoryPerUpstream = 32
	}
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = 10 * time.Second
	}
	o.Policy = o.Policy.WithDefaults()
	return o
}

// Store is a proxypool database. Its methods are safe for concurrent use.
type Store struct {
	path string
	pg   bool // PostgreSQL rather than a SQLite file
	// dbURL is the PostgreSQL URL as given (password included), for the
	// connections that live outside the pools: the LISTENer's.
	dbURL string
	opts  Options
	log   logrus.FieldLogger
	rdb   *sql.DB // read pool (mode=ro)
	wdb   *sql.DB // the writer's single connection; nil when read-only
	w     *writer // nil when read-only

	// optsCache keeps the decoded Options of the last Healthy snapshot by
	// id, so a reload decodes only upstreams whose options text changed.
	optsMu    sync.Mutex
	optsCache map[string]cachedOptions
}

type cachedOptions struct {
	raw string
	m   map[string]any
}

// Open opens (creating if needed) the database at path and migrates it.
// The parent directory must exist.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if IsPostgres(path) {
		return openPG(ctx, path, opts)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	st, err := os.Stat(filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("opening store %s: %s is not a directory", path, filepath.Dir(abs))
	}
	if err := securePerms(abs, st); err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	wdb := sql.OpenDB(connector(dsn(abs, false, opts.BusyTimeout), writerCacheKiB))
	oneConn(wdb)
	fail := func(err error) (*Store, error) {
		wdb.Close()
		return nil, err
	}
	// Refuse a foreign or newer file before switching it to WAL, which
	// would rewrite its header.
	if err := precheck(ctx, wdb, path); err != nil {
		return fail(err)
	}
	var mode string
	if err := wdb.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		return fail(fmt.Errorf("opening store %s: %w", path, err))
	}
	if mode != "wal" {
		return fail(fmt.Errorf("opening store %s: journal mode is %q, want wal (is the file on a filesystem without shared memory?)", path, mode))
	}
	if err := migrate(ctx, wdb, path); err != nil {
		return fail(err)
	}
	return opened(ctx, &Store{path: path, opts: opts, log: opts.Logger, wdb: wdb}, func() (*sql.DB, error) {
		return openReader(ctx, abs, opts.BusyTimeout, false)
	})
}

// oneConn makes db the writer's single, never recycled connection.
func oneConn(db *sql.DB) {
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
}

// opened finishes a writable Open on either backend once s.wdb is
// migrated: the history size, the readers (reader opens them), the
// writer. On error it closes s.wdb.
func opened(ctx context.Context, s *Store, reader func() (*sql.DB, error)) (*Store, error) {
	err := resizeHistory(ctx, s.wdb, s.opts.HistoryPerUpstream)
	if err != nil {
		err = fmt.Errorf("opening store %s: %w", s.path, err)
	} else if s.rdb, err = reader(); err != nil {
		err = fmt.Errorf("opening store %s for reading: %w", s.path, err)
	}
	if err != nil {
		s.wdb.Close()
		return nil, err
	}
	s.w = newWriter(s)
	return s, nil
}

// OpenReadOnly opens an existing database for reading only. It creates,
// migrates and writes nothing, works while a daemon writes, and refuses a
// file that does not exist or whose schema differs from this build's.
func OpenReadOnly(ctx context.Context, path string) (*Store, error) {
	if IsPostgres(path) {
		return openPGReadOnly(ctx, path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("opening store %s read-only: %w", path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("opening store %s read-only: %w (has proxypoold run with this database?)", path, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("opening store %s read-only: %w", path, err)
	}
	opts := Options{}.withDefaults()
	rdb, err := openReader(ctx, abs, opts.BusyTimeout, false)
	if err != nil {
		// A WAL database needs its -shm file; when it does not exist and
		// cannot be created (no write access to the directory) and no
		// writer has a -wal open, the file is quiescent: read it as
		// immutable.
		if _, werr := os.Stat(abs + "-wal"); errors.Is(werr, fs.ErrNotExist) {
			var err2 error
			if rdb, err2 = openReader(ctx, abs, opts.BusyTimeout, true); err2 != nil {
				return nil, fmt.Errorf("opening store %s read-only: %w", path, err)
			}
		} else {
			return nil, fmt.Errorf("opening store %s read-only: %w", path, err)
		}
	}
	if err := checkSchema(ctx, rdb, path); err != nil {
		rdb.Close()
		return nil, err
	}
	return &Store{path: path, opts: opts, log: opts.Logger, rdb: rdb}, nil
}

// resizeHistory trims the history rings when HistoryPerUpstream shrank
// since the last Open (a full scan, so only then).
func resizeHistory(ctx context.Context, db *sql.DB, keep int) error {
	var was int
	if err := db.QueryRowContext(ctx, "SELECT history FROM meta WHERE id = 1").Scan(&was); err != nil {
		return fmt.Errorf("reading history size: %w", err)
	}
	if was == keep {
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("resizing history: %w", err)
	}
	defer tx.Rollback()
	if was > keep {
		if _, err := tx.ExecContext(ctx, "DELETE FROM checks WHERE slot >= ?", keep); err != nil {
			return fmt.Errorf("trimming history: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, "UPDATE meta SET history = ? WHERE id = 1", keep); err != nil {
		return fmt.Errorf("resizing history: %w", err)
	}
	return tx.Commit()
}

func openReader(ctx context.Context, abs string, busy time.Duration, immutable bool) (*sql.DB, error) {
	d := dsn(abs, true, busy)
	if immutable {
		d += "&immutable=1"
	}
	db := sql.OpenDB(connector(d, readerCacheKiB))
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Page cache per connection, and the memory map every connection reads
// through (address space, not private memory): a 100k-upstream database
// is ~50 MB, and reading it page by page through read(2) with SQLite's
// default 2 MB cache costs more than the queries.
const (
	writerCacheKiB = 32 << 10
	readerCacheKiB = 16 << 10
	mmapBytes      = 1 << 30
)

// connector opens go-sqlite3 connections for dsn and sizes their cache
// and memory map; no driver is registered globally.
func connector(dsn string, cacheKiB int) driver.Connector {
	return &sqliteConnector{dsn: dsn, drv: &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			_, err := c.Exec(fmt.Sprintf("PRAGMA cache_size = -%d; PRAGMA mmap_size = %d", cacheKiB, mmapBytes), nil)
			return err
		},
	}}
}

type sqliteConnector struct {
	dsn string
	drv *sqlite3.SQLiteDriver
}

func (c *sqliteConnector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c *sqliteConnector) Driver() driver.Driver                        { return c.drv }

// dsn builds a go-sqlite3 URI filename. Writers get WAL, FULL sync (a
// commit is durable once acknowledged; batching keeps the fsyncs few) and
// immediate transactions (no lock upgrade deadlocks between processes).
func dsn(abs string, readOnly bool, busy time.Duration) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(abs)
	q := fmt.Sprintf("_foreign_keys=1&_busy_timeout=%d&_stmt_cache_size=32", busy.Milliseconds())
	if readOnly {
		return "file:" + esc + "?mode=ro&_query_only=1&" + q
	}
	return "file:" + esc + "?mode=rwc&_synchronous=FULL&_txlock=immediate&" + q
}

// Path is the file the store was opened from.
func (s *Store) Path() string { return s.path }

// ReadOnly reports whether the store was opened with OpenReadOnly.
func (s *Store) ReadOnly() bool { return s.w == nil }

// Close flushes pending results, stops the writer and closes the database.
func (s *Store) Close() error {
	var errs []error
	if s.w != nil {
		if err := s.w.close(); err != nil {
			errs = append(errs, err)
		}
		if !s.pg {
			if _, err := s.wdb.Exec("PRAGMA optimize"); err != nil {
				errs = append(errs, fmt.Errorf("optimizing: %w", err))
			}
		}
	}
	if err := s.rdb.Close(); err != nil {
		errs = append(errs, err)
	}
	if s.wdb != nil {
		if err := s.wdb.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing store %s: %w", s.path, err)
	}
	return nil
}

// ms converts a time to unix milliseconds, the zero time to 0.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMS is ms's inverse.
func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

// causeOf reads a stored cause name. A name this build does not know (a
// newer build wrote it) reads as CauseOther rather than failing the
// whole read: the row's detail text still says what happened.
func causeOf(s string) upstream.Cause {
	c, err := upstream.ParseCause(s)
	if err != nil {
		return upstream.CauseOther
	}
	return c
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
