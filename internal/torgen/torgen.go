package torgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/torgen/exits"
	"github.com/proxypool/proxypool/internal/torgen/torrc"
	"github.com/proxypool/proxypool/internal/upstream"
)

// RelaySource lists the relays to choose exits from (exits.Source, or
// exits.Static).
type RelaySource interface {
	Relays(ctx context.Context) ([]upstream.Relay, error)
}

// A Runner makes the set of running instances equal to want (SOCKS ports,
// each configured by torrc.<port> in the torrc dir). changed lists the
// wanted ports whose torrc was rewritten: running ones must reload it.
// units.Runner does it with systemd; ProcessRunner with child processes.
type Runner interface {
	Apply(ctx context.Context, want, changed []int) error
}

// DryRun is a Runner that starts nothing and remembers the last wanted set,
// for tests of what a plan would run. (`torgen --dry-run` calls no runner:
// Config.DryRun.)
type DryRun struct {
	mu   sync.Mutex
	want []int
}

func (r *DryRun) Apply(_ context.Context, want, _ []int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.want = slices.Clone(want)
	return nil
}

// Wanted is the wanted set of the last Apply.
func (r *DryRun) Wanted() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.want)
}

// Config is torgen's part of proxypool.yaml (cmd maps config.Tor onto it).
type Config struct {
	Groups       []exits.Group
	Mode         exits.Mode // default for groups without their own; "" = country
	PortBase     int        // default 9060
	PortMax      int        // default PortBase+999
	MaxInstances int        // 0 = no cap beyond the range
	// Budget is single groups' instances under MaxInstances (floor,
	// tor-instances; the SLO guard raises it to bring up more): reserved
	// for the group first, and its cap. Missing or 0: the group takes a
	// bandwidth share of what is left (exits.Allot). Slots over a share
	// are listed in Plan.Dropped.
	Budget   map[string]int
	Reserved []int  // ports proxypool itself uses (config.UsedPorts): never given out
	TorrcDir string // where torrc.<port> go (/etc/tor)
	// DataDir, when set, gives each instance DataDirectory DataDir/<port>
	// and ControlSocket DataDir/<port>/control (process runner). Empty:
	// both are left to the defaults torrc (Debian's tor@ instances).
	DataDir string
	// RunAs, with DataDir, is the account tor switches to once it has
	// bound its ports (torrc User; DefaultTorUser when proxypoold runs as
	// root): each instance's data dir is given to it. An account that does
	// not exist, or cannot reach DataDir or TorrcDir, is logged and tor
	// runs as proxypoold's user. "": no User line.
	RunAs string
	// ControlPortOffset, when DataDir is empty, gives each instance a
	// loopback ControlPort (ControlPortFor: its SOCKS port + the offset,
	// or - the offset above 65535-offset), authenticated by
	// ControlPasswordHash (HashedControlPassword): how proxypool's probe
	// reaches Debian's tor@ instances (NEWNYM) without their cookie. A
	// SOCKS port whose control port is reserved or inside the SOCKS range
	// is never given out. 0: no control port of ours; no password: the
	// ports are kept apart all the same, the files get none.
	ControlPortOffset   int
	ControlPasswordHash string
	MaxCircuitDirtiness time.Duration
	NewCircuitPeriod    time.Duration
	Extra               []string       // tor.extra-config, appended verbatim
	Verify              torrc.Verifier // nil: no tor --verify-config
	// DryRun plans only: the torrc dir is read, nothing is written,
	// removed or handed to the runner; Plan.Changed and Plan.Removed say
	// what a real run would write and remove.
	DryRun bool
	Log    logrus.FieldLogger
}

// Instance is one planned tor instance.
type Instance struct {
	torrc.Instance
	Name   string // "tor-us-9060"
	Mode   exits.Mode
	Relays []upstream.Relay // the usable exits it may leave through
}

// Plan is what one Generate did.
type Plan struct {
	Instances []Instance       // by port
	Relays    []upstream.Relay // everything discovered (for the store)
	Usable    int              // usable exits among Relays
	// GroupExits is each group's usable exits (the relays behind its
	// slots, used by an instance or not): what discovery found per group.
	GroupExits map[string]int
	Dropped    []exits.Slot // slots over their group's share
	// Shares is each group's part of max-instances; a group short of its
	// share (Share.Short) is logged and recorded for status and metrics.
	Shares      []exits.Share
	EmptyGroups []string // groups no usable exit matched
	Changed     []int    // torrc files written (dry run: that would be)
	Removed     []int    // stale torrc files removed (dry run: that would be): instances stopped
	New         []int    // planned ports that had no torrc file: instances started
	// Moved lists the old ports of slots that run on another port now:
	// files of the older lowest-free-port scheme migrating to their
	// hashed port (once), or a port that became reserved.
	Moved  []int
	DryRun bool // nothing was written, removed or run
}

// Ports lists the planned SOCKS ports.
func (p Plan) Ports() []int {
	out := make([]int, len(p.Instances))
	for i, in := range p.Instances {
		out[i] = in.Port
	}
	return out
}

