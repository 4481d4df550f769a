package torops

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torgen"
	"github.com/proxypool/proxypool/internal/torgen/torrc"
	"github.com/proxypool/proxypool/internal/units"
	"github.com/proxypool/proxypool/internal/upstream"
)

// Disable is torgen once tor.enabled is false: the tor@ instances an earlier
// run made are stopped and disabled, their torrc files removed and their
// upstreams taken out of the store (open opens it). With dry, it prints what
// it would stop and remove to w and changes nothing.
func Disable(ctx context.Context, torrcDir string, open func(context.Context) (*store.Store, error), dry bool, w io.Writer, log logrus.FieldLogger) error {
	r := &units.Runner{TorrcDir: torrcDir, Log: log}
	owned, err := r.Owned()
	if err != nil || len(owned) == 0 {
		log.Info("tor.enabled is false: nothing to do (no instance of ours runs)")
		return nil
	}
	if dry {
		have, err := torrc.ReadKeys(torrcDir)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "tor.enabled is false: would stop and disable tor@ instances %v\n", owned)
		return torgen.WritePlan(w, torgen.Plan{DryRun: true, Removed: torrc.Stale(have, nil)}, torrcDir)
	}
	conn, err := units.Dial(ctx)
	if err != nil {
		return fmt.Errorf("tor.enabled is false but %d instances of ours exist; connecting to systemd to stop them: %w", len(owned), err)
	}
	defer conn.Close()
	r.M = conn
	if err := r.Apply(ctx, nil, nil); err != nil {
		return fmt.Errorf("stopping tor instances %v: %w", owned, err)
	}
	if _, err := torrc.RemoveStale(torrcDir, nil); err != nil {
		log.WithError(err).Warn("removing generated torrc files")
	}
	st, err := open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.UpsertSource(ctx, upstream.SourceMeta{Name: SourceName, Format: SourceName}, nil); err != nil {
		return fmt.Errorf("removing tor instances from the store: %w", err)
	}
	log.Infof("tor.enabled is false: stopped and removed tor instances %v", owned)
	return nil
}

// DryRunStore is the store a dry run plans from: the database at path
// opened read-only, or, when there is none yet, an empty one that close
// throws away.
func DryRunStore(ctx context.Context, path string) (st *store.Store, close func(), err error) {
	if _, serr := os.Stat(path); serr == nil || store.IsPostgres(path) {
		st, err = store.OpenReadOnly(ctx, path)
		return st, func() { st.Close() }, err
	}
	tmp, err := os.MkdirTemp("", "proxypool-torgen-dry-")
	if err != nil {
		return nil, nil, err
	}
	st, err = store.Open(ctx, filepath.Join(tmp, "empty.db"), store.Options{})
	if err != nil {
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	return st, func() { st.Close(); os.RemoveAll(tmp) }, nil
}
