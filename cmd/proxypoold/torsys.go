package main

// The SLO guard's tor steps under systemd.
//
// Under systemd three processes share the tor instances: proxy-torgen
// (root, a oneshot on a timer) writes /etc/tor/torrc.<port> and runs
// tor@<port>.service; proxy-probe (user proxypool) runs the SLO guard;
// proxypoolctl asks the probe over D-Bus. They meet in the store's settings:
//
//   - tor.control-password: made once (by whichever comes first). torgen
//     gives every instance a loopback ControlPort at its SOCKS port +
//     torControlPortOffset with the matching HashedControlPassword, so the
//     probe can NEWNYM Debian's instances, whose own control socket and
//     cookie only their _tor-<port> group may read.
//   - tor.budget: per tor group with a floor (tor.mode grouped/single), how
//     many instances it may run. torgen starts from the floor (as
//     `proxypoold run` does) and takes the larger stored value; the guard's
//     ScaleUp raises it to one more than the group runs.
//   - tor.unused: per group, the slots torgen's last plan left without an
//     instance (exits nobody uses yet): ScaleUp's "is there anything to add".
//
// ScaleUp then writes torgen.request beside the database; proxy-torgen.path
// watches that file and starts proxy-torgen.service (the probe has no
// right to start units itself, and needs none). The budget persists until
// the floors change: a restart does not forget instances the floor needed.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/slo"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torctl"
	"github.com/proxypool/proxypool/internal/torgen"
	"github.com/proxypool/proxypool/internal/upstream"
)

const (
	// torControlPortOffset: a systemd instance on SOCKS port P has its
	// control port on 127.0.0.1:P+torControlPortOffset.
	torControlPortOffset = 10000

	settingControlPassword = "tor.control-password"
	settingBudget          = "tor.budget"
	settingUnused          = "tor.unused"

	// torgenRequest is the file (beside the database) whose change starts
	// proxy-torgen.service through proxy-torgen.path.
	torgenRequest = "torgen.request"
)

// torControlPassword returns the shared control password, making it on
// first use.
func torControlPassword(ctx context.Context, st *store.Store) (string, error) {
	if pw, ok, err := st.Setting(ctx, settingControlPassword); err != nil || ok {
		return pw, err
	}
	if st.ReadOnly() {
		return "", nil
	}
	var b [16]byte
	rand.Read(b[:])
	return st.SetSettingIfAbsent(ctx, settingControlPassword, hex.EncodeToString(b[:]))
}

// torControlHash is the HashedControlPassword for pw with a salt derived
// from pw, so the torrc files stay the same from one torgen run to the
// next (a new salt would restart every instance).
func torControlHash(pw string) string {
	sum := sha256.Sum256([]byte("proxypool tor control salt\x00" + pw))
	var salt [8]byte
	copy(salt[:], sum[:])
	return torctl.HashPasswordSalt(pw, salt)
}

func sysControlAddr(port int) string {
	return "127.0.0.1:" + strconv.Itoa(port+torControlPortOffset)
}

// readGroupInts reads a settings map of group → count (missing: empty).
func readGroupInts(ctx context.Context, st *store.Store, key string) (map[string]int, error) {
	v, ok, err := st.Setting(ctx, key)
	out := map[string]int{}
	if err != nil || !ok {
		return out, err
	}
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return map[string]int{}, fmt.Errorf("setting %s: %w", key, err)
	}
	return out, nil
}

func writeGroupInts(ctx context.Context, st *store.Store, key string, m map[string]int) error {
	b, _ := json.Marshal(m)
	return st.SetSetting(ctx, key, string(b))
}

// systemdBudget is torgen's per-group cap under systemd: the floors'
// budget (initialBudget), raised to what the guard stored. nil in country
// mode.
func systemdBudget(ctx context.Context, e *env, st *store.Store, log logrus.FieldLogger) map[string]int {
	b := initialBudget(e)
	if b == nil {
		return nil
	}
	stored, err := readGroupInts(ctx, st, settingBudget)
	if err != nil {
		log.WithError(err).Warn("reading the SLO guard's tor budget; using the floors'")
	}
	for g, n := range stored {
		if _, ok := b[g]; ok && n > b[g] {
			b[g] = n
		}
	}
	return b
}

// recordUnused stores, per group, how many slots the plan left without an
// instance.
func recordUnused(ctx context.Context, st *store.Store, plan torgen.Plan) error {
	unused := map[string]int{}
	for _, s := range plan.Dropped {
		unused[s.Group]++
	}
	return writeGroupInts(ctx, st, settingUnused, unused)
}

