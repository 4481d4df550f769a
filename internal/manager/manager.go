package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/parse"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/upstream"
)

// ManualSource is the source name upstreams added by Add and Import are
// listed under (never retired; removing one deletes it).
const ManualSource = store.Manual

// Store is the part of *store.Store the manager uses. A read-only store
// serves List, Status and Export; its writing methods fail.
type Store interface {
	List(ctx context.Context, f store.Filter) ([]upstream.Record, error)
	Counts(ctx context.Context) (store.Counts, error)
	Version(ctx context.Context) (uint64, error)
	Healthy(ctx context.Context) ([]upstream.Record, error)
	SourceReputation(ctx context.Context) ([]store.Reputation, error)
	TargetStats(ctx context.Context, now time.Time) (map[string]store.TargetStat, error)
	Add(ctx context.Context, source string, ups ...upstream.Upstream) (int, error)
	Remove(ctx context.Context, by string, ids ...string) (int, error)
	Restore(ctx context.Context, adopt string, ids ...string) (int, error)
	Reschedule(ctx context.Context, ids []string, at time.Time) error
	ProbeState(ctx context.Context) (store.ProbeState, error)
	Sources(ctx context.Context) ([]upstream.SourceMeta, error)
	Reloads(ctx context.Context) ([]store.Reload, error)
}

// Checker wakes the probe so that upstreams made due now are checked at
// once. The daemon's probe loop has it.
type Checker interface {
	Trigger()
}

// Refresher fetches every source once. progress is called with the sources
// done and their total; Refresh returns when all are done.
type Refresher interface {
	Refresh(ctx context.Context, progress func(done, total int)) error
}

// Tor is the Tor instances the daemon manages.
type Tor interface {
	Status(ctx context.Context) ([]control.TorInstance, error)
	Newnym(ctx context.Context, port int) error
	// Generate runs torgen once, reporting its steps.
	Generate(ctx context.Context, progress func(done, total int)) error
}

// Options wire a Manager. Only Store is required.
type Options struct {
	Store     Store
	Checker   Checker   // nil: Check fails (no probe in this process)
	Refresher Refresher // nil: Refresh fails
	Tor       Tor       // nil: the tor methods say Tor is not enabled
	// Emit receives every Progress signal (control.Server.Progress). Nil
	// discards. It must not block for long.
	Emit func(control.Progress)
	// Floors and Gateway, when set, add the SLO guard's floors and the
	// gateway's figures to Status.
	Floors func() []control.GroupFloor
	// Groups are the config groups by name: list --group G selects a
	// config group's members as the pool counts them, an explicit group
	// (a tor group) otherwise.
	Groups  map[string]store.Members
	Gateway func() *control.GatewayStatus
	// JobTimeout bounds every job (default 10 minutes); CheckPoll is how
	// often a check of given ids looks at the store (default 250ms).
	JobTimeout time.Duration
	CheckPoll  time.Duration
	Log        logrus.FieldLogger
	Now        func() time.Time
	// Trusted gives every caller the upstreams' credentials in List and
	// Export (proxypoolctl --db: whoever opened the store file could read
	// them there). Otherwise only a privileged control.Caller gets them.
	Trusted bool
}

// Manager implements control.Manager. Its methods are safe for concurrent
// use.
type Manager struct {
	o      Options
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	boot   string

	mu      sync.Mutex
	seq     int
	running map[string]*job // kind-wide singletons: "refresh", "torgen", "check-all"
	checks  map[string]*job // every running check job by id
	probe   probeState
	totals  map[totalKey]cachedTotal
}

var _ control.Manager = (*Manager)(nil)

// probeState is what the probe loop last reported.
type probeState struct {
	done, total int
	running     bool
	lastPass    time.Time
}

// New returns a Manager. Close stops its jobs.
func New(o Options) *Manager {
	if o.JobTimeout <= 0 {
		o.JobTimeout = 10 * time.Minute
	}
	if o.CheckPoll <= 0 {
		o.CheckPoll = 250 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Log = l
	}
	if o.Emit == nil {
		o.Emit = func(control.Progress) {}
	}
	m := &Manager{o: o, running: map[string]*job{}, checks: map[string]*job{}, totals: map[totalKey]cachedTotal{}}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	// Job ids carry a per-start tag so that ids of a restarted daemon differ.
	m.boot = fmt.Sprintf("%04x", uint16(o.Now().UnixNano()>>10))
	return m
}

