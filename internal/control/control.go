package control

import (
	"context"
	"errors"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/proxypool/proxypool/internal/upstream"
)

// The names on the bus. They are part of the user-facing contract.
const (
	BusName   = "org.proxypool.ProxyPool1"
	Path      = dbus.ObjectPath("/org/proxypool/ProxyPool1")
	Interface = "org.proxypool.ProxyPool1.Manager"
)

// Paging limits of List. A page never holds more than MaxListLimit records,
// so a pool of thousands is read in several short calls.
const (
	DefaultListLimit = 500
	MaxListLimit     = 5000
)

// Export formats.
const (
	FormatJSON  = "json"  // live_proxies.json
	FormatTXT   = "txt"   // host:port lines
	FormatClash = "clash" // a Clash/mihomo proxies: YAML
)

// Sentinel errors. Client methods return errors that match them with
// errors.Is; Manager implementations wrap ErrNotFound and ErrInvalid so
// the caller gets the matching D-Bus error.
var (
	ErrNotRunning   = errors.New("proxypool is not running")
	ErrAccessDenied = errors.New("permission denied")
	ErrNotFound     = errors.New("not found")
	ErrInvalid      = errors.New("invalid argument")
)

// Manager is what the probe daemon implements. The methods are called on
// their own goroutines, with a context that ends when the call times out or
// the server stops; they must be safe for concurrent use and must not block
// on long work (start a job, return its id, report with Server.Progress).
type Manager interface {
	// List returns one page of the pool, filtered.
	List(ctx context.Context, q ListQuery) (ListPage, error)
	// Status returns counts and progress for `proxypoolctl status`.
	Status(ctx context.Context) (Status, error)
	// Add adds one upstream given as a share link or proxy URI and returns
	// its ID; created is false when it was already in the pool.
	Add(ctx context.Context, uri string) (id string, created bool, err error)
	// Remove removes the upstream with this ID or URI and returns how many
	// were removed (0 wraps ErrNotFound instead). One a source still lists
	// is kept as a tombstone (state removed) that refreshes do not bring
	// back.
	Remove(ctx context.Context, idOrURI string) (int, error)
	// Restore brings removed (tombstoned) and retired upstreams, by ID or
	// URI, back into the pool and returns how many came back (0 wraps
	// ErrNotFound instead).
	Restore(ctx context.Context, idsOrURIs []string) (int, error)
	// Import adds every upstream in text (any format parse understands) and
	// reports line by line.
	Import(ctx context.Context, text string) (ImportReport, error)
	// Check starts a probe of ids (all when empty) and returns the job id.
	Check(ctx context.Context, ids []string) (job string, err error)
	// Refresh starts fetching every source and returns the job id.
	Refresh(ctx context.Context) (job string, err error)
	// Export renders the healthy upstreams in format (FormatJSON, FormatTXT
	// or FormatClash).
	Export(ctx context.Context, format string) ([]byte, error)
	// TorStatus lists the Tor instances.
	TorStatus(ctx context.Context) ([]TorInstance, error)
	// TorNewnym asks the instance on port (every instance when 0) for new
	// circuits.
	TorNewnym(ctx context.Context, port int) error
	// TorGenerate starts a torgen run and returns the job id.
	TorGenerate(ctx context.Context) (job string, err error)
}

// ListQuery selects a page of the pool. Empty filter fields match all.
type ListQuery struct {
	State   upstream.State `json:"state,omitempty"`
	Country string         `json:"country,omitempty"`
	Group   string         `json:"group,omitempty"`
	Source  string         `json:"source,omitempty"`
	// Anonymity and MinScore select by what the probe found.
	Anonymity upstream.Anonymity `json:"anonymity,omitempty"`
	MinScore  float64            `json:"min_score,omitempty"`
	// ASN and Class select by the exit's network (upstream.Quality).
	ASN   uint32         `json:"asn,omitempty"`
	Class upstream.Class `json:"class,omitempty"`
	// Target and MinThroughput select by the checks made through healthy
	// upstreams: passing that target now, measured at least this fast
	// (bytes/s).
	Target        string  `json:"target,omitempty"`
	MinThroughput float64 `json:"min_throughput,omitempty"`
	Offset        int     `json:"offset,omitempty"`
	Limit         int     `json:"limit,omitempty"` // 0: DefaultListLimit; at most MaxListLimit
}

// ListPage is one page of records and the number of records that match the
// filter in all pages.
type ListPage struct {
	Records []upstream.Record `json:"records"`
	Total   int               `json:"total"`
}

