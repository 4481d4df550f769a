package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// item is one entry of the writer's queue: a result, a write operation or
// a flush marker. One queue keeps them in submission order.
type item struct {
	res   upstream.CheckResult
	op    *op
	flush chan error
}

// op is one synchronous write: fn runs in its own transaction and reports
// whether it changed what the gateway serves.
type op struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *sql.Tx) (bump bool, err error)
	done chan error
}

type writer struct {
	s        *Store
	in       chan item
	quit     chan struct{}
	exited   chan struct{}
	notify   chan uint64
	notified chan struct{}
	once     sync.Once

	commits atomic.Uint64
	results atomic.Uint64
	ignored atomic.Uint64
}

// WriterStats count the writer's work since Open.
type WriterStats struct {
	Commits uint64 // write transactions committed (each one fsync of the WAL)
	Results uint64 // check results committed
	Ignored uint64 // results for ids not in the store or out of the pool (removed, retired)
	Queued  int    // entries waiting in the queue now
}

// WriterStats reports the writer's counters (zero for a read-only store).
func (s *Store) WriterStats() WriterStats {
	if s.w == nil {
		return WriterStats{}
	}
	return WriterStats{
		Commits: s.w.commits.Load(),
		Results: s.w.results.Load(),
		Ignored: s.w.ignored.Load(),
		Queued:  len(s.w.in),
	}
}

func newWriter(s *Store) *writer {
	w := &writer{
		s:        s,
		in:       make(chan item, min(max(4*s.opts.BatchSize, 1024), 16384)),
		quit:     make(chan struct{}),
		exited:   make(chan struct{}),
		notify:   make(chan uint64, 1),
		notified: make(chan struct{}),
	}
	go w.run()
	go w.notifier()
	return w
}

// Submit queues a check result for the batching writer. It blocks while
// the queue is full (backpressure). Results for unknown ids and for
// upstreams out of the pool (a check that ran while it was removed) are ignored;
// on a read-only or closed store Submit does nothing.
func (s *Store) Submit(r upstream.CheckResult) {
	if s.w == nil {
		return
	}
	if r.At.IsZero() {
		r.At = time.Now()
	}
	select {
	case s.w.in <- item{res: r}:
	case <-s.w.quit:
	}
}

