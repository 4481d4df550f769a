package socks

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

func TestMalformedInputIsAnErrorNotAPanic(t *testing.T) {
	inputs := []string{"", "\x05", "\x05\x01", "\x05\x01\x00\x05\x01\x00\x09", "\x04\x01\x00", "\x06", "\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50"}
	for _, in := range inputs {
		_, err := ServerHandshake(bufio.NewReader(strings.NewReader(in)), io.Discard, nil, false)
		if err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func FuzzServerHandshake(f *testing.F) {
	f.Add([]byte("\x05\x01\x00\x05\x01\x00\x03\x04host\x00\x50"))
	f.Add([]byte("\x04\x01\x00\x50\x00\x00\x00\x01user\x00host\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ServerHandshake(bufio.NewReader(strings.NewReader(string(b))), io.Discard, nil, false)
	})
}
