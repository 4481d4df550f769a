package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/proxypool/proxypool/internal/source"
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
	var rep source.Report
	if due && !force {
		rep = r.Due(ctx)
	} else {
		rep = r.Once(ctx, force)
	}
	printSummaries(g.stdout, rep)
	return source.AllFailed(rep.Sources)
}

func printSummaries(w io.Writer, rep source.Report) {
	if len(rep.Sources) > 0 {
		fmt.Fprintf(w, "%-20s %6s %6s %6s %7s  %s\n", "SOURCE", "NEW", "SEEN", "GONE", "FAILED", "NOTE")
	}
	for _, s := range rep.Sources {
		note := ""
		switch {
		case s.Err != "":
			note = "error: " + s.Err
		case s.NotModified:
			note = "not modified"
		case s.Removed > 0:
			note = fmt.Sprintf("%d listed but removed by the operator", s.Removed)
		}
		fmt.Fprintf(w, "%-20s %6d %6d %6d %7d  %s\n", s.Source, s.New, s.Seen, s.Gone, s.Failed, note)
	}
	switch {
	case rep.RetireErr != "":
		fmt.Fprintf(w, "retired: error: %s\n", rep.RetireErr)
	case rep.Retired > 0:
		fmt.Fprintf(w, "retired: %d (no source has listed them for refresh.retire-after)\n", rep.Retired)
	}
}
