package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/proxypool/proxypool/internal/config"
	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/geoip"
	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/probe"
	"github.com/proxypool/proxypool/internal/source"
	"github.com/proxypool/proxypool/internal/store"
	"github.com/proxypool/proxypool/internal/torgen/exits"
	"github.com/proxypool/proxypool/internal/torops"
	"github.com/proxypool/proxypool/internal/upstream"
)

// env is what every subcommand starts from.
type env struct {
	cfg *config.Config
	log *logrus.Logger
}

func load(g *globals) (*env, error) {
	path := config.Path(g.config)
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err // already "file:line: key: problem"
	}
	log := logging.New(logging.Options{Level: cfg.Log.Level, Format: cfg.Log.Format})
	for _, w := range cfg.Warnings {
		log.Warn(w.Error()) // file:line: key: what to change
	}
	return &env{cfg: cfg, log: log}, nil
}

// stateDir is where this host's files beside the database go
// (torgen.request): the SQLite file's directory, or, on PostgreSQL, the
// unit's state directory (Tor instances stay per host).
func (e *env) stateDir() string {
	if !store.IsPostgres(e.cfg.Database) {
		return filepath.Dir(e.cfg.Database)
	}
	if d, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); d != "" {
		return d
	}
	return "/var/lib/proxypool"
}

func (e *env) openStore(ctx context.Context, onChange func(uint64)) (*store.Store, error) {
	if dir := filepath.Dir(e.cfg.Database); dir != "" && !store.IsPostgres(e.cfg.Database) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("creating the database directory: %w", err)
		}
	}
	st, err := store.Open(ctx, e.cfg.Database, e.storeOptions(onChange))
	if err != nil {
		return nil, fmt.Errorf("%s: database: %w", e.cfg.Pos("database"), err)
	}
	return st, nil
}

// storeOptions is what the config says of the store (the life-cycle
// policy, the history kept); onChange hears of every servable change.
func (e *env) storeOptions(onChange func(uint64)) store.Options {
	return store.Options{
		Logger:             e.log.WithField(logging.FieldComponent, "store"),
		Policy:             e.cfg.Policy(),
		HistoryPerUpstream: e.cfg.Probe.History,
		OnChange:           onChange,
	}
}

func (e *env) sources() []source.Source {
	out := make([]source.Source, 0, len(e.cfg.Sources))
	for _, s := range e.cfg.Sources {
		out = append(out, source.Source{
			Name: s.Name, URL: s.URL, Format: s.Format,
			Timeout: s.Timeout, MinInterval: s.MinInterval, Interval: s.Interval, MaxBytes: int64(s.MaxBytes),
		})
	}
	return out
}

// refresher refreshes the configured sources into sink; added (nil:
// nobody) hears of a refresh that brought new upstreams.
func (e *env) refresher(sink source.Sink, added func()) *source.Refresher {
	log := e.log.WithField(logging.FieldComponent, "refresh")
	return &source.Refresher{
		Fetcher: &source.Fetcher{Logger: log, Concurrency: e.cfg.Refresh.Concurrency},
		Sources: e.sources(), Sink: sink, Log: log, Added: added,
		RetireAfter: e.cfg.Refresh.RetireAfter, Keep: []string{torops.SourceName},
	}
}

// countryFunc opens the configured geoip database. A missing file is not
// fatal: countries stay unknown and the log says why.
func (e *env) countryFunc() func(string) string {
	p := e.cfg.Probe
	if p.GeoIP == "" {
		return nil
	}
	var db *geoip.DB
	var err error
	if strings.HasSuffix(p.GeoIP, ".mmdb") {
		db, err = geoip.OpenPath(p.GeoIP)
	} else {
		g6 := p.GeoIP6
		if g6 != "" {
			if _, serr := os.Stat(g6); serr != nil {
				g6 = ""
			}
		}
		db, err = geoip.Open(p.GeoIP, g6)
	}
	if err != nil {
		e.log.WithError(err).Warnf("%s: probe.geoip: countries will be unknown", e.cfg.Pos("probe.geoip"))
		return nil
	}
	return db.CountryOf
}

// qualityFunc opens the configured ASN database and exit class table. A
// missing database is not fatal, as with countries: ASNs and classes stay
// unknown and the log says why; a broken class file leaves the shipped
// table alone in use.
func (e *env) qualityFunc() func(string) upstream.Quality {
	p := e.cfg.Probe
	if p.ASNDatabase == "" {
		return nil
	}
	db, err := geoip.OpenPath(p.ASNDatabase)
	if err != nil {
		e.log.WithError(err).Warnf("%s: probe.asn-database: exit ASNs and classes will be unknown", e.cfg.Pos("probe.asn-database"))
		return nil
	}
	classes, err := geoip.NewClassifier(p.ASNClasses)
	if err != nil {
		e.log.WithError(err).Warnf("%s: probe.asn-classes: using the shipped class table alone", e.cfg.Pos("probe.asn-classes"))
		if classes, err = geoip.NewClassifier(""); err != nil {
			e.log.WithError(err).Warn("probe: the shipped exit class table does not load: exit classes will be unknown")
			classes = nil
		}
	}
	return func(ip string) upstream.Quality {
		asn, org := db.ASNOf(ip)
		q := upstream.Quality{ASN: asn, Org: org}
		if classes != nil {
			q.Class = classes.Class(asn, org)
		}
		return q
	}
}

// fitsGroup is the probe's check that an upstream made for a group (a tor
// instance: its own group field) exits in a country that group takes, so
// a nonus instance leaving through the US serves neither port.
func (e *env) fitsGroup(u upstream.Upstream, country string) error {
	g, ok := e.cfg.Groups[u.Group]
	if u.Group == "" || !ok {
		return nil
	}
	if !(exits.Group{Countries: g.Countries, ExcludeCountries: g.ExcludeCountries}).Match(upstream.Relay{Country: country}) {
		return fmt.Errorf("exit country %s is outside its group %s", country, u.Group)
	}
	return nil
}

func (e *env) prober(d *dial.Pool, progress func(probe.Progress)) (*probe.Prober, error) {
	pr, err := probe.New(d, e.proberOptions(progress))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.cfg.Pos("probe.judges"), err)
	}
	return pr, nil
}

// proberOptions is what the config says of the probe.
func (e *env) proberOptions(progress func(probe.Progress)) probe.Options {
	p := e.cfg.Probe
	opts := probe.Options{
		Judges:      p.Judges,
		Timeout:     p.Timeout,
		Concurrency: p.Concurrency,
		RealIP:      p.RealIP,
		UplinkCheck: p.UplinkCheck,
		Country:     e.countryFunc(),
		Quality:     e.qualityFunc(),
		IPv6Judge:   p.IPv6Judge,
		Fits:        e.fitsGroup,
		Classify:    dial.Classify,
		Progress:    progress,
		Logger:      e.log.WithField(logging.FieldComponent, "probe"),
	}
	if p.Target.Enabled {
		opts.TargetURL, opts.TargetStatus = p.Target.URL, p.Target.Status
	}
	return opts
}
