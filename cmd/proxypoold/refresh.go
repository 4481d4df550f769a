package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/proxypool/proxypool/internal/logging"
	"github.com/proxypool/proxypool/internal/source"
	"github.com/proxypool/proxypool/internal/upstream"
)

func runRefresh(ctx context.Context, g *globals, args []string) error {
	var force bool
	if err := subFlags(g, "refresh", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&force, "force", false, "fetch even sources fetched more recently than their min-interval")
	}); err != nil {
		return err
	}
	e, err := load(g)
	if err != nil {
		return err
	}
	st, err := e.openStore(ctx, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	sums := refreshOnce(ctx, e, st, force)
	printSummaries(g.stdout, sums)
	failed := 0
	for _, s := range sums {
		if s.Err != "" {
			failed++
		}
	}
	if failed > 0 && failed == len(sums) {
		return fmt.Errorf("every source failed (%d)", failed)
	}
	return nil
}

// refreshOnce fetches every configured source and logs one line per source.
func refreshOnce(ctx context.Context, e *env, sink source.Sink, force bool) []upstream.SourceSummary {
	srcs := e.sources()
	if len(srcs) == 0 {
		e.log.Warn("no sources configured (sources: in the config): nothing to refresh")
		return nil
	}
	sums := e.fetcher().Refresh(ctx, sink, srcs, force)
	log := e.log.WithField(logging.FieldComponent, "refresh")
	for _, s := range sums {
		l := log.WithField(logging.FieldSource, s.Source)
		switch {
		case s.Err != "":
			l.WithField("error", s.Err).Warnf("source %s failed: %s (its upstreams are kept)", s.Source, s.Err)
		case s.NotModified:
			l.Infof("source %s not modified", s.Source)
		default:
			l.Infof("source %s: %d new, %d seen again, %d gone, %d failed lines", s.Source, s.New, s.Seen, s.Gone, s.Failed)
		}
	}
	return sums
}

func printSummaries(w io.Writer, sums []upstream.SourceSummary) {
	if len(sums) == 0 {
		return
	}
	fmt.Fprintf(w, "%-20s %6s %6s %6s %7s  %s\n", "SOURCE", "NEW", "SEEN", "GONE", "FAILED", "NOTE")
	for _, s := range sums {
		note := ""
		switch {
		case s.Err != "":
			note = "error: " + s.Err
		case s.NotModified:
			note = "not modified"
		}
		fmt.Fprintf(w, "%-20s %6d %6d %6d %7d  %s\n", s.Source, s.New, s.Seen, s.Gone, s.Failed, note)
	}
}