// Close cancels running jobs and waits for them.
func (m *Manager) Close() error {
	m.cancel()
	m.wg.Wait()
	return nil
}

// Counts are the pool counts for the D-Bus properties.
func (m *Manager) Counts(ctx context.Context) (control.Counts, error) {
	c, err := m.o.Store.Counts(ctx)
	if err != nil {
		return control.Counts{}, err
	}
	v, err := m.o.Store.Version(ctx)
	if err != nil {
		return control.Counts{}, err
	}
	u := func(n int) uint32 { return uint32(max(n, 0)) }
	return control.Counts{
		Version: v, Total: u(c.Total), Healthy: u(c.Healthy),
		Failing: u(c.ByState[string(upstream.Failing)]), Dead: u(c.ByState[string(upstream.Dead)]),
		Unknown: u(c.ByState[string(upstream.Unknown)]),
	}, nil
}

// Status answers proxypoolctl status.
func (m *Manager) Status(ctx context.Context) (control.Status, error) {
	c, err := m.o.Store.Counts(ctx)
	if err != nil {
		return control.Status{}, fmt.Errorf("counting the pool: %w", err)
	}
	v, err := m.o.Store.Version(ctx)
	if err != nil {
		return control.Status{}, fmt.Errorf("reading the pool version: %w", err)
	}
	st := control.Status{
		Version: v,
		States: map[upstream.State]int{upstream.Healthy: 0, upstream.Failing: 0, upstream.Dead: 0, upstream.Unknown: 0,
			upstream.Removed: 0, upstream.Retired: 0},
		Sources:   c.BySource,
		Countries: c.ByCountry,
		Groups:    c.ByGroup,
		Exits:     &control.ExitCounts{Distinct: c.DistinctExits, Healthy: c.HealthyExits},
	}
	for k, n := range c.ByState {
		st.States[upstream.State(k)] = n
	}
	rep, err := m.o.Store.SourceReputation(ctx)
	if err != nil {
		return control.Status{}, fmt.Errorf("reading source reputation: %w", err)
	}
	for _, r := range rep {
		st.Reputation = append(st.Reputation, control.SourceReputation{
			Source: r.Source, Listed: r.Listed, HealthyNow: r.HealthyNow,
			EverHealthy: r.EverHealthy, HealthySeconds: r.HealthySeconds,
		})
	}
	ts, err := m.o.Store.TargetStats(ctx, time.Now())
	if err != nil {
		return control.Status{}, fmt.Errorf("reading target results: %w", err)
	}
	for name, t := range ts {
		st.Targets = append(st.Targets, control.TargetStatus{Name: name, Checked: t.Checked, Passing: t.Passing})
	}
	slices.SortFunc(st.Targets, func(a, b control.TargetStatus) int { return strings.Compare(a.Name, b.Name) })
	m.mu.Lock()
	p := m.probe
	st.Probe = control.ProbeStatus{Done: p.done, Total: p.total, LastPass: p.lastPass}
	if j := m.running["check-all"]; j != nil {
		st.Probe.Job = j.id
	} else {
		for id := range m.checks {
			st.Probe.Job = id
			break
		}
	}
	m.mu.Unlock()
	if err := m.storedStatus(ctx, &st); err != nil {
		return control.Status{}, err
	}
	if m.o.Floors != nil {
		st.Floors = m.o.Floors()
	}
	if m.o.Gateway != nil {
		st.Gateway = m.o.Gateway()
	}
	return st, nil
}

