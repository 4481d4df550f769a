package torops

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/torctl"
	"github.com/proxypool/proxypool/internal/units"
	"github.com/proxypool/proxypool/internal/upstream"
)

// The methods of manager.Tor: `proxypoolctl tor status|newnym|generate`.

// Status lists the instances with their unit state (systemd) and the exit
// each uses now, when its control answers.
func (t *Tor) Status(ctx context.Context) ([]control.TorInstance, error) {
	recs, err := t.instances(ctx, "")
	if err != nil {
		return nil, err
	}
	states := map[string]string{}
	if t.o.Systemd && len(recs) > 0 {
		var names []string
		for _, r := range recs {
			names = append(names, units.UnitName(r.Port))
		}
		if conn, err := units.Dial(ctx); err == nil {
			if us, err := conn.ListUnitsByNamesContext(ctx, names); err == nil {
				for _, u := range us {
					states[u.Name] = u.ActiveState
				}
			}
			conn.Close()
		}
	}
	pw, err := t.password(ctx, true)
	if err != nil {
		return nil, err
	}
	out := make([]control.TorInstance, len(recs))
	var wg sync.WaitGroup
	for i, r := range recs {
		out[i] = control.TorInstance{Port: r.Port, Group: r.Group, Country: r.Country, ExitIP: r.ExitIP}
		if t.o.Systemd { // run's children are no unit: naming one would send the operator to systemctl for nothing
			out[i].Unit = units.UnitName(r.Port)
		}
		if s, ok := states[out[i].Unit]; ok {
			out[i].State = s
		}
		wg.Add(1)
		go func(in *control.TorInstance) {
			defer wg.Done()
			t.current(ctx, in, pw)
		}(&out[i])
	}
	wg.Wait()
	return out, nil
}

// current fills in's exit from its control, and its state when systemd
// gave none.
func (t *Tor) current(ctx context.Context, in *control.TorInstance, pw string) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := torctl.DialPassword(ctx, t.controlAddr(in.Port), pw)
	if err != nil {
		if in.State == "" {
			in.State = "unreachable"
		}
		return
	}
	defer c.Close()
	if in.State == "" {
		in.State = "running"
	}
	if relay, _, err := c.CurrentExit(ctx); err == nil {
		in.ExitIP, in.Country = relay.Address, relay.Country
	}
}

// Newnym asks the instance on port (0: every instance) for new circuits.
func (t *Tor) Newnym(ctx context.Context, port int) error {
	recs, err := t.instances(ctx, "")
	if err != nil {
		return err
	}
	if port != 0 {
		var one []upstream.Record
		for _, r := range recs {
			if r.Port == port {
				one = append(one, r)
			}
		}
		recs = one
	}
	if len(recs) == 0 {
		if port != 0 {
			return fmt.Errorf("no tor instance on port %d (proxypoolctl tor status): %w", port, control.ErrNotFound)
		}
		return fmt.Errorf("no tor instances (proxypoolctl tor generate): %w", control.ErrNotFound)
	}
	_, err = t.newnym(ctx, recs)
	return err
}

// Generate starts proxy-torgen.service and waits for it (systemd only:
// the probe may not write /etc/tor itself; `run` regenerates every
// tor.refresh).
func (t *Tor) Generate(ctx context.Context, progress func(done, total int)) error {
	if !t.o.Systemd {
		return errors.New("tor generate needs systemd (proxy-torgen.service); proxypoold run regenerates every tor.refresh")
	}
	progress(0, 1)
	conn, err := units.Dial(ctx)
	if err != nil {
		return fmt.Errorf("connecting to systemd: %w", err)
	}
	defer conn.Close()
	ch := make(chan string, 1)
	if _, err := conn.StartUnitContext(ctx, "proxy-torgen.service", "replace", ch); err != nil {
		return fmt.Errorf("starting proxy-torgen.service: %w (or run: systemctl start proxy-torgen.service)", err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("proxy-torgen.service: %s (journalctl -u proxy-torgen)", res)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	progress(1, 1)
	return nil
}