// Flush waits until every result submitted before it is committed. It
// returns the first commit error since the previous Flush, if any.
func (s *Store) Flush(ctx context.Context) error {
	if s.w == nil {
		return ErrReadOnly
	}
	done := make(chan error, 1)
	select {
	case s.w.in <- item{flush: done}:
	case <-s.w.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-s.w.exited:
		select {
		case err := <-done:
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// write runs fn in its own transaction on the writer goroutine, after the
// results queued before it. The outcome is definite when write returns: a
// context cancelled before the transaction starts aborts it, one cancelled
// during it rolls it back.
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) (bool, error)) error {
	if s.w == nil {
		return ErrReadOnly
	}
	o := &op{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case s.w.in <- item{op: o}:
	case <-s.w.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-o.done:
		return err
	case <-s.w.exited:
		select {
		case err := <-o.done:
			return err
		default:
			return ErrClosed
		}
	}
}

func (w *writer) close() error {
	w.once.Do(func() { close(w.quit) })
	<-w.exited
	<-w.notified
	return nil
}

func (w *writer) run() {
	defer close(w.exited)
	defer close(w.notify)
	var (
		pending []upstream.CheckResult
		waiters []chan error
		errs    error // first commit error since the last flush
		armed   bool
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	commit := func() {
		if armed {
			timer.Stop()
			armed = false
		}
		if len(pending) > 0 {
			if err := w.commitResults(pending); err != nil && errs == nil {
				errs = err // the first one; later ones are logged
			}
			clear(pending)
			pending = pending[:0]
		}
		if len(waiters) > 0 {
			for _, c := range waiters {
				c <- errs
			}
			waiters, errs = waiters[:0], nil
		}
	}
	handle := func(it item) {
		switch {
		case it.op != nil:
			commit()
			it.op.done <- w.runOp(it.op)
		case it.flush != nil:
			waiters = append(waiters, it.flush)
			commit()
		default:
			pending = append(pending, it.res)
			if len(pending) >= w.s.opts.BatchSize {
				commit()
			} else if !armed {
				timer.Reset(w.s.opts.FlushInterval)
				armed = true
			}
		}
	}
	for {
		select {
		case it := <-w.in:
			handle(it)
		case <-timer.C:
			armed = false
			commit()
		case <-w.quit:
			for {
				select {
				case it := <-w.in:
					handle(it)
				default:
					commit()
					return
				}
			}
		}
	}
}

// notifier calls OnChange outside the writer goroutine; the one-slot
// channel coalesces bumps while OnChange runs.
func (w *writer) notifier() {
	defer close(w.notified)
	for v := range w.notify {
		if f := w.s.opts.OnChange; f != nil {
			f(v)
		}
	}
}

func (w *writer) signal(v uint64) {
	if w.s.opts.OnChange == nil {
		return
	}
	for {
		select {
		case w.notify <- v:
			return
		default:
		}
		select {
		case <-w.notify: // drop the stale version
		default:
		}
	}
}

func (w *writer) runOp(o *op) error {
	if err := o.ctx.Err(); err != nil {
		return err
	}
	tx, err := w.s.wdb.BeginTx(o.ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning write: %w", err)
	}
	bump, err := o.fn(o.ctx, tx)
	if err != nil {
		tx.Rollback()
		return err
	}
	var v uint64
	if bump {
		if v, err = bumpVersion(o.ctx, tx, w.s.pg); err != nil {
			tx.Rollback()
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing write: %w", err)
	}
	w.commits.Add(1)
	if bump {
		w.signal(v)
	}
	return nil
}

// bumpVersion marks a write that changes the pool. On PostgreSQL it also
// notifies PoolChannel in the same transaction, so gateways on other
// hosts hear of it exactly when the change becomes visible (a rollback
// sends nothing).
func bumpVersion(ctx context.Context, tx *sql.Tx, pg bool) (uint64, error) {
	var v uint64
	if err := tx.QueryRowContext(ctx, "UPDATE meta SET version = version + 1 WHERE id = 1 RETURNING version").Scan(&v); err != nil {
		return 0, fmt.Errorf("bumping version: %w", err)
	}
	if pg {
		if _, err := tx.ExecContext(ctx, "SELECT pg_notify(?, ?)", PoolChannel, strconv.FormatUint(v, 10)); err != nil {
			return 0, fmt.Errorf("notifying %s: %w", PoolChannel, err)
		}
	}
	return v, nil
}

const (
	sqlGetStatuses = `SELECT id, state, latency_ms, exit_ip, country, anonymity, untrusted, failures, checks, oks, score,
	last_check, last_ok, next_check, first_seen, last_seen, last_error, healthy_since, hist_seq, caps, last_cause,
	asn, org, class, ipv6
	FROM upstreams u WHERE id IN (SELECT value FROM json_each(?)) AND ` + inPool
	sqlPutStatus = `UPDATE upstreams SET state = ?, latency_ms = ?, exit_ip = ?, country = ?, anonymity = ?, untrusted = ?,
	failures = ?, checks = ?, oks = ?, score = ?, last_check = ?, last_ok = ?, next_check = ?, first_seen = ?,
	last_error = ?, healthy_since = ?, hist_seq = ?, caps = ?, last_cause = ?, asn = ?, org = ?, class = ?, ipv6 = ?
	WHERE id = ?`
	sqlRetype = `UPDATE upstreams SET type = ?1, options = json_set(json_remove(options, '$.discover'), '$.type', ?1)
	WHERE id = ?2 AND json_extract(options, '$.discover')`
	// sqlRetypePG is sqlRetype in PostgreSQL's JSON functions.
	sqlRetypePG = `UPDATE upstreams SET type = ?1, options = ((options::jsonb - 'discover') || jsonb_build_object('type', ?1::text))::text
	WHERE id = ?2 AND coalesce((options::jsonb -> 'discover') = 'true'::jsonb, false)`
	sqlPutChecks = `INSERT INTO checks (upstream_id, slot, seq, at, ok, passive, err, connect_ms, ttfb_ms, total_ms,
	exit_ip, country, anonymity, untrusted, headers, cause) VALUES `
	sqlPutChecksConflict = ` ON CONFLICT (upstream_id, slot) DO UPDATE SET seq = excluded.seq, at = excluded.at, ok = excluded.ok,
	passive = excluded.passive, err = excluded.err, connect_ms = excluded.connect_ms, ttfb_ms = excluded.ttfb_ms,
	total_ms = excluded.total_ms, exit_ip = excluded.exit_ip, country = excluded.country, anonymity = excluded.anonymity,
	untrusted = excluded.untrusted, headers = excluded.headers, cause = excluded.cause`
	checkCols        = 16
	checksPerInsert  = 32 // rows per multi-row history INSERT
	sqlCreditHealthy = `INSERT INTO source_stats (source, healthy_ms) SELECT source, CAST(? AS BIGINT) FROM upstream_sources WHERE upstream_id = ?
	ON CONFLICT (source) DO UPDATE SET healthy_ms = source_stats.healthy_ms + excluded.healthy_ms`
	sqlCreditEver = `INSERT INTO source_stats (source, ever_healthy) SELECT source, 1 FROM upstream_sources WHERE upstream_id = ?
	ON CONFLICT (source) DO UPDATE SET ever_healthy = source_stats.ever_healthy + 1`
)

// current is one upstream's status while a batch is applied.
type current struct {
	id           string
	orig, st     upstream.Status
	healthySince int64
	histSeq      int64
}

// commitResults applies a batch of results in one transaction: one query
// reads every status, Policy.Apply folds the results in memory, then one
// UPDATE per upstream and multi-row INSERTs for the history.
func (w *writer) commitResults(batch []upstream.CheckResult) error {
	ctx := context.Background()
	tx, err := w.s.wdb.BeginTx(ctx, nil)
	if err != nil {
		w.s.log.WithError(err).WithField("results", len(batch)).Error("store: cannot begin result batch; results dropped")
		return fmt.Errorf("beginning result batch: %w", err)
	}
	defer tx.Rollback()
	cur, order, err := loadStatuses(ctx, tx, batch)
	if err != nil {
		w.s.log.WithError(err).WithField("results", len(batch)).Error("store: cannot read statuses; results dropped")
		return fmt.Errorf("reading statuses: %w", err)
	}
	hist := make([]any, 0, checkCols*len(batch))
	applied, ignored := 0, 0
	for _, r := range batch {
		c := cur[r.ID]
		if c == nil {
			ignored++
			continue
		}
		if err := w.applyResult(ctx, tx, c, r); err != nil {
			w.s.log.WithError(err).WithField("UPSTREAM_ID", r.ID).Warn("store: cannot record check result")
			continue
		}
		applied++
		hist = appendCheck(hist, c, r, w.s.opts.HistoryPerUpstream)
	}
	bump := false
	if len(order) > 0 {
		put, err := tx.PrepareContext(ctx, sqlPutStatus)
		if err != nil {
			return fmt.Errorf("preparing result batch: %w", err)
		}
		for _, c := range order {
			if c.histSeq == 0 && c.st == c.orig {
				continue
			}
			nu := c.st
			if _, err := put.ExecContext(ctx, string(nu.State), nu.LatencyMS, nu.ExitIP, nu.Country, string(nu.Anonymity),
				b2i(nu.Untrusted), nu.Failures, nu.Checks, nu.OKs, nu.Score, ms(nu.LastCheck), ms(nu.LastOK), ms(nu.NextCheck),
				ms(nu.FirstSeen), nu.LastError, c.healthySince, c.histSeq, int64(nu.Caps), nu.LastCause.String(),
				int64(nu.ASN), nu.Org, string(nu.Class), b2i(nu.IPv6), c.id); err != nil {
				return fmt.Errorf("updating status of %s: %w", c.id, err)
			}
			bump = bump || servedChange(c.orig, nu)
		}
	}
	if err := insertChecks(ctx, tx, lastPerSlot(hist)); err != nil {
		return err
	}
	for _, r := range batch {
		if r.Kind == "" || cur[r.ID] == nil {
			continue
		}
		// the probe found an untyped upstream's protocol: it is that kind
		// from now on, under the same id (the line read again is still it)
		retype := sqlRetype
		if w.s.pg {
			retype = sqlRetypePG
		}
		res, err := tx.ExecContext(ctx, retype, string(r.Kind), r.ID)
		if err != nil {
			return fmt.Errorf("recording the protocol of %s: %w", r.ID, err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			bump = true
		}
	}
	var v uint64
	if bump {
		if v, err = bumpVersion(ctx, tx, w.s.pg); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		w.s.log.WithError(err).WithField("results", len(batch)).Error("store: cannot commit result batch; results dropped")
		return fmt.Errorf("committing result batch: %w", err)
	}
	w.commits.Add(1)
	w.results.Add(uint64(applied))
	w.ignored.Add(uint64(ignored))
	if bump {
		w.signal(v)
	}
	return nil
}

// loadStatuses reads the status of every upstream the batch names, in one
// query. Ids not in the store are absent from the map.
func loadStatuses(ctx context.Context, tx *sql.Tx, batch []upstream.CheckResult) (map[string]*current, []*current, error) {
	seen := make(map[string]bool, len(batch))
	ids := make([]string, 0, len(batch))
	for _, r := range batch {
		if !seen[r.ID] {
			seen[r.ID] = true
			ids = append(ids, r.ID)
		}
	}
	arg, _ := json.Marshal(ids)
	rows, err := tx.QueryContext(ctx, sqlGetStatuses, string(arg))
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	cur := make(map[string]*current, len(ids))
	var order []*current
	for rows.Next() {
		var (
			c                                                 current
			st                                                = &c.orig
			state, anon                                       string
			lastCheck, lastOK, nextCheck, firstSeen, lastSeen int64
			caps                                              int64
			lastCause, class                                  string
			asn                                               int64
		)
		if err := rows.Scan(&c.id, &state, &st.LatencyMS, &st.ExitIP, &st.Country, &anon, &st.Untrusted,
			&st.Failures, &st.Checks, &st.OKs, &st.Score, &lastCheck, &lastOK, &nextCheck, &firstSeen, &lastSeen,
			&st.LastError, &c.healthySince, &c.histSeq, &caps, &lastCause, &asn, &st.Org, &class, &st.IPv6); err != nil {
			return nil, nil, err
		}
		st.ASN, st.Class = uint32(asn), upstream.Class(class)
		st.State, st.Anonymity, st.Caps, st.LastCause = upstream.State(state), upstream.Anonymity(anon), upstream.Caps(caps), causeOf(lastCause)
		st.LastCheck, st.LastOK, st.NextCheck = fromMS(lastCheck), fromMS(lastOK), fromMS(nextCheck)
		st.FirstSeen, st.LastSeen = fromMS(firstSeen), fromMS(lastSeen)
		c.st = c.orig
		cur[c.id] = &c
		order = append(order, &c)
	}
	return cur, order, rows.Err()
}

// applyResult folds r into c and keeps the sources' reputation: the first
// ok ever credits every listing source, and a healthy run that ends adds
// its length to them.
func (w *writer) applyResult(ctx context.Context, tx *sql.Tx, c *current, r upstream.CheckResult) error {
	old := c.st
	nu := w.s.opts.Policy.Apply(r.ID, old, r)
	at := ms(r.At)
	switch {
	case old.State != upstream.Healthy && nu.State == upstream.Healthy:
		c.healthySince = at
	case old.State == upstream.Healthy && nu.State != upstream.Healthy:
		if err := creditHealthy(ctx, tx, r.ID, c.healthySince, at); err != nil {
			return err
		}
		c.healthySince = 0
	}
	if old.OKs == 0 && nu.OKs > 0 {
		if _, err := tx.ExecContext(ctx, sqlCreditEver, r.ID); err != nil {
			return fmt.Errorf("crediting sources: %w", err)
		}
	}
	c.st = nu
	return nil
}

// appendCheck adds r's history row (slot = position in the ring) to args.
func appendCheck(args []any, c *current, r upstream.CheckResult, keep int) []any {
	headers := ""
	if len(r.Headers) > 0 {
		b, _ := json.Marshal(r.Headers)
		headers = string(b)
	}
	seq := c.histSeq
	c.histSeq++
	return append(args, r.ID, seq%int64(keep), seq, ms(r.At), b2i(r.OK), b2i(r.Passive), r.Detail, r.ConnectMS,
		r.TTFBMS, r.TotalMS, r.ExitIP, r.Country, string(r.Anonymity), b2i(r.Untrusted), headers, r.Cause.String())
}

// insertChecks writes history rows checksPerInsert at a time. Rows for
// one ring slot replace each other in order.
func insertChecks(ctx context.Context, tx *sql.Tx, args []any) error {
	full := valuesSQL(checksPerInsert)
	var stmt *sql.Stmt
	for len(args) > 0 {
		n := min(len(args)/checkCols, checksPerInsert)
		var err error
		if n == checksPerInsert {
			if stmt == nil {
				if stmt, err = tx.PrepareContext(ctx, full); err != nil {
					return fmt.Errorf("preparing history insert: %w", err)
				}
			}
			_, err = stmt.ExecContext(ctx, args[:n*checkCols]...)
		} else {
			_, err = tx.ExecContext(ctx, valuesSQL(n), args[:n*checkCols]...)
		}
		if err != nil {
			return fmt.Errorf("recording history: %w", err)
		}
		args = args[n*checkCols:]
	}
	return nil
}

func valuesSQL(rows int) string {
	row := "(?" + strings.Repeat(", ?", checkCols-1) + ")"
	return sqlPutChecks + row + strings.Repeat(", "+row, rows-1) + sqlPutChecksConflict
}

// lastPerSlot keeps, of history rows (checkCols values each) that share
// an upstream and ring slot, the last: one statement may not update a
// row twice on PostgreSQL, and the last is what replacing them in order
// would leave.
func lastPerSlot(args []any) []any {
	type key struct {
		id   any
		slot any
	}
	n := len(args) / checkCols
	seen := make(map[key]bool, n)
	keep := make([]bool, n)
	dup := false
	for i := n - 1; i >= 0; i-- {
		k := key{args[i*checkCols], args[i*checkCols+1]}
		if seen[k] {
			dup = true
			continue
		}
		seen[k], keep[i] = true, true
	}
	if !dup {
		return args
	}
	out := make([]any, 0, len(args))
	for i := range n {
		if keep[i] {
			out = append(out, args[i*checkCols:(i+1)*checkCols]...)
		}
	}
	return out
}

// creditHealthy adds a closed healthy run to every source listing id.
func creditHealthy(ctx context.Context, tx *sql.Tx, id string, since, until int64) error {
	if since <= 0 || until <= since {
		return nil
	}
	if _, err := tx.ExecContext(ctx, sqlCreditHealthy, until-since, id); err != nil {
		return fmt.Errorf("crediting healthy time: %w", err)
	}
	return nil
}

// servedChange reports whether going from a to b changes what the gateway
// serves: the upstream enters or leaves the servable set, or a served
// attribute of a servable upstream changes. Latency and score do not count.
func servedChange(a, b upstream.Status) bool {
	if a.Servable() != b.Servable() {
		return true
	}
	if !b.Servable() {
		return false
	}
	return a.ExitIP != b.ExitIP || a.Country != b.Country || a.Anonymity != b.Anonymity || a.Caps != b.Caps ||
		a.Quality != b.Quality
}
