package failover

import (
	"bytes"
	"errors"
)

// ErrGarbage is why a tunnel broke when the upstream answered the client's
// first bytes with what no server of their protocol sends.
var ErrGarbage = errors.New("the upstream answered the client's first bytes with bytes of another protocol")

// Mismatch reports whether down, the first bytes the upstream sent back,
// cannot answer up, the first bytes the client sent, where up shows the
// protocol: a TLS ClientHello is answered by a TLS record (handshake,
// alert, change cipher spec or data, version 3.x), an HTTP/1 request by
// "HTTP/". For anything else the gateway cannot tell garbage from the
// target's bytes and says false.
func Mismatch(up, down []byte) bool {
	if len(up) == 0 || len(down) == 0 {
		return false
	}
	switch {
	case len(up) >= 2 && up[0] == 0x16 && up[1] == 0x03:
		return down[0] < 0x14 || down[0] > 0x17 || len(down) >= 2 && down[1] != 0x03
	case httpRequest(up):
		n := min(len(down), 5)
		return !bytes.Equal(down[:n], []byte("HTTP/")[:n])
	}
	return false
}

// httpRequest reports an HTTP/1 request line's start: a method of upper
// case letters and a space.
func httpRequest(b []byte) bool {
	for i, c := range b {
		switch {
		case c == ' ':
			return i >= 3
		case c < 'A' || c > 'Z', i >= 16:
			return false
		}
	}
	return false
}
