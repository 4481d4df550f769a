package torops

import (
	"context"
	"time"

	"github.com/proxypool/proxypool/internal/torctl"
)

// Rotate keeps one NewnymPeriod rotation per instance listed in the
// store, following the list every minute, until ctx ends. It returns at
// once when NewnymPeriod is 0.
func (t *Tor) Rotate(ctx context.Context) {
	period := t.o.NewnymPeriod
	if period <= 0 {
		return
	}
	running := map[int]context.CancelFunc{}
	tk := time.NewTicker(time.Minute)
	defer tk.Stop()
	for {
		recs, err := t.instances(ctx, "")
		pw, perr := t.password(ctx, true)
		if err == nil && perr == nil {
			want := map[int]bool{}
			for _, r := range recs {
				want[r.Port] = true
				if _, ok := running[r.Port]; !ok {
					rctx, cancel := context.WithCancel(ctx)
					running[r.Port] = cancel
					go torctl.NewNymEvery(rctx, t.controlAddr(r.Port), pw, period, t.log)
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
		case <-tk.C:
		}
	}
}
