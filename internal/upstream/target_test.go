package upstream

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckTarget: targets no upstream can reach are refused with the
// reason and the SOCKS answer they get (Denied: reply 2, else 8); real
// targets, including names with underscores and UTF-8, pass.
func TestCheckTarget(t *testing.T) {
	// want: "" served; "2: reason" refused by rule (SOCKS5 reply 2);
	// "8: reason" not an address (reply 8)
	tests := []struct{ addr, want string }{
		{"example.com:443", ""},
		{"example.com.:80", ""},
		{"_dmarc.example.com:443", ""},
		{"bücher.example:80", ""},
		{"127.0.0.1:8080", ""},
		{"[2001:db8::1]:443", ""},
		{"1.2.3.4:65535", ""},
		{"host:080", ""},
		{"127.0.0.1:0", "2: port 0"},
		{"127.0.0.1:65536", "8: above 65535"},
		{"127.0.0.1:100000000000000000000", "8: above 65535"},
		{"h:-1", "8: not a number"},
		{"h:http", "8: not a number"},
		{"h:0x50", "8: not a number"},
		{"h:", "8: empty port"},
		{":80", "8: empty host"},
		{"host", "8: no port"},
		{"0.0.0.0:80", "2: unspecified"},
		{"[::]:80", "2: unspecified"},
		{"0.1.2.3:80", "2: 0.0.0.0/8"},
		{"224.0.0.1:80", "2: multicast"},
		{"[ff02::1]:80", "2: multicast"},
		{"255.255.255.255:80", "2: broadcast"},
		{"[::ffff:0.0.0.0]:80", "2: unspecified"},
		{"[fe80::1%eth0]:80", "8: zone"},
		{"2001:db8::1:443", "8: brackets"},
		{"[2001:db8::1:443", "8: unclosed"},
		{"[1.2.3.4]:443", "8: IPv6"},
		{"127.1:80", "8: dotted-quad"},
		{"0x7f000001:80", "8: dotted-quad"},
		{"1.1.1.256:80", "8: dotted-quad"},
		{"01.02.03.04:80", "8: dotted-quad"},
		{"a..b:80", "8: empty label"},
		{".:80", "8: empty host name"},
		{strings.Repeat("a", 64) + ".com:80", "8: 63 bytes"},
		{strings.Repeat("a.", 127) + "com:80", "8: 253 bytes"},
		{"ex ample.com:80", "8: byte"},
		{"ex\x00ample.com:80", "8: byte"},
		{"user@example.com:80", "8: byte"},
		{"example.com/path:80", "8: byte"},
		{"\xff\xfe:80", "8: UTF-8"},
	}
	for _, tt := range tests {
		err := CheckTarget(tt.addr)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%.40q: %v, want it served", tt.addr, err)
			}
			continue
		}
		var te *TargetError
		if !errors.As(err, &te) {
			t.Errorf("%.40q: %v, want a *TargetError", tt.addr, err)
			continue
		}
		code, reason, _ := strings.Cut(tt.want, ": ")
		if te.Denied != (code == "2") || !strings.Contains(te.Reason, reason) {
			t.Errorf("%.40q: %q denied=%v, want %q", tt.addr, te.Reason, te.Denied, tt.want)
		}
		if len(err.Error()) > 200 {
			t.Errorf("%.40q: error of %d bytes, want a short line", tt.addr, len(err.Error()))
		}
	}
}

// FuzzCheckTarget: any bytes give an answer, never a panic, and what
// passes has a port in 1-65535 and a host without spaces or controls.
func FuzzCheckTarget(f *testing.F) {
	for _, s := range []string{"example.com:443", "[::1]:80", "127.0.0.1:0", "h:-1", "0x7f.1:80", ":", "[", "a..b:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		if CheckTarget(addr) != nil {
			return
		}
		i := strings.LastIndexByte(addr, ':')
		if i <= 0 || i == len(addr)-1 {
			t.Fatalf("%q passed without host and port", addr)
		}
		if strings.ContainsAny(addr[:i], " \t\r\n\x00/@") {
			t.Fatalf("%q passed with a byte no host has", addr)
		}
	})
}
