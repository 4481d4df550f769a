package main

// The SLO guard's tor steps, for both runners.
//
// The guard (in proxy-probe under systemd, in `proxypoold run` otherwise)
// NEWNYMs a tor group's instances and asks for one more. The pieces meet in
// the store, so they work the same across processes:
//
//   - the instances are the upstreams of source "tor" (their group, their
//     age as first_seen); their control addresses come from daemonTor
//     (dbus.go): under systemd a loopback ControlPort at the SOCKS port +
//     torControlPortOffset with a password, in `run` the children's cookie
//     sockets;
//   - settings tor.control-password: made once (by whichever comes
//     first). torgen writes the matching HashedControlPassword into every
//     systemd instance's torrc, because the probe may not read a Debian
//     tor@ instance's cookie (only its _tor-<port> group may);
//   - settings tor.budget: per tor group with a floor (tor.mode grouped or
//     single), how many instances it may run. generateTor starts from the
//     floor (max of min-healthy and min-exits) and takes the larger stored
//     value; ScaleUp raises it to one more than the group runs. It persists
//     until the floors change;
//   - settings tor.unused: per group, the slots the last plan left without
//     an instance (exits nobody uses yet): ScaleUp's "anything to add?".
//
// After raising the budget, ScaleUp applies it: in `run` by regenerating
// at once (torManager), under systemd by rewriting torgen.request beside
// the database, which proxy-torgen.path watches to start
// proxy-torgen.service (the probe has no right to start units, and needs
// none).

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
	"github.com/proxypool/proxypool/internal/torgen/exits"
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

// initialBudget is the per-group instance cap each tor group with a floor
// starts with; nil in country mode (one instance per group anyway).
func initialBudget(e *env) map[string]int {
	mode, err := exits.ParseMode(e.cfg.Tor.Mode)
	if err != nil || (mode != exits.ModeGrouped && mode != exits.ModeSingle) {
		return nil
	}
	b := map[string]int{}
	for _, name := range e.cfg.Tor.Groups {
		gc := e.cfg.Groups[name]
		if need := max(gc.MinHealthy, gc.MinExits); need > 0 {
			b[name] = need
		}
	}
	return b
}

// torBudget is generateTor's per-group cap (torgen.Config.GroupMax): the
// floors' budget raised to what the guard stored. nil in country mode.
func torBudget(ctx context.Context, e *env, st *store.Store, log logrus.FieldLogger) map[string]int {
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

// torScaler is the guard's slo.TorScaler.
type torScaler struct {
	ctl *daemonTor // the instances and their control
	// apply makes a raised budget take effect and returns how many
	// instances the group gained or was promised.
	apply func(ctx context.Context, group string, runs int) (int, error)
	now   func() time.Time
	log   logrus.FieldLogger
}

func newTorScaler(ctl *daemonTor, apply func(ctx context.Context, group string, runs int) (int, error)) *torScaler {
	return &torScaler{ctl: ctl, apply: apply, now: time.Now, log: ctl.e.log.WithField(logging.FieldComponent, "slo")}
}

// NewNym sends NEWNYM to each of the group's instances and returns how
// many it reached.
func (t *torScaler) NewNym(ctx context.Context, group string) (int, error) {
	recs, err := t.ctl.instances(ctx, group)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	pw, err := t.ctl.password(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, r := range recs {
		if err := torctl.NewNym(ctx, t.ctl.controlAddr(r.Port), pw); err != nil {
			errs = append(errs, fmt.Errorf("NEWNYM to %s: %w", r.Name, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// ScaleUp raises the group's stored budget to one more instance than it
// runs and applies it, when the group has a budget, the last plan left one
// of its slots unused, tor.max-instances has room and none of its
// instances is younger than tor.bootstrap-grace (then slo.ErrNotYet).
func (t *torScaler) ScaleUp(ctx context.Context, group string) (int, error) {
	e, st := t.ctl.e, t.ctl.st
	if _, ok := initialBudget(e)[group]; !ok {
		return 0, nil // country mode or no floor: every slot already runs, up to tor.max-instances
	}
	unused, err := readGroupInts(ctx, st, settingUnused)
	if err != nil || unused[group] == 0 {
		return 0, err
	}
	all, err := t.ctl.instances(ctx, "")
	if err != nil || len(all) >= e.cfg.Tor.MaxInstances {
		return 0, err
	}
	runs := 0
	for _, r := range all {
		if r.Group != group {
			continue
		}
		runs++
		if age := t.now().Sub(r.FirstSeen); age < e.cfg.Tor.BootstrapGrace {
			return 0, fmt.Errorf("%s started %v ago may still bootstrap: %w", r.Name, age.Round(time.Second), slo.ErrNotYet)
		}
	}
	budget, err := readGroupInts(ctx, st, settingBudget)
	if err != nil {
		t.log.WithError(err).Warn("replacing an unreadable tor budget")
	}
	budget[group] = runs + 1
	if err := writeGroupInts(ctx, st, settingBudget, budget); err != nil {
		return 0, fmt.Errorf("raising tor group %s's budget: %w", group, err)
	}
	return t.apply(ctx, group, runs)
}

// requestTorgen is the systemd scaler's apply: rewrite torgen.request
// beside the database for proxy-torgen.path.
func requestTorgen(e *env) func(ctx context.Context, group string, runs int) (int, error) {
	path := filepath.Join(filepath.Dir(e.cfg.Database), torgenRequest)
	log := e.log.WithField(logging.FieldComponent, "slo")
	return func(_ context.Context, group string, runs int) (int, error) {
		stamp := time.Now().UTC().Format(time.RFC3339Nano) + " " + group + "\n"
		if err := os.WriteFile(path, []byte(stamp), 0o640); err != nil {
			return 0, fmt.Errorf("asking proxy-torgen for another instance (%s): %w", path, err)
		}
		log.WithField(logging.FieldGroup, group).Infof("tor group %s: asked proxy-torgen for instance %d (budget %d)", group, runs+1, runs+1)
		return 1, nil
	}
}

// regenerate is the run scaler's apply: generate now and count the
// group's new instances.
func (m *torManager) regenerate(ctx context.Context, group string, runs int) (int, error) {
	plan, err := m.generate(ctx)
	if err != nil {
		return 0, fmt.Errorf("bringing up another tor instance: %w", err)
	}
	n := 0
	for _, in := range plan.Instances {
		if in.Group == group {
			n++
		}
	}
	if n > runs {
		m.log.WithField(logging.FieldGroup, group).Infof("tor group %s: started %d instance(s) for the SLO floor (budget %d)", group, n-runs, runs+1)
	}
	return max(n-runs, 0), nil
}

// rotateTor keeps one tor.newnym-period rotation per instance listed in
// the store, following the list every minute, until ctx ends.
func rotateTor(ctx context.Context, ctl *daemonTor) {
	period := ctl.e.cfg.Tor.NewnymPeriod
	if period <= 0 {
		return
	}
	log := ctl.e.log.WithField(logging.FieldComponent, "torgen")
	running := map[int]context.CancelFunc{}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		recs, err := ctl.instances(ctx, "")
		pw, perr := ctl.password(ctx)
		if err == nil && perr == nil {
			want := map[int]bool{}
			for _, r := range recs {
				want[r.Port] = true
				if _, ok := running[r.Port]; !ok {
					rctx, cancel := context.WithCancel(ctx)
					running[r.Port] = cancel
					go torctl.NewNymEvery(rctx, ctl.controlAddr(r.Port), pw, period, log)
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