// sysTor is the guard's slo.TorScaler in the systemd probe.
type sysTor struct {
	e       *env
	st      *store.Store
	request string // torgen.request beside the database
	now     func() time.Time
	log     logrus.FieldLogger
}

func newSysTor(e *env, st *store.Store) *sysTor {
	return &sysTor{e: e, st: st, request: filepath.Join(filepath.Dir(e.cfg.Database), torgenRequest), now: time.Now,
		log: e.log.WithField(logging.FieldComponent, "slo")}
}

func (t *sysTor) instances(ctx context.Context, group string) ([]upstream.Record, error) {
	recs, err := t.st.List(ctx, store.Filter{Source: "tor", Group: group})
	if err != nil {
		return nil, fmt.Errorf("listing tor instances: %w", err)
	}
	return recs, nil
}

// NewNym sends NEWNYM to each of the group's instances through its control
// port.
func (t *sysTor) NewNym(ctx context.Context, group string) (int, error) {
	recs, err := t.instances(ctx, group)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	pw, err := torControlPassword(ctx, t.st)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, r := range recs {
		if err := newnymOnce(ctx, sysControlAddr(r.Port), pw); err != nil {
			errs = append(errs, fmt.Errorf("NEWNYM to tor@%d: %w", r.Port, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func newnymOnce(ctx context.Context, addr, pw string) error {
	c, err := torctl.DialPassword(ctx, addr, pw)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.NewNym(ctx)
}

// ScaleUp raises the group's stored budget to one more instance than it
// runs and asks for a torgen run, when the group has a budget, torgen's last
// plan left one of its slots unused, tor.max-instances has room and none of
// its instances is younger than tor.bootstrap-grace (then slo.ErrNotYet).
func (t *sysTor) ScaleUp(ctx context.Context, group string) (int, error) {
	if _, ok := initialBudget(t.e)[group]; !ok {
		return 0, nil // country mode or no floor
	}
	unused, err := readGroupInts(ctx, t.st, settingUnused)
	if err != nil || unused[group] == 0 {
		return 0, err
	}
	all, err := t.instances(ctx, "")
	if err != nil || len(all) >= t.e.cfg.Tor.MaxInstances {
		return 0, err
	}
	mine := 0
	for _, r := range all {
		if r.Group != group {
			continue
		}
		mine++
		if age := t.now().Sub(r.FirstSeen); age < t.e.cfg.Tor.BootstrapGrace {
			return 0, fmt.Errorf("tor@%d started %v ago may still bootstrap: %w", r.Port, age.Round(time.Second), slo.ErrNotYet)
		}
	}
	budget, err := readGroupInts(ctx, t.st, settingBudget)
	if err != nil {
		t.log.WithError(err).Warn("replacing an unreadable tor budget")
	}
	budget[group] = mine + 1
	if err := writeGroupInts(ctx, t.st, settingBudget, budget); err != nil {
		return 0, fmt.Errorf("raising tor group %s's budget: %w", group, err)
	}
	stamp := t.now().UTC().Format(time.RFC3339Nano) + " " + group + "\n"
	if err := os.WriteFile(t.request, []byte(stamp), 0o640); err != nil {
		return 0, fmt.Errorf("asking proxy-torgen for another instance (%s): %w", t.request, err)
	}
	t.log.WithField(logging.FieldGroup, group).Infof("tor group %s: asked proxy-torgen for instance %d (budget %d)", group, mine+1, mine+1)
	return 1, nil
}

// sysRotate keeps one tor.newnym-period rotation per systemd instance
// listed in the store, following the list every minute.
func sysRotate(ctx context.Context, e *env, st *store.Store) {
	period := e.cfg.Tor.NewnymPeriod
	if period <= 0 {
		return
	}
	log := e.log.WithField(logging.FieldComponent, "torgen")
	running := map[int]context.CancelFunc{}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		recs, err := st.List(ctx, store.Filter{Source: "tor"})
		pw, perr := torControlPassword(ctx, st)
		if err == nil && perr == nil {
			want := map[int]bool{}
			for _, r := range recs {
				want[r.Port] = true
				if _, ok := running[r.Port]; !ok {
					rctx, cancel := context.WithCancel(ctx)
					running[r.Port] = cancel
					go torctl.NewNymEveryPassword(rctx, sysControlAddr(r.Port), pw, period, log)
				}
			}
			for port, cancel := range running {
				if !want[port] {
					cancel()
					delete(running, port)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
