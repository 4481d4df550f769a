package sd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if w := os.Getenv("SD_TEST_CHILD_WANT"); w != "" {
		os.Exit(child(w))
	}
	os.Exit(m.Run())
}

// child is the socket-activated "service": it takes its listeners, says
// READY, prints where it listens, answers one connection per listener with
// the listener's name, then says STOPPING.
func child(wantJSON string) int {
	var want map[string]string
	if err := json.Unmarshal([]byte(wantJSON), &want); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ls, err := Listeners(want)
	if err != nil {
		fmt.Println(`{"error":` + fmt.Sprintf("%q", err.Error()) + `}`)
		return 0
	}
	if os.Getenv("LISTEN_FDS") != "" {
		fmt.Fprintln(os.Stderr, "LISTEN_FDS not unset: children would inherit it")
		return 2
	}
	addrs := map[string]string{}
	for n, l := range ls {
		addrs[n] = l.Addr().String()
	}
	Statusf("serving %d listeners", len(ls))
	Ready()
	json.NewEncoder(os.Stdout).Encode(addrs)
	done := make(chan struct{}, len(ls))
	for n, l := range ls {
		go func() {
			defer func() { done <- struct{}{} }()
			l.(interface{ SetDeadline(time.Time) error }).SetDeadline(time.Now().Add(10 * time.Second))
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, n)
			c.Close()
		}()
	}
	for range ls {
		<-done
	}
	Stopping()
	return 0
}

func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := pc.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return path, msgs
}

func listenerFile(t *testing.T, addr string) (*os.File, string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close() // f keeps the socket open and listening
	t.Cleanup(func() { f.Close() })
	return f, a
}

func freeAddr(t *testing.T, ip string) string {
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// activate runs the test binary as a socket-activated child, the way
// systemd does: fds from 3, LISTEN_PID set to the child's own pid.
func activate(t *testing.T, files []*os.File, fdnames string, want map[string]string, env ...string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	self, _ := os.Executable()
	wj, _ := json.Marshal(want)
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$ exec "$0"`, self)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "SD_TEST_CHILD_WANT=" + string(wj)}, env...)
	if len(files) > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("LISTEN_FDS=%d", len(files)), "LISTEN_FDNAMES="+fdnames)
	}
	cmd.ExtraFiles = files
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewReader(out)
}

func TestSocketActivation(t *testing.T) {
	notifyPath, msgs := notifySocket(t)
	mainF, mainAddr := listenerFile(t, "127.0.0.1:0")
	usF, usAddr := listenerFile(t, "127.0.0.1:0")
	nonusF, nonusAddr := listenerFile(t, "127.0.0.2:0")
	strayF, strayAddr := listenerFile(t, "127.0.0.3:0")
	ownAddr := freeAddr(t, "127.0.0.4")
	want := map[string]string{
		"main":  "127.0.0.1:1", // matched by name: the configured address does not matter
		"us":    usAddr,        // two sockets named "us": the address picks
		"nonus": nonusAddr,     // passed unnamed-for-us: matched by address
		"own":   ownAddr,       // not passed: listened on by the child itself
	}
	_, out := activate(t, []*os.File{mainF, usF, nonusF, strayF}, "main:us:pinned:us", want, "NOTIFY_SOCKET="+notifyPath)

	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("child said nothing: %v", err)
	}
	var addrs map[string]string
	if err := json.Unmarshal([]byte(line), &addrs); err != nil {
		t.Fatalf("child: %s", line)
	}
	wantAddrs := map[string]string{"main": mainAddr, "us": usAddr, "nonus": nonusAddr, "own": ownAddr, "us@" + strayAddr: strayAddr}
	if fmt.Sprint(addrs) != fmt.Sprint(wantAddrs) {
		t.Fatalf("child listens on %v, want %v", addrs, wantAddrs)
	}
	for name, addr := range addrs {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		if string(b) != name {
			t.Errorf("connection to %s (%s) answered %q", name, addr, b)
		}
	}
	var got []string
	timeout := time.After(5 * time.Second)
	for len(got) < 3 {
		select {
		case m := <-msgs:
			got = append(got, m)
		case <-timeout:
			t.Fatalf("notifications so far: %q", got)
		}
	}
	if strings.Join(got, "|") != "STATUS=serving 5 listeners|READY=1|STOPPING=1" {
		t.Errorf("notifications = %q", got)
	}
}

func TestListenersErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		name string
		want map[string]string
		err  string
	}{
		{"no address", map[string]string{"main": ""}, `listener "main": systemd passed no socket of that name and no address is configured`},
		{"address in use", map[string]string{"main": taken.Addr().String()}, "address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, out := activate(t, nil, "", tc.want)
			line, _ := out.ReadString('\n')
			var r struct{ Error string }
			json.Unmarshal([]byte(line), &r)
			if !strings.Contains(r.Error, tc.err) {
				t.Errorf("got %s, want an error containing %q", line, tc.err)
			}
		})
	}
}

func TestNotifyOutsideSystemdIsQuiet(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	for _, f := range []func() error{Ready, Stopping, Reloading, func() error { return Statusf("x %d", 1) }} {
		if err := f(); err != nil {
			t.Errorf("outside systemd: %v", err)
		}
	}
	t.Setenv("WATCHDOG_USEC", "")
	done := make(chan struct{})
	go func() { Watchdog(context.Background(), nil); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Watchdog blocked with the watchdog off")
	}
}

func TestWatchdogPingsOnlyWhileHealthy(t *testing.T) {
	path, msgs := notifySocket(t)
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "40000") // 40 ms: ping every 20 ms
	if d := WatchdogInterval(); d != 20*time.Millisecond {
		t.Fatalf("interval %v", d)
	}
	var sick atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Watchdog(ctx, func(context.Context) error {
			if sick.Load() {
				return errors.New("check loop stuck")
			}
			return nil
		})
		close(done)
	}()
	count := func(d time.Duration) int {
		n := 0
		end := time.After(d)
		for {
			select {
			case m := <-msgs:
				if m == "WATCHDOG=1" {
					n++
				}
			case <-end:
				return n
			}
		}
	}
	if n := count(300 * time.Millisecond); n < 3 {
		t.Errorf("healthy: %d pings in 300ms, want several", n)
	}
	sick.Store(true)
	count(50 * time.Millisecond) // drain a ping already in flight
	if n := count(300 * time.Millisecond); n != 0 {
		t.Errorf("unhealthy: %d pings, want none", n)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Watchdog did not return after cancel")
	}
}

func TestSameAddr(t *testing.T) {
	a := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 8000}
	for _, tc := range []struct {
		want string
		ok   bool
	}{{"127.0.0.1:8000", true}, {"localhost:8000", true}, {"127.0.0.1:8001", false}, {"127.0.0.2:8000", false}, {"", false}, {"/run/x.sock", false}} {
		if got := sameAddr(a, tc.want); got != tc.ok {
			t.Errorf("sameAddr(%v, %q) = %v", a, tc.want, got)
		}
	}
}
