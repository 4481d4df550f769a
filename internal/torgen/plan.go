package torgen

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/proxypool/proxypool/internal/torgen/torrc"
)

// Action is what a plan does to one instance.
type Action string

// The actions, as WritePlan prints them.
const (
	Start  Action = "start"  // a new torrc, a new instance
	Reload Action = "reload" // a rewritten torrc, the running instance rereads it
	Keep   Action = "keep"   // nothing changes
	Stop   Action = "stop"   // its torrc is removed and the instance stopped
)

// Action says what p does (or, dry, would do) to the instance on port.
func (p Plan) Action(port int) Action {
	switch {
	case slices.Contains(p.Removed, port):
		return Stop
	case slices.Contains(p.New, port):
		return Start
	case slices.Contains(p.Changed, port):
		return Reload
	}
	return Keep
}

// WritePlan prints p as a table, one line per instance and per stopped
// one, with the file each writes or removes under dir, then a summary
// line: what `proxypoold torgen --dry-run` shows before anything changes.
func WritePlan(w io.Writer, p Plan, dir string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tPORT\tGROUP\tKEY\tFILE")
	n := map[Action]int{}
	for _, in := range p.Instances {
		a := p.Action(in.Port)
		n[a]++
		file := torrc.Path(dir, in.Port)
		switch a {
		case Start, Reload:
			file = "write " + file
		default:
			file = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", a, in.Port, in.Group, in.Key, file)
	}
	for _, port := range p.Removed {
		n[Stop]++
		fmt.Fprintf(tw, "%s\t%d\t-\t-\tremove %s\n", Stop, port, torrc.Path(dir, port))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("printing the tor plan: %w", err)
	}
	for _, sh := range p.Shares {
		short := ""
		if sh.Short() > 0 {
			short = fmt.Sprintf(", SHORT %d (tor.max-instances or the port range is full)", sh.Short())
		}
		fmt.Fprintf(w, "group %s: %d instances of %d slots (reserved %d)%s\n", sh.Group, sh.Got, sh.Slots, sh.Reserve, short)
	}
	verb := "planned"
	if p.DryRun {
		verb = "dry run, nothing changed"
	}
	_, err := fmt.Fprintf(w, "tor (%s): %d instances: %d start, %d reload, %d keep, %d stop; %d relays, %d usable exits, %d slots without an instance\n",
		verb, len(p.Instances), n[Start], n[Reload], n[Keep], n[Stop], len(p.Relays), p.Usable, len(p.Dropped))
	return err
}
