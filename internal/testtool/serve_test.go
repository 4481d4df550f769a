package testtool

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestServe: connections are served at once, each closed after its
// handler, and closing the listener ends the loop.
func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	Serve(ln, func(c net.Conn) {
		line, _ := bufio.NewReader(c).ReadString('\n')
		if line == "wait\n" {
			<-release
		}
		io.WriteString(c, strings.ToUpper(line))
	})
	dial := func(msg string) net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, msg)
		return c
	}
	held := dial("wait\n")
	defer held.Close()
	// A second client is answered while the first handler still runs, and
	// its connection is closed afterwards: ReadAll ends at EOF.
	other := dial("hello\n")
	got, err := io.ReadAll(other)
	other.Close()
	if err != nil || string(got) != "HELLO\n" {
		t.Fatalf("second client read %q, %v; want HELLO and EOF", got, err)
	}
	close(release)
	if got, err := io.ReadAll(held); err != nil || string(got) != "WAIT\n" {
		t.Fatalf("held client read %q, %v", got, err)
	}
	ln.Close()
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("a closed listener still accepts")
	}
}
