package torctl

import (
	"context"
	"io"
	"time"

	"github.com/sirupsen/logrus"
)

// NewNym connects to the tor at addr (DialPassword: password "" for
// cookie or no authentication), asks it for new circuits and disconnects.
func NewNym(ctx context.Context, addr, password string) error {
	c, err := DialPassword(ctx, addr, password)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.NewNym(ctx)
}

// NewNymEvery sends NEWNYM to the tor at addr every period until ctx ends
// (tor.newnym-period), authenticating as DialPassword does. It reconnects
// after errors (the instance may be restarting) and never returns before
// ctx ends; log may be nil.
func NewNymEvery(ctx context.Context, addr, password string, period time.Duration, log logrus.FieldLogger) {
	if period <= 0 {
		return
	}
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	log = log.WithField("control", addr)
	var c *Conn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if c == nil {
			var err error
			if c, err = DialPassword(cctx, addr, password); err != nil {
				cancel()
				log.WithError(err).Warn("tor NEWNYM: cannot reach control")
				c = nil
				continue
			}
		}
		if err := c.NewNym(cctx); err != nil {
			log.WithError(err).Warn("tor NEWNYM failed; reconnecting next time")
			c.Close()
			c = nil
		} else {
			log.Debug("tor NEWNYM sent")
		}
		cancel()
	}
}
