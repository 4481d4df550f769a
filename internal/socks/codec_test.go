package socks

import (
	"errors"
	"testing"
)

// FuzzCodec: every parser, fed anything, returns a whole message, "need
// more" or a typed error; never a panic, never n past the input. A message
// appended by the codec parses back to itself.
func FuzzCodec(f *testing.F) {
	f.Add([]byte("\x05\x01\x00"))
	f.Add([]byte("\x01\x05alice\x06s3cret"))
	f.Add([]byte("\x05\x01\x00\x03\x04host\x00\x50"))
	f.Add([]byte("\x05\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x50"))
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(what string, n int, err error) {
			var pe *ProtocolError
			var ae *AddrTypeError
			switch {
			case err == nil && (n <= 0 || n > len(b)):
				t.Fatalf("%s: n %d of %d bytes", what, n, len(b))
			case err != nil && !errors.Is(err, ErrShort) && !errors.As(err, &pe) && !errors.As(err, &ae):
				t.Fatalf("%s: untyped error %v", what, err)
			}
		}
		_, n, err := ParseGreeting(b)
		check("greeting", n, err)
		_, n, err = ParseMethod(b)
		check("method", n, err)
		_, _, n, err = ParseUserPass(b)
		check("auth", n, err)
		_, n, err = ParseAuthReply(b)
		check("auth reply", n, err)
		cmd, host, port, n, err := ParseRequest(b)
		check("request", n, err)
		if out, aerr := AppendRequest(nil, cmd, host, port); err == nil && aerr == nil {
			// what we append parses back to the same request
			c2, h2, p2, n2, err := ParseRequest(out)
			if err != nil || n2 != len(out) || c2 != cmd || p2 != port {
				t.Fatalf("round trip of %q:%d: %q:%d n %d (%v)", host, port, h2, p2, n2, err)
			}
		}
		_, n, err = ParseReply(b)
		check("reply", n, err)
	})
}
