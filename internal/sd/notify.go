package sd

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

func notify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("notifying systemd (%s): %w", state, err)
	}
	return nil
}

// Ready tells systemd that start-up finished: listeners are open and the
// service answers. Send it once, right before serving.
func Ready() error { return notify(daemon.SdNotifyReady) }

// Statusf sets the one-line status shown by `systemctl status`.
func Statusf(format string, args ...any) error {
	return notify("STATUS=" + fmt.Sprintf(format, args...))
}

// Reloading tells systemd a configuration reload started; send Ready when
// it is done (with a Statusf first if it failed).
func Reloading() error {
	return notify(daemon.SdNotifyReloading + "\nMONOTONIC_USEC=" + daemon.SdNotifyMonotonicUsec())
}

// Stopping tells systemd the service is shutting down.
func Stopping() error { return notify(daemon.SdNotifyStopping) }

// WatchdogInterval returns how often Watchdog pings (half of WatchdogSec),
// or 0 when systemd does not expect pings.
func WatchdogInterval() time.Duration {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0
	}
	return d / 2
}

// Watchdog pings systemd's watchdog at half of WatchdogSec for as long as
// healthy returns nil, and returns when ctx is done. When healthy fails
// the ping is skipped, so a service that is stuck, rather than dead, is
// restarted by systemd. healthy gets a context bounded by a quarter of
// WatchdogSec. Watchdog returns at once when the watchdog is off.
func Watchdog(ctx context.Context, healthy func(context.Context) error) {
	watchdog(ctx, WatchdogInterval(), healthy, notify)
}

func watchdog(ctx context.Context, every time.Duration, healthy func(context.Context) error, send func(string) error) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			hctx, cancel := context.WithTimeout(ctx, every/2)
			err := healthy(hctx)
			cancel()
			if err == nil {
				send(daemon.SdNotifyWatchdog)
			}
		}
	}
}
