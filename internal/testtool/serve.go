package testtool

import (
	"net"
	"testing"
)

// Serve accepts on ln until it is closed and hands each connection to h in
// its own goroutine, closing the connection when h returns. The caller
// owns ln: closing it (t.Cleanup, the end of a world) ends the loop.
func Serve(ln net.Listener, h func(net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h(c)
			}()
		}
	}()
}

// ServeTCP listens on a free port of 127.0.0.1 until the test ends and
// serves each connection with h as Serve does. It returns the listener's
// address.
func ServeTCP(t testing.TB, h func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	Serve(ln, h)
	return ln.Addr().String()
}
