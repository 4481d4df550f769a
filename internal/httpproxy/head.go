package httpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// ErrTooManyFields is returned by ReadHead for a head with more header
// fields than allowed; answer it with 431 like ErrHeaderTooLarge.
var ErrTooManyFields = errors.New("too many request header fields")

// ErrMalformed wraps every parse error of a complete request head (a bad
// request line, target or header field); answer it with 400. Once the head
// is buffered no parse error is a network error, whatever its type (a
// *url.Error satisfies net.Error).
var ErrMalformed = errors.New("malformed request")

// HeadStep is how much a head's buffer grows at a time: a pending head
// costs what it holds, rounded up to this, not the doubling of an append.
const HeadStep = 4 << 10

// HeadLimits bound one request head.
type HeadLimits struct {
	Bytes  int // request line, fields and the empty line
	Fields int // header field lines (a folded continuation counts as one)
}

// ReadHead reads from br until it holds a complete request head (the
// request line, fields, the empty line) at its front, without parsing it,
// and returns the reader holding it: br itself while the head fits in
// br's buffer, else a reader whose buffer grew from br's in HeadStep
// steps, reading on from src (what br read from). After a different
// reader is returned br holds nothing the caller needs; it may go back to
// its pool. A head over lim.Bytes, however it is split into lines, is
// ErrHeaderTooLarge; over lim.Fields lines ErrTooManyFields. Read errors
// (EOF, deadlines) are returned as they are, with the reader so far.
func ReadHead(br *bufio.Reader, src io.Reader, lim HeadLimits) (*bufio.Reader, error) {
	scanned, lineStart, lines := 0, 0, 0
	for {
		buf, _ := br.Peek(br.Buffered())
		for i := scanned; i < len(buf) && i < lim.Bytes; i++ {
			if buf[i] != '\n' {
				continue
			}
			line := buf[lineStart:i]
			lineStart = i + 1
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
			if len(line) == 0 && lines > 0 {
				return br, nil
			}
			if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && lines > 1 {
				continue // obs-fold: part of the field before
			}
			lines++
			if lines > lim.Fields+1 { // the request line is not a field
				return br, fmt.Errorf("%w: more than %d", ErrTooManyFields, lim.Fields)
			}
		}
		scanned = min(len(buf), lim.Bytes)
		if len(buf) >= lim.Bytes {
			return br, fmt.Errorf("%w: more than %d bytes", ErrHeaderTooLarge, lim.Bytes)
		}
		if len(buf) == br.Size() {
			br = Rebuffer(br, src, min(br.Size()+HeadStep, lim.Bytes))
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return br, err
		}
	}
}

// Rebuffer returns a reader of the given buffer size holding what br
// buffered, then reading on from src. size must exceed br.Buffered().
func Rebuffer(br *bufio.Reader, src io.Reader, size int) *bufio.Reader {
	return RebufferInto(bufio.NewReaderSize(nil, size), br, src)
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