// storedStatus adds what the store keeps for every process: the probe
// loop's state and each source's last fetch.
func (m *Manager) storedStatus(ctx context.Context, st *control.Status) error {
	ps, err := m.o.Store.ProbeState(ctx)
	if err != nil {
		return err
	}
	st.Probe.Paused, st.Probe.Since, st.Probe.Reason = ps.Paused, ps.Since, ps.Reason
	st.Probe.Last, st.Probe.LastFull = controlPass(ps.LastPass), controlPass(ps.LastFull)
	if st.Probe.LastPass.IsZero() {
		st.Probe.LastPass = ps.LastPass.At // another process ran it (--db)
	}
	srcs, err := m.o.Store.Sources(ctx)
	if err != nil {
		return err
	}
	for _, s := range srcs {
		st.SourceState = append(st.SourceState, control.SourceStatus{Name: s.Name, LastFetch: s.LastFetch,
			LastOK: s.LastOK, Error: s.LastError, Listed: s.Total, Parsed: s.OK, Failed: s.Failed,
			New: s.New, Seen: s.Seen, Gone: s.Gone, Removed: s.Removed})
	}
	rs, err := m.o.Store.Reloads(ctx)
	if err != nil {
		return err
	}
	for _, r := range rs {
		st.Reloads = append(st.Reloads, control.ReloadStatus(r))
	}
	return nil
}

func controlPass(p store.Pass) *control.Pass {
	if p.At.IsZero() {
		return nil
	}
	return &control.Pass{At: p.At, Size: p.Size, Healthy: p.Healthy, Seconds: p.Took.Seconds()}
}

// Add adds one upstream under source "manual".
func (m *Manager) Add(ctx context.Context, uri string) (string, bool, error) {
	u, err := parse.ParseURI(strings.TrimSpace(uri))
	if err != nil {
		return "", false, fmt.Errorf("%w: %v", control.ErrInvalid, err)
	}
	n, err := m.o.Store.Add(ctx, ManualSource, u)
	if err != nil {
		return "", false, storeErr("adding "+u.String(), err)
	}
	m.forgetTotals()
	return u.ID, n > 0, nil
}

// idOf is the upstream id an operator gave as an ID or a URI.
func idOf(idOrURI string) (string, error) {
	id := strings.TrimSpace(idOrURI)
	if id == "" {
		return "", fmt.Errorf("%w: empty id", control.ErrInvalid)
	}
	if strings.Contains(id, "://") {
		u, err := parse.ParseURI(id)
		if err != nil {
			return "", fmt.Errorf("%w: %v", control.ErrInvalid, err)
		}
		id = u.ID
	}
	return id, nil
}

// callerName says who called, for a tombstone's removed_by: "uid 0
// (root)", or "uid N" when the uid has no name here.
func callerName(ctx context.Context) string {
	c, ok := control.CallerFrom(ctx)
	if !ok {
		return "store" // proxypoolctl --db or a test: no bus caller
	}
	name := fmt.Sprintf("uid %d", c.UID)
	if u, err := user.LookupId(strconv.FormatUint(uint64(c.UID), 10)); err == nil {
		name += " (" + u.Username + ")"
	}
	return name
}

// Remove removes one upstream given by its ID or its URI: one a source
// still lists stays as a tombstone the source does not bring back (see
// store.Remove), anything else is deleted.
func (m *Manager) Remove(ctx context.Context, idOrURI string) (int, error) {
	id, err := idOf(idOrURI)
	if err != nil {
		return 0, err
	}
	n, err := m.o.Store.Remove(ctx, callerName(ctx), id)
	if err != nil {
		return 0, storeErr("removing "+id, err)
	}
	if n == 0 {
		return 0, fmt.Errorf("no upstream %s in the pool: %w", idOrURI, control.ErrNotFound)
	}
	m.forgetTotals()
	return n, nil
}

// Restore brings removed and retired upstreams back into the pool, given
// by ID or URI; a retired one stays as added by hand (source manual).
func (m *Manager) Restore(ctx context.Context, idsOrURIs []string) (int, error) {
	if len(idsOrURIs) == 0 {
		return 0, fmt.Errorf("%w: no id to restore", control.ErrInvalid)
	}
	ids := make([]string, 0, len(idsOrURIs))
	for _, s := range idsOrURIs {
		id, err := idOf(s)
		if err != nil {
			return 0, err
		}
		ids = append(ids, id)
	}
	n, err := m.o.Store.Restore(ctx, ManualSource, ids...)
	if err != nil {
		return 0, storeErr("restoring "+strings.Join(ids, " "), err)
	}
	if n == 0 {
		return 0, fmt.Errorf("no removed or retired upstream %s (see proxypoolctl list --state removed): %w",
			strings.Join(idsOrURIs, ", "), control.ErrNotFound)
	}
	m.forgetTotals()
	if m.o.Checker != nil {
		m.o.Checker.Trigger() // they are due now: check them at once
	}
	return n, nil
}

