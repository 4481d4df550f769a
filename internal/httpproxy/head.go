package httpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ErrTooManyFields is returned by ReadHead for a head with more header
// fields than allowed; answer it with 431 like ErrHeaderTooLarge.
var ErrTooManyFields = errors.New("too many request header fields")

// ErrMalformed wraps every parse error of a complete request head (a bad
// request line, target or header field); answer it with 400. Once the head
// is buffered no parse error is a network error, whatever its type (a
// *url.Error satisfies net.Error).
var ErrMalformed = errors.New("malformed request")

// HeadStep is the page a pending head is kept in: a head longer than its
// connection's buffer costs what it holds, rounded up to this, in pages
// reused from head to head (no doubling append, no garbage per step).
const HeadStep = 4 << 10

var headPages = sync.Pool{New: func() any { return new([HeadStep]byte) }}

// HeadLimits bound one request head.
type HeadLimits struct {
	Bytes  int // request line, fields and the empty line
	Fields int // header field lines (a folded continuation counts as one)
}

// headScan finds the end of a head across the reads it arrives in.
type headScan struct {
	lim      HeadLimits
	seen     int  // bytes scanned
	line     int  // bytes of the current line so far
	lastCR   bool // the current line's last byte so far is '\r'
	fold     bool // the current line starts with a space or tab
	lines    int  // request line and fields so far
	end      int  // bytes up to and including the empty line; 0: not yet
	tooMany  bool
	tooLarge bool
}

// scan takes the next bytes of the head; true once it ended or broke a
// limit.
func (h *headScan) scan(b []byte) bool {
	for _, c := range b {
		if h.seen >= h.lim.Bytes {
			h.tooLarge = true
			return true
		}
		h.seen++
		if c != '\n' {
			if h.line == 0 {
				h.fold = c == ' ' || c == '\t'
			}
			h.line++
			h.lastCR = c == '\r'
			continue
		}
		content := h.line
		if h.lastCR {
			content--
		}
		fold := h.fold && h.lines > 1 && content > 0
		h.line, h.lastCR, h.fold = 0, false, false
		switch {
		case content == 0 && h.lines > 0:
			h.end = h.seen
			return true
		case fold: // obs-fold: part of the field before
		default:
			h.lines++
			if h.lines > h.lim.Fields+1 { // the request line is not a field
				h.tooMany = true
				return true
			}
		}
	}
	return false
}

// ReadHead reads from br until it holds a complete request head (the
// request line, fields, the empty line) at its front, without parsing it,
// and returns the reader holding it: br itself while the head fits in
// br's buffer. A longer head waits in pooled HeadStep pages as it
// arrives, and once complete moves into a new reader sized to it that
// reads on from src (what br read from); br then holds nothing the caller
// needs and may go back to its pool. A head over lim.Bytes, however it is
// split into lines, is ErrHeaderTooLarge; over lim.Fields lines
// ErrTooManyFields; read errors (EOF, deadlines) are returned as they are.
// On error the reader returned need not hold what was read.
func ReadHead(br *bufio.Reader, src io.Reader, lim HeadLimits) (*bufio.Reader, error) {
	h := headScan{lim: lim}
	var pages []*[HeadStep]byte
	held := 0 // bytes moved from br into pages
	defer func() {
		for _, p := range pages {
			headPages.Put(p)
		}
	}()
	scanned := 0 // of br's buffered bytes
	for {
		buf, _ := br.Peek(br.Buffered())
		if h.scan(buf[scanned:]) {
			switch {
			case h.tooLarge:
				return br, fmt.Errorf("%w: more than %d bytes", ErrHeaderTooLarge, lim.Bytes)
			case h.tooMany:
				return br, fmt.Errorf("%w: more than %d", ErrTooManyFields, lim.Fields)
			}
			if held == 0 {
				return br, nil
			}
			return joinHead(pages, held, br, src), nil
		}
		scanned = len(buf)
		if len(buf) == br.Size() {
			// br is full of an unfinished head: move it into pages
			for len(buf) > 0 {
				if held%HeadStep == 0 {
					pages = append(pages, headPages.Get().(*[HeadStep]byte))
				}
				n := copy(pages[len(pages)-1][held%HeadStep:], buf)
				held += n
				buf = buf[n:]
			}
			br.Discard(scanned)
			scanned = 0
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return br, err
		}
	}
}

// joinHead is a reader holding the held bytes of pages, then what br
// buffered, then reading on from src.
func joinHead(pages []*[HeadStep]byte, held int, br *bufio.Reader, src io.Reader) *bufio.Reader {
	rs := make([]io.Reader, 0, len(pages)+2)
	for i, p := range pages {
		rs = append(rs, bytes.NewReader(p[:min(HeadStep, held-i*HeadStep)]))
	}
	rest, _ := br.Peek(br.Buffered())
	rs = append(rs, bytes.NewReader(rest), src)
	n := held + len(rest)
	nb := bufio.NewReaderSize(io.MultiReader(rs...), n+1)
	// every page and br's bytes move into nb now (they are buffered
	// readers: no read blocks), so both may be reused
	nb.Peek(n)
	return nb
}

// RebufferInto resets dst to hold what br buffered, then read on from
// src, and returns it. The bytes move into dst's buffer before it
// returns, so br may be reused at once; dst's size must exceed
// br.Buffered().
func RebufferInto(dst, br *bufio.Reader, src io.Reader) *bufio.Reader {
	n := br.Buffered()
	if n == 0 {
		dst.Reset(src)
		return dst
	}
	held, _ := br.Peek(n)
	dst.Reset(io.MultiReader(bytes.NewReader(held), src))
	// one fill takes all of held (the buffer is larger): nothing of br's
	// buffer is read after this
	dst.Peek(n)
	return dst
}
