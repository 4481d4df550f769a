package sd

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// TestOwnListenersDeferAccept: a listener the gateway opens itself has
// TCP_DEFER_ACCEPT, as proxy-gateway.socket has DeferAcceptSec=: a client
// that speaks first (every protocol on the port) is accepted with its
// greeting readable at once.
func TestOwnListenersDeferAccept(t *testing.T) {
	lns, err := Listeners(map[string]string{"main": "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ln := lns["main"]
	defer ln.Close()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	rc.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT)
	})
	if gerr != nil || v <= 0 {
		t.Fatalf("TCP_DEFER_ACCEPT = %d, %v; want it set", v, gerr)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{5, 1, 0}); err != nil { // a SOCKS5 greeting
		t.Fatal(err)
	}
	start := time.Now()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	s, err := ln.Accept()
	if err != nil {
		t.Fatalf("a client that spoke first was not accepted: %v", err)
	}
	defer s.Close()
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("accepted after %v; a greeting should make it immediate", d)
	}
	s.SetReadDeadline(time.Now().Add(time.Second))
	b := make([]byte, 3)
	if n, err := s.Read(b); n != 3 || err != nil {
		t.Errorf("greeting read %d, %v", n, err)
	}
}
