package gateway

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/proxypool/proxypool/internal/gateway/failover"
	"github.com/proxypool/proxypool/internal/upstream"
)

// A tunnel's probation on the goroutine path (the event loops keep the
// same rule in their own state). Until the target's first byte goes down
// to the client, an upstream that closes, resets, or answers the client's
// first bytes with another protocol's (failover.Mismatch) has broken the
// stream: that counts against it (failover.Broke), and where no byte of
// the client's reached it yet the request goes on through the next
// upstream with the bytes read since, which no upstream has seen. Once a
// client byte went up it is not replayed: the broken upstream may have
// delivered it (a request with effects) before it failed.

// errBroken ends a half of a tunnel that broke on probation.
var errBroken = errors.New("tunnel broke before the target spoke")

const (
	watching int32 = iota
	confirmed
	broken
)

type watch struct {
	state   atomic.Int32
	confirm func() // called once, when the target's first byte goes down

	mu          sync.Mutex
	sentUp      bool   // a client byte went to the upstream
	first       []byte // the client's first bytes, for Mismatch
	clientEnded bool   // the client's direction ended first: no break
	cause       upstream.Cause
	err         error  // why it broke (cause none: classify it)
	stash       []byte // client bytes read after the break, never sent
}

// half is one direction's view of a watch; zero (w nil) watches nothing.
type half struct {
	w    *watch
	down bool // upstream → client
}

func (w *watch) half(down bool) half { return half{w: w, down: down} }

func (h half) broken() bool { return h.w != nil && h.w.state.Load() == broken }

// chunk looks at bytes read before they are written; errBroken stops the
// half (the bytes are kept for the next upstream, or not sent at all).
func (h half) chunk(b []byte) error {
	w := h.w
	if w == nil || w.state.Load() == confirmed {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.state.Load() == broken:
		if !h.down {
			w.stash = append(w.stash, b...)
		}
		return errBroken
	case !h.down:
		if !w.sentUp {
			w.sentUp = true
			w.first = append([]byte(nil), b[:min(len(b), 16)]...)
		}
		return nil
	case failover.Mismatch(w.first, b):
		w.state.Store(broken)
		w.cause, w.err = upstream.CauseHandshake, failover.ErrGarbage
		return errBroken
	}
	w.state.Store(confirmed)
	if w.confirm != nil {
		w.confirm()
	}
	return nil
}

// ended takes the error a half ended with and reports whether the tunnel
// broke (the half must then leave the client open).
func (h half) ended(err error) bool {
	w := h.w
	if errors.Is(err, errBroken) || w.state.Load() == broken {
		return true
	}
	if w.state.Load() != watching {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !h.down {
		if err == nil || errors.Is(err, io.EOF) {
			w.clientEnded = true
		}
		return false
	}
	if w.clientEnded || w.state.Load() != watching || errors.Is(err, os.ErrDeadlineExceeded) {
		return false // the client ended first, or the tunnel sat idle
	}
	if err == nil {
		err = io.EOF
	}
	w.state.Store(broken)
	w.err = err
	return true
}