// Status is the answer to `proxypoolctl status`.
type Status struct {
	Version   uint64                 `json:"version"` // pool version, as in PoolChanged
	States    map[upstream.State]int `json:"states"`
	Sources   map[string]int         `json:"sources,omitempty"`
	Countries map[string]int         `json:"countries,omitempty"`
	Groups    map[string]int         `json:"groups,omitempty"`
	Probe     ProbeStatus            `json:"probe"`
	Gateway   *GatewayStatus         `json:"gateway,omitempty"` // nil when not known to the daemon
	// Added for proxypoolctl status (see status.go); empty when unknown.
	Exits       *ExitCounts        `json:"exits,omitempty"`
	Reputation  []SourceReputation `json:"reputation,omitempty"`
	Floors      []GroupFloor       `json:"floors,omitempty"`
	SourceState []SourceStatus     `json:"source_state,omitempty"`
	Reloads     []ReloadStatus     `json:"reloads,omitempty"`
	// Targets is each target check across the pool, by name.
	Targets []TargetStatus `json:"targets,omitempty"`
}

// TargetStatus is one target check (probe.targets) across the pool:
// upstreams with a valid result and how many of them pass.
type TargetStatus struct {
	Name    string `json:"name"`
	Checked int    `json:"checked"`
	Passing int    `json:"passing"`
}

// ReloadStatus is one daemon process's last config reload (SIGHUP,
// systemctl reload): Error is why it kept its running config, "" when
// the new one applied; Restart the changed keys it applies only at its
// next restart.
type ReloadStatus struct {
	Component  string    `json:"component"` // probe, gateway, run
	PID        int       `json:"pid"`
	Generation uint64    `json:"generation"` // reloads since the process started
	At         time.Time `json:"at"`
	Error      string    `json:"error,omitempty"`
	Restart    []string  `json:"restart,omitempty"`
}

// ProbeStatus is the health checker's progress.
type ProbeStatus struct {
	Job      string    `json:"job,omitempty"` // running job, empty when idle
	Done     int       `json:"done"`
	Total    int       `json:"total"`
	LastPass time.Time `json:"last_pass,omitempty"`
	// From the store, so every process (and --db) shows the same: paused
	// (our uplink is down) since when and why, the last pass however small
	// and the last one over every upstream not dead.
	Paused   bool      `json:"paused,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	Reason   string    `json:"reason,omitempty"`
	Last     *Pass     `json:"last,omitempty"`
	LastFull *Pass     `json:"last_full,omitempty"`
}

// Pass is one finished probe pass.
type Pass struct {
	At      time.Time `json:"at"`
	Size    int       `json:"size"`
	Healthy int       `json:"healthy"`
	Seconds float64   `json:"seconds"`
}

// SourceStatus is one source's last fetch.
type SourceStatus struct {
	Name      string    `json:"name"`
	LastFetch time.Time `json:"last_fetch,omitzero"`
	LastOK    time.Time `json:"last_ok,omitzero"`
	Error     string    `json:"error,omitempty"` // of the last fetch; "" when it worked
	Listed    int       `json:"listed"`
	Parsed    int       `json:"parsed"` // upstreams the last fetch read
	// New, Seen, Gone: what the last fetch changed in the pool.
	New     int `json:"new"`
	Seen    int `json:"seen"`
	Gone    int `json:"gone"`
	Removed int `json:"removed"` // listed, but removed by the operator (not brought back)
	Failed  int `json:"failed"`  // lines of the last fetch that did not parse
}

// GatewayStatus is what the gateway reports about its traffic.
type GatewayStatus struct {
	Active int64  `json:"active"` // open client connections
	Total  uint64 `json:"total"`  // client connections since start
	Errors uint64 `json:"errors"` // client connections that failed on every try
}

// ImportLine is the outcome of one input line of Import.
type ImportLine struct {
	Line    int    `json:"line"`
	OK      bool   `json:"ok"`
	ID      string `json:"id,omitempty"`
	New     bool   `json:"new,omitempty"`
	Skipped bool   `json:"skipped,omitempty"` // blank line, comment
	Error   string `json:"error,omitempty"`
}

// ImportReport is the per-line report of Import with its totals.
type ImportReport struct {
	Lines   []ImportLine `json:"lines"`
	OK      int          `json:"ok"`
	New     int          `json:"new"`
	Failed  int          `json:"failed"`
	Skipped int          `json:"skipped"`
}

// TorInstance is one Tor instance torgen manages.
type TorInstance struct {
	Port    int    `json:"port"`
	Group   string `json:"group,omitempty"`
	Unit    string `json:"unit"`  // tor@<port>.service; "" under the process runner
	State   string `json:"state"` // systemd ActiveState, or "running" outside systemd
	Country string `json:"country,omitempty"`
	ExitIP  string `json:"exit_ip,omitempty"`
}

// Counts are the pool counts published as D-Bus properties.
type Counts struct {
	Version uint64 `json:"version"`
	Total   uint32 `json:"total"`
	Healthy uint32 `json:"healthy"`
	Failing uint32 `json:"failing"`
	Dead    uint32 `json:"dead"`
	Unknown uint32 `json:"unknown"`
}

// Progress is one Progress signal: done of total steps of job.
type Progress struct {
	Job   string `json:"job"`
	Done  uint32 `json:"done"`
	Total uint32 `json:"total"`
}