// Import adds every upstream in text under source "manual" and reports
// line by line.
func (m *Manager) Import(ctx context.Context, text string) (control.ImportReport, error) {
	res, err := parse.Parse([]byte(text), parse.Options{})
	if err != nil {
		return control.ImportReport{}, fmt.Errorf("%w: %v", control.ErrInvalid, err)
	}
	rep := control.ImportReport{Lines: make([]control.ImportLine, 0, len(res))}
	var ups []upstream.Upstream
	var ids []string
	for _, r := range res {
		l := control.ImportLine{Line: r.Line}
		switch {
		case r.Skipped:
			l.Skipped = true
			rep.Skipped++
		case r.Err != nil:
			l.Error = r.Err.Error()
			rep.Failed++
		default:
			l.OK, l.ID = true, r.Upstream.ID
			ups = append(ups, r.Upstream)
			ids = append(ids, r.Upstream.ID)
			rep.OK++
		}
		rep.Lines = append(rep.Lines, l)
	}
	if len(ups) == 0 {
		return rep, nil
	}
	known := map[string]bool{}
	for start := 0; start < len(ids); start += 10000 {
		recs, err := m.o.Store.List(ctx, store.Filter{IDs: ids[start:min(start+10000, len(ids))]})
		if err != nil {
			return control.ImportReport{}, storeErr("looking up imported upstreams", err)
		}
		for _, r := range recs {
			known[r.ID] = true
		}
	}
	if _, err := m.o.Store.Add(ctx, ManualSource, ups...); err != nil {
		return control.ImportReport{}, storeErr("adding imported upstreams", err)
	}
	for i := range rep.Lines {
		l := &rep.Lines[i]
		if l.OK && !known[l.ID] {
			l.New = true
			known[l.ID] = true // a repeated line is new once
			rep.New++
		}
	}
	m.forgetTotals()
	return rep, nil
}

// Export renders the servable upstreams in format, their credentials
// redacted for an unprivileged caller (see secretsFor).
func (m *Manager) Export(ctx context.Context, format string) ([]byte, error) {
	recs, err := m.o.Store.Healthy(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading healthy upstreams: %w", err)
	}
	recs = m.secretsFor(ctx, recs)
	switch format {
	case control.FormatJSON:
		return ExportJSON(recs)
	case control.FormatTXT:
		return ExportTXT(recs), nil
	case control.FormatClash:
		return ExportClash(recs)
	}
	return nil, fmt.Errorf("%w: unknown export format %q (want json, txt or clash)", control.ErrInvalid, format)
}

// TorStatus lists the Tor instances.
func (m *Manager) TorStatus(ctx context.Context) ([]control.TorInstance, error) {
	if m.o.Tor == nil {
		return nil, errNoTor
	}
	return m.o.Tor.Status(ctx)
}

// TorNewnym asks for new circuits on port, every instance when 0.
func (m *Manager) TorNewnym(ctx context.Context, port int) error {
	if m.o.Tor == nil {
		return errNoTor
	}
	return m.o.Tor.Newnym(ctx, port)
}

var errNoTor = errors.New("tor is not enabled in this daemon (tor.enabled in the config)")

// storeErr words a failed store call; a read-only store says so.
func storeErr(doing string, err error) error {
	if errors.Is(err, store.ErrReadOnly) {
		return fmt.Errorf("%s: the store is open read-only (proxypoolctl --db cannot change it): %w", doing, err)
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// secretsFor returns recs as the caller in ctx may see them: whole for a
// privileged control.Caller or a Trusted manager, with every credential
// replaced by upstream.RedactedValue for anyone else, a context without a
// caller included (a new API that forgets to say who calls leaks nothing).
func (m *Manager) secretsFor(ctx context.Context, recs []upstream.Record) []upstream.Record {
	if c, _ := control.CallerFrom(ctx); c.Privileged || m.o.Trusted {
		return recs
	}
	out := make([]upstream.Record, len(recs))
	for i, r := range recs {
		r.Upstream = r.Upstream.Redact()
		out[i] = r
	}
	return out
}
