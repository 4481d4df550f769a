package proxymux

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

func TestSniff(t *testing.T) {
	tests := []struct {
		in      string
		want    Protocol
		wantErr bool
	}{
		{"\x05\x01\x00", SOCKS5, false},
		{"\x04\x01\x00\x50", SOCKS4, false},
		{"CONNECT a:443 HTTP/1.1\r\n", HTTP, false},
		{"GET http://a/ HTTP/1.1\r\n", HTTP, false},
		{"", HTTP, true},
	}
	for _, tt := range tests {
		r := bufio.NewReader(strings.NewReader(tt.in))
		got, err := Sniff(r)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%q: got %v, %v; want %v", tt.in, got, err, tt.want)
			continue
		}
		if rest, _ := io.ReadAll(r); string(rest) != tt.in {
			t.Errorf("%q: sniff consumed input, left %q", tt.in, rest)
		}
	}
}
