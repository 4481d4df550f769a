package gateway

import (
	"sync"
	"sync/atomic"
)

// workers runs tasks on goroutines that stay for the next task instead of
// exiting. A connection's goroutine grows its stack to ~16 KiB on the way
// through the handshake and the dial (runtime.morestack/copystack were ~4 %
// of the gateway's CPU per request under newconn load); a reused goroutine
// starts with the stack it already has. At most maxIdle goroutines wait for
// work; the rest exit, and all of them exit once quit is closed.
type workers struct {
	tasks   chan func() // unbuffered: a send succeeds only to a waiting worker
	quit    chan struct{}
	idle    atomic.Int32
	maxIdle int32
	once    sync.Once
}

func newWorkers(maxIdle int) *workers {
	return &workers{tasks: make(chan func()), quit: make(chan struct{}), maxIdle: int32(maxIdle)}
}

// run starts f on a waiting worker, or on a new goroutine when none waits.
func (w *workers) run(f func()) {
	select {
	case w.tasks <- f:
	default:
		go w.work(f)
	}
}

func (w *workers) work(f func()) {
	for {
		f()
		f = nil
		if w.idle.Add(1) > w.maxIdle {
			w.idle.Add(-1)
			return
		}
		select {
		case f = <-w.tasks:
			w.idle.Add(-1)
		case <-w.quit:
			w.idle.Add(-1)
			return
		}
	}
}

// stop makes every waiting worker exit; tasks still running finish.
func (w *workers) stop() { w.once.Do(func() { close(w.quit) }) }