// ErrNoExits means discovery found no usable exit for any group; nothing
// was changed on disk or in the runner.
var ErrNoExits = errors.New("no usable exit relay for any configured tor group")

// Generate discovers relays, plans instances with stable ports, writes the
// changed torrc files, removes stale ones and hands the wanted set to the
// runner (nil runner: files only, as `proxypoolctl tor generate` previews).
func Generate(ctx context.Context, cfg Config, src RelaySource, run Runner) (Plan, error) {
	log := cfg.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	if cfg.TorrcDir == "" {
		return Plan{}, errors.New("tor: torrc-dir is empty")
	}
	base := cfg.PortBase
	if base == 0 {
		base = 9060
	}
	pmax := cfg.PortMax
	if pmax == 0 {
		pmax = min(base+999, 65535)
	}
	relays, err := src.Relays(ctx)
	if err != nil {
		return Plan{}, fmt.Errorf("discovering tor relays: %w", err)
	}
	plan := Plan{Relays: relays, Usable: len(exits.UsableExits(relays))}
	slots, empty, err := exits.Slots(cfg.Groups, relays, cfg.Mode)
	if err != nil {
		return plan, err
	}
	plan.EmptyGroups = empty
	plan.GroupExits = map[string]int{}
	for _, s := range slots {
		plan.GroupExits[s.Group] += len(s.Relays)
	}
	for _, g := range empty {
		log.WithField("GROUP", g).Warn("tor group has no usable exit; no instance for it")
	}
	// No slot although groups are configured: a broken or empty relay list
	// must not tear every running instance down. No group configured at all
	// is an operator's decision: fall through and stop what runs.
	if len(slots) == 0 && len(cfg.Groups) > 0 {
		hint := ""
		if noFlags(relays) {
			hint = "; the relay list carries no flags (an Onionoo query needs fields flags and running)"
		}
		return plan, fmt.Errorf("%w (%d relays, %d usable exits%s)", ErrNoExits, len(relays), plan.Usable, hint)
	}
	plan.DryRun = cfg.DryRun
	if !cfg.DryRun {
		if err := os.MkdirAll(cfg.TorrcDir, 0o755); err != nil {
			return plan, fmt.Errorf("creating torrc dir: %w", err)
		}
	}
	files, err := torrc.ReadFiles(cfg.TorrcDir)
	if err != nil {
		return plan, err
	}
	have := make(map[int]string, len(files))
	held := make(map[string]exits.Held, len(files))
	for port, f := range files {
		have[port] = f.Key
		held[f.Key] = exits.Held{Port: port, Hashed: f.Hashed}
	}
	ports := exits.Ports{Base: base, Max: pmax, MaxInstances: cfg.MaxInstances, Reserved: cfg.Reserved, Budget: cfg.Budget}
	if cfg.ControlPortOffset > 0 && cfg.DataDir == "" {
		ports.Reserved = controlConflicts(base, pmax, cfg.ControlPortOffset, cfg.Reserved)
	}
	kept, dropped, err := exits.AssignPorts(slots, held, ports)
	if err != nil {
		return plan, err
	}
	plan.Dropped = dropped
	plan.Shares = exits.Allot(slots, ports)
	// A grouped group's ranges without an instance of their own ride on
	// its instances: every range of the group stays in use.
	kept = exits.Spread(kept, dropped)
	if len(dropped) > 0 {
		log.WithField("dropped", len(dropped)).Info("more tor slots than the groups' shares of tor.max-instances; the lowest-bandwidth new ones get no instance of their own (grouped: their /16 ranges join the group's instances)")
	}
	for _, sh := range plan.Shares {
		if sh.Short() > 0 {
			log.WithFields(logrus.Fields{"GROUP": sh.Group, "want": sh.Want, "got": sh.Got}).
				Warnf("tor group %s gets %d of its %d instances: tor.max-instances (%d) or the port range is full", sh.Group, sh.Got, sh.Want, cfg.MaxInstances)
		}
	}
	for _, s := range kept {
		if h, ok := held[s.Key]; ok && h.Port != s.Port {
			plan.Moved = append(plan.Moved, h.Port)
		}
	}
	if len(plan.Moved) > 0 {
		log.WithField("moved", len(plan.Moved)).Info("tor instances move to their hashed ports (torrc files of the older port scheme, or a port now reserved)")
	}
	var as runAs
	if cfg.RunAs != "" && cfg.DataDir != "" {
		if as, err = lookupRunAs(cfg.RunAs, cfg.DataDir, cfg.TorrcDir); err != nil {
			log.WithError(err).Warn("tor instances run as proxypoold's user")
		}
	}
	for _, s := range kept {
		in := Instance{
			Instance: torrc.Instance{
				Key: s.Key, Group: s.Group, Port: s.Port,
				ExitNodes: s.ExitNodes, ExcludeExitNodes: s.ExcludeExitNodes,
				MaxCircuitDirtiness: cfg.MaxCircuitDirtiness, NewCircuitPeriod: cfg.NewCircuitPeriod,
				Extra: cfg.Extra,
			},
			Name:   "tor-" + s.Group + "-" + strconv.Itoa(s.Port),
			Mode:   s.Mode,
			Relays: s.Relays,
		}
		if cfg.DataDir != "" {
			dd := filepath.Join(cfg.DataDir, strconv.Itoa(s.Port))
			if !cfg.DryRun {
				if err := os.MkdirAll(dd, 0o700); err != nil {
					return plan, fmt.Errorf("creating tor data dir: %w", err)
				}
				if err := as.own(dd); err != nil {
					return plan, err
				}
			}
			in.DataDir = dd
			in.User = as.name
			in.ControlSocket = filepath.Join(dd, "control")
		} else if cfg.ControlPortOffset > 0 && cfg.ControlPasswordHash != "" {
			in.ControlPort = ControlPortFor(s.Port, cfg.ControlPortOffset)
			in.HashedControlPassword = cfg.ControlPasswordHash
		}
		plan.Instances = append(plan.Instances, in)
		if _, ok := have[in.Port]; !ok {
			plan.New = append(plan.New, in.Port)
		}
	}
	// Render everything first: one bad line in extra-config must not leave
	// half the files written.
	for _, in := range plan.Instances {
		if _, err := torrc.Render(in.Instance); err != nil {
			return plan, err
		}
	}
	if cfg.DryRun {
		for _, in := range plan.Instances {
			changed, err := torrc.WouldChange(cfg.TorrcDir, in.Instance)
			if err != nil {
				return plan, err
			}
			if changed {
				plan.Changed = append(plan.Changed, in.Port)
			}
		}
		plan.Removed = torrc.Stale(have, plan.Ports())
		return plan, nil
	}
	for _, in := range plan.Instances {
		changed, err := torrc.Write(ctx, cfg.TorrcDir, in.Instance, cfg.Verify)
		if err != nil {
			return plan, err
		}
		if changed {
			plan.Changed = append(plan.Changed, in.Port)
		}
	}
	plan.Removed, err = torrc.RemoveStale(cfg.TorrcDir, plan.Ports())
	if err != nil {
		return plan, err
	}
	log.WithFields(logrus.Fields{
		"relays": len(relays), "usable_exits": plan.Usable, "instances": len(plan.Instances),
		"changed": len(plan.Changed), "removed": len(plan.Removed),
	}).Info("tor instances planned")
	if run != nil {
		if err := run.Apply(ctx, plan.Ports(), plan.Changed); err != nil {
			return plan, fmt.Errorf("applying tor instances: %w", err)
		}
	}
	return plan, nil
}

