package gateway

import (
	"context"
	"sync"
	"sync/atomic"
)

// admission bounds and counts client connections, the same for both
// paths: MaxConns slots, the number active, and the wait group a drain
// waits on. A connection holds a slot from before its accept until it
// ends, so at MaxConns the next one stays in the listen backlog.
type admission struct {
	slots    chan struct{}
	active   *atomic.Int64 // Stats.Active
	draining atomic.Bool
	wg       sync.WaitGroup
}

func newAdmission(max int, active *atomic.Int64) *admission {
	return &admission{slots: make(chan struct{}, max), active: active}
}

// wait takes a slot, waiting for one; false when ctx ended first.
func (a *admission) wait(ctx context.Context) bool {
	select {
	case a.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// try takes a slot without waiting; false at MaxConns or while draining.
func (a *admission) try() bool {
	if a.draining.Load() {
		return false
	}
	select {
	case a.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// unadmit gives back a slot no connection came of.
func (a *admission) unadmit() { <-a.slots }

// open counts a connection accepted on a slot; false (the slot given
// back) while draining.
func (a *admission) open() bool {
	if a.draining.Load() {
		<-a.slots
		return false
	}
	a.add()
	return true
}

// add counts a connection accepted on a slot.
func (a *admission) add() {
	a.active.Add(1)
	a.wg.Add(1)
}

// done ends a connection: its slot back, and one fewer for a drain.
func (a *admission) done() {
	a.active.Add(-1)
	<-a.slots
	a.wg.Done()
}
