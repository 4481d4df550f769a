package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/proxypool/proxypool/internal/socks"
)

// holdResult is one proxy holding n open tunnels.
type holdResult struct {
	opened, failed   int
	before, with     int64 // the proxy's VmRSS in KiB, idle and with the tunnels open
	fdsWith          int
	openFor, closeIn time.Duration
}

// holdTunnels opens n SOCKS5 tunnels through proxy to target (each proven
// by one request and response), keeps them all open, reads the proxy
// process's RSS and fds, then closes them and waits until the proxy holds
// no more sockets than before (bounded by 30 s).
func holdTunnels(proxy, target string, pid, n int) (holdResult, error) {
	var res holdResult
	fds0 := fdCount(pid)
	res.before = rssKiB(pid)
	conns := make([]net.Conn, n)
	errs := make([]error, n)
	start := time.Now()
	var wg sync.WaitGroup
	work := make(chan int)
	for range 128 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				conns[i], errs[i] = openTunnel(proxy, target)
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	res.openFor = time.Since(start)
	var first error
	for i := range n {
		if errs[i] != nil {
			res.failed++
			if first == nil {
				first = errs[i]
			}
		} else {
			res.opened++
		}
	}
	if first != nil {
		fmt.Fprintf(os.Stderr, "hold through %s: %d of %d tunnels failed, first: %v\n", proxy, res.failed, n, first)
	}
	time.Sleep(500 * time.Millisecond) // let the proxy settle (buffers freed after the responses)
	res.with, res.fdsWith = rssKiB(pid), fdCount(pid)
	start = time.Now()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	for deadline := time.Now().Add(30 * time.Second); fdCount(pid) > fds0+8 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	res.closeIn = time.Since(start)
	if res.opened == 0 {
		return res, fmt.Errorf("no tunnel opened through %s: %v", proxy, first)
	}
	return res, nil
}

// openTunnel is one SOCKS5 CONNECT to target through proxy and one GET
// answered through it; the tunnel stays open.
func openTunnel(proxy, target string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", proxy, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if err := (socks.Client{}).Connect(c, target); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+target+"\r\n\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("reading the response through the tunnel: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetDeadline(time.Time{})
	return c, nil
}

// rssKiB is VmRSS of pid.
func rssKiB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// fdBudget is how many tunnels this process (and so, roughly, each proxy
// and the fleet, which hold two sockets per tunnel) can afford.
func fdBudget() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return int(rl.Cur/2) - 512
}