// Upstreams returns one tor upstream per instance: 127.0.0.1:<port>, the
// instance's group, named "tor-<group>-<port>". cmd adds them to the store
// under source "tor".
func Upstreams(p Plan) []upstream.Upstream {
	out := make([]upstream.Upstream, 0, len(p.Instances))
	for _, in := range p.Instances {
		server := in.SocksAddr
		if server == "" {
			server = "127.0.0.1"
		}
		u, err := upstream.New(map[string]any{
			"type": string(upstream.Tor), "server": server, "port": in.Port,
			"name": in.Name, "group": in.Group,
		})
		if err != nil {
			continue // impossible: port and server are checked by Render
		}
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out
}

// ControlPortFor is the loopback control port of the instance on SOCKS
// port p: p+offset, or p-offset for SOCKS ports above 65535-offset, so
// every SOCKS port has one and whoever knows the port finds it.
func ControlPortFor(p, offset int) int {
	if p+offset <= 65535 {
		return p + offset
	}
	return p - offset
}

// controlConflicts is reserved plus every SOCKS port in [base, pmax]
// whose control port is reserved (another listener of ours) or falls in
// the SOCKS range itself (it could be another instance's SOCKS port, or,
// in a range wider than twice the offset, another's control port).
func controlConflicts(base, pmax, offset int, reserved []int) []int {
	taken := make(map[int]bool, len(reserved))
	for _, r := range reserved {
		taken[r] = true
	}
	out := slices.Clone(reserved)
	for p := base; p <= pmax; p++ {
		c := ControlPortFor(p, offset)
		if c < 1 || taken[c] || (c >= base && c <= pmax) {
			out = append(out, p)
		}
	}
	return out
}

func noFlags(rs []upstream.Relay) bool {
	for _, r := range rs {
		if len(r.Flags) > 0 {
			return false
		}
	}
	return len(rs) > 0
}

// ControlAddr is where torctl.Dial reaches an instance: its own control
// socket, or the one Debian's instance defaults give tor@<port>.
func ControlAddr(in Instance) string {
	if in.ControlSocket != "" {
		return "unix:" + in.ControlSocket
	}
	if in.ControlPort != 0 {
		return "127.0.0.1:" + strconv.Itoa(in.ControlPort)
	}
	return "unix:/run/tor-instances/" + strconv.Itoa(in.Port) + "/control"
}
