package torops

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torctl"
	"github.com/proxypool/proxypool/internal/torgen"
	"github.com/proxypool/proxypool/internal/torgen/exits"
	"github.com/proxypool/proxypool/internal/torgen/torrc"
	"github.com/proxypool/proxypool/internal/upstream"
)

// ControlPortOffset: a systemd instance on SOCKS port P has its control
// port on 127.0.0.1:P+ControlPortOffset (P-ControlPortOffset above 55535:
// torgen.ControlPortFor).
const ControlPortOffset = 10000

// SourceName is the store source the instances are listed under.
const SourceName = "tor"

// Options wire a Tor. Store is required.
type Options struct {
	Store *store.Store
	// Gen is what to generate (cmd maps config.Tor onto it). Apply sets
	// its Budget and, under systemd, its control port per run.
	Gen torgen.Config
	// Relays lists the relays to choose exits from; RelaysURL is recorded
	// as source "tor"'s URL.
	Relays    torgen.RelaySource
	RelaysURL string
	// Floors is each tor group's floor, max(min-healthy, min-exits), or
	// its groups.<name>.tor-instances when larger. In grouped or single
	// mode a group with one has that many instances reserved for it in
	// tor.max-instances (and, until the SLO guard raises it, no more);
	// groups without share the rest by bandwidth. Country mode runs one
	// per group.
	Floors map[string]int
	// BootstrapGrace is how long a new instance may take to fill the
	// floor: ScaleUp waits (slo.ErrNotYet) while one is younger.
	BootstrapGrace time.Duration
	// NewnymPeriod is how often Rotate asks every instance for new
	// circuits; 0: never.
	NewnymPeriod time.Duration
	// Systemd: the instances are Debian's tor@ units (password control
	// ports, unit states from systemd, DataDir unused); otherwise
	// `proxypoold run`'s children under Gen.DataDir.
	Systemd bool
	Log     logrus.FieldLogger // nil: silent
	Now     func() time.Time   // nil: time.Now
	// CgroupRoot and ProcRoot are where Usage reads an instance's CPU and
	// memory: the tor@<port> unit's cgroup v2 directory under
	// CgroupRoot/system.slice (systemd), or /proc/<pid> of `run`'s child.
	// Defaults /sys/fs/cgroup and /proc.
	CgroupRoot, ProcRoot string
}

// Tor is the tor instances of one process. It is safe for concurrent use;
// Apply calls are ordered by their caller (Supervisor in `run`, one
// process under systemd).
type Tor struct {
	o    Options
	log  logrus.FieldLogger
	pids atomic.Pointer[func(port int) int] // `run`'s children, once Supervise started them
}

