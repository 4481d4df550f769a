// Package reload is a daemon's config reload (SIGHUP, `systemctl reload`,
// `proxypoold reload`): re-read the file, and when it validates, hand the
// keys that changed to the parts that apply them; when it does not, keep
// the running config and say why. Every attempt is numbered (the
// generation) and recorded, so proxypoolctl status shows the last one and
// `proxypoold reload` can wait for the daemon to acknowledge its own.
package reload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/config"
	"github.com/proxypool/proxypool/internal/store"
)

// Options configure a Reloader.
type Options struct {
	// Path is the config file to re-read; Component and PID name this
	// process in what is recorded.
	Path      string
	Component string
	PID       int
	// Apply applies the keys that changed (config.Diff of running and
	// next); an error means some did not apply, and the running config
	// stays the one to diff against next time.
	Apply func(ctx context.Context, running, next *config.Config, changed []string) error
	// Live are the keys (or key prefixes: "gateway.ports", "groups") that
	// Apply takes without a restart. Any other changed key this process
	// uses (under a prefix of Restart; nil: every key) is logged as
	// waiting for the next restart.
	Live, Restart []string
	// Later are keys under a Live prefix that Apply does not take all
	// the same ("*" matches one element: "groups.*.min-healthy" when
	// "groups" is live for the pool but the floors are not).
	Later []string
	// Record stores each attempt (the store's RecordReload); nil: none.
	Record func(ctx context.Context, r store.Reload) error
	Log    logrus.FieldLogger
}

// Reloader re-reads and applies the config, one reload at a time.
type Reloader struct {
	o       Options
	mu      sync.Mutex
	running *config.Config
	gen     uint64
}

// New returns a Reloader for a process running cfg.
func New(o Options, cfg *config.Config) *Reloader {
	if o.Log == nil {
		l := logrus.New()
		l.Out = io.Discard
		o.Log = l
	}
	if o.PID == 0 {
		o.PID = os.Getpid()
	}
	return &Reloader{o: o, running: cfg}
}

// Started records generation 0, the config the process started with, so
// what status shows is this process's and not a previous one's.
func (r *Reloader) Started(ctx context.Context) {
	if r.o.Record == nil {
		return
	}
	if err := r.o.Record(ctx, store.Reload{Component: r.o.Component, PID: r.o.PID, At: time.Now()}); err != nil {
		r.o.Log.WithError(err).Warn("recording the config the process started with")
	}
}

// Running returns the config in effect.
func (r *Reloader) Running() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running
}

// Reload re-reads the file and applies it, and returns what it recorded.
func (r *Reloader) Reload(ctx context.Context) store.Reload {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	res := store.Reload{Component: r.o.Component, PID: r.o.PID, Generation: r.gen, At: time.Now()}
	log := r.o.Log.WithField("generation", r.gen)
	next, err := config.Load(r.o.Path)
	if err == nil {
		changed := config.Diff(r.running, next)
		if err = r.o.Apply(ctx, r.running, next, changed); err == nil {
			r.running = next
			later := r.later(changed)
			res.Restart = later
			if len(later) > 0 {
				log.Warnf("config reloaded; %s changed but take effect only at the next restart", strings.Join(later, ", "))
			}
			log.Infof("config reloaded: %s", describe(changed))
		} else {
			err = fmt.Errorf("applying %s: %w", r.o.Path, err)
		}
	}
	if err != nil {
		res.Error = err.Error()
		// the error names file:line: key (config.Load) or what did not apply
		log.WithError(err).Error("config reload failed; the running config stays")
	}
	if r.o.Record != nil {
		if rerr := r.o.Record(ctx, res); rerr != nil {
			log.WithError(rerr).Warn("recording the reload")
		}
	}
	return res
}

func (r *Reloader) later(changed []string) []string {
	var out []string
	for _, k := range changed {
		if r.o.NeedsRestart(k) {
			out = append(out, k)
		}
	}
	return out
}

// NeedsRestart reports whether a change of key waits for the process's
// next restart: it uses the key (Restart) and Apply does not take it
// (not under Live, or named by Later).
func (o Options) NeedsRestart(key string) bool {
	live := Any([]string{key}, o.Live...) && !matchAny(key, o.Later)
	return !live && (o.Restart == nil || Any([]string{key}, o.Restart...))
}

// Any reports whether a key of changed is one of keys or below one
// ("groups.us.min-healthy" is below "groups").
func Any(changed []string, keys ...string) bool {
	for _, c := range changed {
		for _, k := range keys {
			if c == k || strings.HasPrefix(c, k+".") {
				return true
			}
		}
	}
	return false
}

// matchAny reports whether key is one of patterns or below one, "*"
// matching any one element.
func matchAny(key string, patterns []string) bool {
	ks := strings.Split(key, ".")
	for _, p := range patterns {
		ps := strings.Split(p, ".")
		if len(ks) < len(ps) {
			continue
		}
		match := true
		for i, e := range ps {
			if e != "*" && e != ks[i] {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

func describe(changed []string) string {
	if len(changed) == 0 {
		return "nothing changed"
	}
	return "changed " + strings.Join(changed, ", ")
}

// Run reloads on every value from hup until ctx ends; signals arriving
// during a reload make one more.
func (r *Reloader) Run(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.Reload(ctx)
		}
	}
}

// ErrNoAck is Wait's answer when the process did not acknowledge a reload
// in time.
var ErrNoAck = errors.New("no acknowledgement of the reload")

// Wait polls reloads (the store's) until the process pid recorded a
// generation after after, and returns it. A reload that kept the running
// config is returned with an error carrying its reason.
func Wait(ctx context.Context, reloads func(context.Context) ([]store.Reload, error), pid int, after uint64) (store.Reload, error) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		rs, err := reloads(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return store.Reload{}, fmt.Errorf("waiting for pid %d: %w", pid, ErrNoAck)
			}
			return store.Reload{}, err
		}
		if got, ok := Of(rs, pid); ok && got.Generation > after {
			if got.Error != "" {
				return got, fmt.Errorf("%s (pid %d) kept its running config: %s", got.Component, pid, got.Error)
			}
			return got, nil
		}
		select {
		case <-ctx.Done():
			return store.Reload{}, fmt.Errorf("waiting for pid %d: %w", pid, ErrNoAck)
		case <-t.C:
		}
	}
}

// Of finds pid's last reload among rs.
func Of(rs []store.Reload, pid int) (store.Reload, bool) {
	for _, r := range rs {
		if r.PID == pid {
			return r, true
		}
	}
	return store.Reload{}, false
}
