package torops

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/slo"
)

// RequestFile is the file beside the database whose rewrite starts
// proxy-torgen.service through proxy-torgen.path.
const RequestFile = "torgen.request"

// Scaler is the SLO guard's slo.TorScaler over a Tor.
type Scaler struct {
	t *Tor
	// apply makes a raised budget take effect and returns how many
	// instances the group gained or was promised.
	apply func(ctx context.Context, group string, runs int) (int, error)
}

// RequestScaler is the systemd scaler: a raised budget is applied by
// rewriting path (RequestFile beside the database) for proxy-torgen.path.
func (t *Tor) RequestScaler(path string) *Scaler {
	return &Scaler{t: t, apply: func(_ context.Context, group string, runs int) (int, error) {
		stamp := t.o.Now().UTC().Format(time.RFC3339Nano) + " " + group + "\n"
		if err := os.WriteFile(path, []byte(stamp), 0o640); err != nil {
			return 0, fmt.Errorf("asking proxy-torgen for another instance (%s): %w", path, err)
		}
		t.guardLog(group).Infof("tor group %s: asked proxy-torgen for instance %d (budget %d)", group, runs+1, runs+1)
		return 1, nil
	}}
}

// guardLog logs a scale-up under the SLO guard's component, where the
// operator reads why the guard acted.
func (t *Tor) guardLog(group string) logrus.FieldLogger {
	return t.log.WithFields(logrus.Fields{logging.FieldComponent: "slo", logging.FieldGroup: group})
}

// NewNym sends NEWNYM to each of the group's instances and returns how
// many it reached.
func (s *Scaler) NewNym(ctx context.Context, group string) (int, error) {
	recs, err := s.t.instances(ctx, group)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	return s.t.newnym(ctx, recs)
}

// ScaleUp raises the group's stored budget to one more instance than it
// runs and applies it, when the group has a budget, the last plan left one
// of its slots unused, the instance cap has room or another group runs at
// least two more (it gives one up), and none of its instances is younger
// than the bootstrap grace (then slo.ErrNotYet).
func (s *Scaler) ScaleUp(ctx context.Context, group string) (int, error) {
	t := s.t
	if _, ok := t.initialBudget()[group]; !ok {
		return 0, nil // country mode or no floor: every slot already runs, up to the instance cap
	}
	state, err := t.o.Store.TorGroups(ctx)
	if err != nil || state[group].Unused == 0 {
		return 0, err
	}
	all, err := t.instances(ctx, "")
	if err != nil {
		return 0, err
	}
	runs, most := 0, map[string]int{}
	for _, r := range all {
		most[r.Group]++
		if r.Group != group {
			continue
		}
		runs++
		if age := t.o.Now().Sub(r.FirstSeen); age < t.o.BootstrapGrace {
			return 0, fmt.Errorf("%s started %v ago may still bootstrap: %w", r.Name, age.Round(time.Second), slo.ErrNotYet)
		}
	}
	// At tor.max-instances another instance comes only from a group that
	// runs more than this one (the plan's shares level budgets over the
	// cap, and groups without one yield to those with).
	if t.o.Gen.MaxInstances > 0 && len(all) >= t.o.Gen.MaxInstances && !runsMore(most, group, runs) {
		return 0, nil
	}
	if err := t.o.Store.SetTorBudget(ctx, group, runs+1); err != nil {
		return 0, fmt.Errorf("raising tor group %s's budget: %w", group, err)
	}
	return s.apply(ctx, group, runs)
}

// runsMore reports whether a group other than group runs more than runs
// instances (per group counts in n).
func runsMore(n map[string]int, group string, runs int) bool {
	for g, c := range n {
		if g != group && c > runs+1 {
			return true
		}
	}
	return false
}
