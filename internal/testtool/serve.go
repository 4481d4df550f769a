package testtool

import "net"

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
