package gateway

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/proxypool/proxypool/internal/gateway/failover"
)

// requestFailed logs a request that got no tunnel: at debug, except a
// target refused before any dial, which is logged at info (it is the
// client's doing and what an operator looks for when a client says the
// gateway refuses it), at most one line a second with the count held
// back, so a client sending thousands cannot flood the journal.
func (g *Gateway) requestFailed(err error, target, client string) {
	var de *failover.Error
	if !errors.As(err, &de) || de.Target == nil {
		g.log.WithError(err).WithField("target", target).Debug("request failed")
		return
	}
	held, ok := g.targetLog.allow(time.Now())
	if !ok {
		return
	}
	l := g.log.WithField("client", client) // the error quotes the target, cut short
	if held > 0 {
		l = l.WithField("suppressed", held)
	}
	l.WithError(de.Target).Info("refused a target no upstream can reach")
}

// everySecond lets one event a second through and counts the rest.
type everySecond struct {
	last atomic.Int64 // unix nanos of the last event let through
	held atomic.Int64 // events held back since
}

func (e *everySecond) allow(now time.Time) (held int64, ok bool) {
	last := e.last.Load()
	if now.UnixNano()-last < int64(time.Second) || !e.last.CompareAndSwap(last, now.UnixNano()) {
		e.held.Add(1)
		return 0, false
	}
	return e.held.Swap(0), true
}
