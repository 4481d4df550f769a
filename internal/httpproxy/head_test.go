package httpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// oneByte hands out one byte a Read, as a client trickling its head.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), 1)]) }

func TestReadHead(t *testing.T) {
	lim := HeadLimits{Bytes: 10 << 10, Fields: 5}
	tests := []struct {
		name, in string
		wantErr  error
		wantHead int // bytes of head buffered at the front
	}{
		{"small", "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\nbody", nil, 35},
		{"bare LF", "GET http://h/ HTTP/1.1\nHost: h\n\nbody", nil, 32},
		{"fields at the cap", "GET / HTTP/1.1\r\n" + strings.Repeat("a: b\r\n", 5) + "\r\n", nil, 48},
		{"folds are one field", "GET / HTTP/1.1\r\n" + strings.Repeat("a: b\r\n c\r\n", 5) + "\r\n", nil, 68},
		{"one field over", "GET / HTTP/1.1\r\n" + strings.Repeat("a: b\r\n", 6) + "\r\n", ErrTooManyFields, 0},
		{"grows past the first buffer", "GET / HTTP/1.1\r\nX: " + strings.Repeat("x", 9000) + "\r\n\r\n", nil, 9023},
		{"one long line", "GET / HTTP/1.1\r\nX: " + strings.Repeat("x", 11<<10) + "\r\n\r\n", ErrHeaderTooLarge, 0},
		{"many short lines", "GET / HTTP/1.1\r\n" + strings.Repeat("\r\n\r\n", 1), nil, 18},
		{"no end", "GET / HTTP/1.1\r\nX: y\r\n", io.EOF, 0},
	}
	for _, tt := range tests {
		for _, trickle := range []bool{false, true} {
			var src io.Reader = strings.NewReader(tt.in)
			if trickle {
				src = oneByte{src}
			}
			br, err := ReadHead(bufio.NewReaderSize(src, 4096), src, lim)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("%s (trickle %v): err %v, want %v", tt.name, trickle, err, tt.wantErr)
				continue
			}
			if err != nil {
				continue
			}
			if br.Size() > 4096 && br.Size() > len(tt.in)+1 {
				t.Errorf("%s: %d byte buffer for %d bytes read", tt.name, br.Size(), len(tt.in))
			}
			if head, _ := br.Peek(tt.wantHead); len(head) != tt.wantHead {
				t.Errorf("%s: %d bytes of a %d byte head buffered", tt.name, len(head), tt.wantHead)
			}
			all, _ := io.ReadAll(br)
			if string(all) != tt.in {
				t.Errorf("%s (trickle %v): the reader gives %d bytes, want all %d sent", tt.name, trickle, len(all), len(tt.in))
			}
		}
	}
}

// ReadHead never panics, never buffers past its cap, and the reader of a
// complete head gives back every byte that was sent, in order.
func FuzzReadHead(f *testing.F) {
	f.Add([]byte("GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n"), uint8(3))
	f.Add([]byte("CONNECT h:1 HTTP/1.1\n a\n\n"), uint8(0))
	f.Add(bytes.Repeat([]byte("a:\r\n"), 300), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		lim := HeadLimits{Bytes: 6 << 10, Fields: 20}
		var src io.Reader = bytes.NewReader(in)
		if split%2 == 1 {
			src = oneByte{src}
		}
		br, err := ReadHead(bufio.NewReaderSize(src, 16), src, lim)
		if err != nil {
			return
		}
		head, _ := br.Peek(br.Buffered())
		if !bytes.Contains(head, []byte("\n\n")) && !bytes.Contains(head, []byte("\n\r\n")) {
			t.Fatalf("a complete head without its empty line: %q", head)
		}
		end := len(head)
		for _, sep := range []string{"\n\n", "\n\r\n"} {
			if i := bytes.Index(head, []byte(sep)); i >= 0 {
				end = min(end, i+len(sep))
			}
		}
		if end > lim.Bytes {
			t.Fatalf("a head of %d bytes past the cap %d", end, lim.Bytes)
		}
		all, _ := io.ReadAll(br)
		if !bytes.Equal(all, in) {
			t.Fatalf("the reader gives %q, want %q", all, in)
		}
		// a complete head parses or is a 400, never a panic
		ParseRequest(bufio.NewReader(bytes.NewReader(in)))
	})
}
