package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/proxypool/proxypool/internal/source"
	"github.com/proxypool/proxypool/internal/upstream"
)

func runRefresh(ctx context.Context, g *globals, args []string) error {
	var force, due bool
	e, err := setup(g, "refresh", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&force, "force", false, "fetch even sources fetched more recently than their min-interval")
		fs.BoolVar(&due, "due", false, "fetch only the sources whose interval has passed since their last fetch (the timer's refresh)")
	})
	if err != nil {
		return err
	}
	st, err := e.openStore(ctx, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	r := e.refresher(st, nil)
	var sums []upstream.SourceSummary
	if due && !force {
		sums = r.Due(ctx)
	} else {
		sums = r.Once(ctx, force)
	}
	printSummaries(g.stdout, sums)
	return source.AllFailed(sums)
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
