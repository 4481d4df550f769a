package gateway

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Relaying. Each direction runs a plain read/write loop, never io.Copy:
// between TCP conns io.Copy splices through a pipe pair per call that Go
// keeps in a pool, so thousands of short tunnels would hold thousands of
// pipe fds. When the source exposes its fd, the loop waits for readability
// without holding a buffer and borrows one from a pool only for the
// read+write: an idle tunnel costs its goroutines, not 2×16 KiB.

const bufSize = 16 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// relay copies both ways until both directions ended, half-closing each
// write side when its source reaches EOF, and closing both on an error or
// when neither direction moved for idle. It returns the bytes copied up
// (client → upstream) and down.
//
// The client's read deadline must already be set to now+idle (tunnel does
// it in the same call that clears the handshake deadline); the caller
// closes both conns after relay returns.
//
// With a watch (wt non-nil) the tunnel is on probation until the
// target's first byte goes down (watch.go): a break before that ends
// relay with wt.broken set and the client conn left open.
func relay(w *workers, client, up net.Conn, idle time.Duration, wt *watch) (nUp, nDown int64) {
	t := &tunnelState{}
	t.last.Store(time.Now().UnixNano())
	t.done = make(chan struct{})
	t.client, t.up, t.idle, t.w = client, up, idle, wt
	w.run(t.down)
	nUp = t.copyHalf(up, client)
	<-t.done
	return nUp, t.nDown
}

// tunnelState is what both directions of one tunnel share (one
// allocation instead of a closure and its captured variables).
type tunnelState struct {
	last   atomic.Int64 // UnixNano of the last read, either direction
	ended  atomic.Int32 // directions that reached EOF
	done   chan struct{}
	client net.Conn
	up     net.Conn
	idle   time.Duration
	nDown  int64
	w      *watch // nil: no probation
}

func (t *tunnelState) down() {
	t.up.SetReadDeadline(time.Now().Add(t.idle))
	t.nDown = t.copyHalf(t.client, t.up)
	close(t.done)
}

// copyHalf copies src → dst and returns the bytes written.
func (t *tunnelState) copyHalf(dst, src net.Conn) int64 {
	last, idle := &t.last, t.idle
	var err error
	var n int64
	h := t.w.half(src == t.up)
	if rc := rawConn(src); rc != nil {
		n, err = copyRaw(dst, src, rc, last, idle, h)
	} else {
		n, err = copyBuf(dst, src, last, idle, h)
	}
	if h.w != nil {
		if h.ended(err) {
			// broke before the target spoke: only the upstream goes, the
			// client waits for what the caller makes of it
			if h.down {
				src.Close()
				t.client.SetReadDeadline(time.Now()) // wake the other half
			}
			return n
		}
	}
	if err == nil || errors.Is(err, io.EOF) {
		if t.ended.Add(1) == 2 {
			// the other direction already ended cleanly, so dst has
			// sent its FIN and was read to EOF: the caller's Close
			// sends our FIN, no separate shutdown needed.
			return n
		}
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			if cw.CloseWrite() == nil {
				return n
			}
		}
	}
	// error, idle or no half-close: end the whole tunnel
	dst.Close()
	src.Close()
	return n
}

func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// stillActive handles a read deadline: if the other direction moved within
// idle, push the deadline and go on.
func stillActive(src net.Conn, err error, last *atomic.Int64, idle time.Duration) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	l := time.Unix(0, last.Load())
	if time.Since(l) >= idle {
		return false
	}
	src.SetReadDeadline(l.Add(idle))
	return true
}

func copyRaw(dst, src net.Conn, rc syscall.RawConn, last *atomic.Int64, idle time.Duration, h half) (total int64, _ error) {
	var (
		buf  *[]byte
		n    int
		rerr error
	)
	read := func(fd uintptr) bool {
		buf = bufPool.Get().(*[]byte)
		for {
			n, rerr = syscall.Read(int(fd), *buf)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			bufPool.Put(buf)
			buf = nil
			return false // wait for readability without a buffer
		}
		return true
	}
	for {
		err := rc.Read(read)
		if err != nil {
			if buf != nil {
				bufPool.Put(buf)
				buf = nil
			}
			if !h.broken() && stillActive(src, err, last, idle) {
				continue
			}
			return total, err
		}
		if rerr != nil {
			bufPool.Put(buf)
			buf = nil
			return total, rerr
		}
		if n == 0 {
			bufPool.Put(buf)
			buf = nil
			return total, io.EOF
		}
		last.Store(time.Now().UnixNano())
		if err := h.chunk((*buf)[:n]); err != nil {
			bufPool.Put(buf)
			buf = nil
			return total, err
		}
		w, werr := dst.Write((*buf)[:n])
		total += int64(w)
		bufPool.Put(buf)
		buf = nil
		if werr != nil {
			return total, werr
		}
	}
}

func copyBuf(dst, src net.Conn, last *atomic.Int64, idle time.Duration, h half) (total int64, _ error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	b := *bp
	for {
		n, err := src.Read(b)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if herr := h.chunk(b[:n]); herr != nil {
				return total, herr
			}
			w, werr := dst.Write(b[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
		}
		if err != nil {
			if !h.broken() && stillActive(src, err, last, idle) {
				continue
			}
			return total, err
		}
	}
}
