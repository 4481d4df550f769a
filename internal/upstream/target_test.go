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
	tests := []struct {
		addr   string
		ok     bool
		denied bool
		reason string
	}{
		{"example.com:443", true, false, ""},
		{"example.com.:80", true, false, ""},
		{"_dmarc.example.com:443", true, false, ""},
		{"bücher.example:80", true, false, ""},
		{"127.0.0.1:8080", true, false, ""},
		{"[2001:db8::1]:443", true, false, ""},
		{"1.2.3.4:65535", true, false, ""},
		{"host:080", true, false, ""},
		{"127.0.0.1:0", false, true, "port 0"},
		{"127.0.0.1:65536", false, false, "above 65535"},
		{"127.0.0.1:100000000000000000000", false, false, "above 65535"},
		{"h:-1", false, false, "not a number"},
		{"h:http", false, false, "not a number"},
		{"h:0x50", false, false, "not a number"},
		{"h:", false, false, "empty port"},
		{":80", false, false, "empty host"},
		{"host", false, false, "no port"},
		{"0.0.0.0:80", false, true, "unspecified"},
		{"[::]:80", false, true, "unspecified"},
		{"0.1.2.3:80", false, true, "0.0.0.0/8"},
		{"224.0.0.1:80", false, true, "multicast"},
		{"[ff02::1]:80", false, true, "multicast"},
		{"255.255.255.255:80", false, true, "broadcast"},
		{"[::ffff:0.0.0.0]:80", false, true, "unspecified"},
		{"[fe80::1%eth0]:80", false, false, "zone"},
		{"2001:db8::1:443", false, false, "brackets"},
		{"[2001:db8::1:443", false, false, "unclosed"},
		{"[1.2.3.4]:443", false, false, "IPv6"},
		{"127.1:80", false, false, "dotted-quad"},
		{"0x7f000001:80", false, false, "dotted-quad"},
		{"1.1.1.256:80", false, false, "dotted-quad"},
		{"01.02.03.04:80", false, false, "dotted-quad"},
		{"a..b:80", false, false, "empty label"},
		{".:80", false, false, "empty host name"},
		{strings.Repeat("a", 64) + ".com:80", false, false, "63 bytes"},
		{strings.Repeat("a.", 127) + "com:80", false, false, "253 bytes"},
		{"ex ample.com:80", false, false, "byte"},
		{"ex\x00ample.com:80", false, false, "byte"},
		{"user@example.com:80", false, false, "byte"},
		{"example.com/path:80", false, false, "byte"},
		{"\xff\xfe:80", false, false, "UTF-8"},
	}
	for _, tt := range tests {
		err := CheckTarget(tt.addr)
		if tt.ok {
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
		if te.Denied != tt.denied || !strings.Contains(te.Reason, tt.reason) {
			t.Errorf("%.40q: %q denied=%v, want a reason with %q, denied=%v", tt.addr, te.Reason, te.Denied, tt.reason, tt.denied)
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