// New checks o and returns its Tor.
func New(o Options) (*Tor, error) {
	if o.Store == nil {
		return nil, errors.New("torops: no store")
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Log = l
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CgroupRoot == "" {
		o.CgroupRoot = "/sys/fs/cgroup"
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.Systemd {
		o.Gen.DataDir = "" // Debian's instances keep their own data dir and control socket
	} else if o.Gen.RunAs == "" && os.Geteuid() == 0 {
		o.Gen.RunAs = torgen.DefaultTorUser // `run` as root: tor need not keep root
	}
	return &Tor{o: o, log: o.Log}, nil
}

// Apply discovers exits and makes run's instances match the plan within
// each group's budget, then records the result: relays, the instances as
// upstreams of source "tor", and each group's unused slots.
func (t *Tor) Apply(ctx context.Context, run torgen.Runner) (torgen.Plan, error) {
	return t.generate(ctx, run, false)
}

// Plan is Apply's dry run (`proxypoold torgen --dry-run`): it reads the
// store and the torrc dir and returns what Apply would do, changing no
// file, unit or row. A control password not made yet stays unmade (the
// plan then shows torrc files without a control port).
func (t *Tor) Plan(ctx context.Context) (torgen.Plan, error) {
	return t.generate(ctx, nil, true)
}

func (t *Tor) generate(ctx context.Context, run torgen.Runner, dry bool) (torgen.Plan, error) {
	cfg := t.o.Gen
	cfg.Budget = t.budget(ctx)
	cfg.DryRun = dry
	st := t.o.Store
	if t.o.Systemd { // a control port the probe can reach
		// The offset also keeps SOCKS ports off those whose control port
		// is taken, password or not, so a dry run plans the same ports.
		cfg.ControlPortOffset = ControlPortOffset
		if pw, err := t.password(ctx, !dry); err != nil {
			t.log.WithError(err).Warn("no tor control password: the probe cannot NEWNYM the instances")
		} else if pw != "" {
			cfg.ControlPasswordHash = controlHash(pw)
		}
	}
	if !dry {
		if err := os.MkdirAll(cfg.TorrcDir, 0o755); err != nil {
			return torgen.Plan{}, fmt.Errorf("creating the torrc dir: %w", err)
		}
		if cfg.DataDir != "" {
			if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
				return torgen.Plan{}, fmt.Errorf("creating the tor data dir: %w", err)
			}
		}
	}
	plan, err := torgen.Generate(ctx, cfg, t.o.Relays, run)
	if err != nil || dry {
		return plan, err
	}
	if err := st.SetTorPlan(ctx, planGroups(plan)); err != nil {
		t.log.WithError(err).Warn("recording the tor groups' shares and unused slots")
	}
	if err := st.ReplaceRelays(ctx, plan.Relays); err != nil {
		t.log.WithError(err).Warn("storing relays")
	}
	sum, err := st.UpsertSource(ctx, upstream.SourceMeta{Name: SourceName, URL: t.o.RelaysURL, Format: SourceName}, torgen.Upstreams(plan))
	if err != nil {
		return plan, fmt.Errorf("recording tor instances in the store: %w", err)
	}
	for _, g := range plan.EmptyGroups {
		t.log.WithField(logging.FieldGroup, g).Warnf("tor group %s: no usable exit matches it", g)
	}
	t.log.Infof("tor: %d relays, %d usable exits, %d instances (%d changed, %d removed); store: %d new, %d gone",
		len(plan.Relays), plan.Usable, len(plan.Instances), len(plan.Changed), len(plan.Removed), sum.New, sum.Gone)
	return plan, nil
}

// planGroups is what the store keeps of a plan per group: unused slots
// (the SLO guard's "anything to add?"), instances planned, and how many
// of its share a group goes without.
func planGroups(plan torgen.Plan) map[string]store.TorGroup {
	out := map[string]store.TorGroup{}
	for _, s := range plan.Dropped {
		g := out[s.Group]
		g.Unused++
		out[s.Group] = g
	}
	for _, sh := range plan.Shares {
		g := out[sh.Group]
		g.Planned, g.Short = sh.Got, sh.Short()
		out[sh.Group] = g
	}
	for grp, n := range plan.GroupExits {
		g := out[grp]
		g.Usable = n
		out[grp] = g
	}
	return out
}

// initialBudget is the per-group instance cap each tor group with a floor
// starts with; nil in country mode (one instance per group anyway).
func (t *Tor) initialBudget() map[string]int {
	if t.o.Gen.Mode != exits.ModeGrouped && t.o.Gen.Mode != exits.ModeSingle {
		return nil
	}
	b := map[string]int{}
	for g, n := range t.o.Floors {
		if n > 0 {
			b[g] = n
		}
	}
	return b
}

// budget is Apply's per-group reserve and cap (torgen.Config.Budget): the floors'
// budget raised to what the guard stored. nil in country mode.
func (t *Tor) budget(ctx context.Context) map[string]int {
	b := t.initialBudget()
	if b == nil {
		return nil
	}
	stored, err := t.o.Store.TorGroups(ctx)
	if err != nil {
		t.log.WithError(err).Warn("reading the SLO guard's tor budget; using the floors'")
	}
	for g, s := range stored {
		if _, ok := b[g]; ok && s.Budget > b[g] {
			b[g] = s.Budget
		}
	}
	return b
}

// instances lists the tor instances (of group; "" every group) from the
// store's tor upstreams.
func (t *Tor) instances(ctx context.Context, group string) ([]upstream.Record, error) {
	recs, err := t.o.Store.List(ctx, store.Filter{Type: string(upstream.Tor), Group: group, OrderBy: "id"})
	if err != nil {
		return nil, fmt.Errorf("listing tor instances: %w", err)
	}
	return recs, nil
}

func (t *Tor) controlAddr(port int) string {
	if t.o.Systemd {
		return "127.0.0.1:" + strconv.Itoa(torgen.ControlPortFor(port, ControlPortOffset))
	}
	in := torgen.Instance{Instance: torrc.Instance{Port: port}}
	if t.o.Gen.DataDir != "" {
		in.ControlSocket = t.o.Gen.DataDir + "/" + strconv.Itoa(port) + "/control"
	}
	return torgen.ControlAddr(in)
}

// password authenticates the control ports of systemd instances; "" in
// run mode, whose children's sockets take the cookie. make: store a new
// one when there is none (create false: a dry run's "" instead).
func (t *Tor) password(ctx context.Context, create bool) (string, error) {
	if !t.o.Systemd {
		return "", nil
	}
	if !create {
		return t.o.Store.TorControlPassword(ctx, nil)
	}
	return t.o.Store.TorControlPassword(ctx, func() string {
		var b [16]byte
		rand.Read(b[:])
		return hex.EncodeToString(b[:])
	})
}

// controlHash is the HashedControlPassword for pw with a salt derived
// from pw, so the torrc files stay the same from one torgen run to the
// next (a new salt would restart every instance).
func controlHash(pw string) string {
	sum := sha256.Sum256([]byte("proxypool tor control salt\x00" + pw))
	var salt [8]byte
	copy(salt[:], sum[:])
	return torctl.HashPasswordSalt(pw, salt)
}

// newnym sends NEWNYM to each of recs and returns how many it reached:
// the SLO guard's step for a group and `proxypoolctl tor newnym` alike.
func (t *Tor) newnym(ctx context.Context, recs []upstream.Record) (int, error) {
	pw, err := t.password(ctx, true)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, r := range recs {
		if err := torctl.NewNym(ctx, t.controlAddr(r.Port), pw); err != nil {
			errs = append(errs, fmt.Errorf("NEWNYM to %s (port %d): %w", r.Name, r.Port, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
