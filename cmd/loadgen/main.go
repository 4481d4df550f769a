// Command loadgen drives HTTP load through a SOCKS5 proxy (or straight to
// the target) and reports rate, latency percentiles, errors, distinct exits
// and a per-second timeline as JSON. `loadgen serve` is the matching
// target: a minimal HTTP/1.1 server answering every request with the
// client's address (the exit IP of whatever proxy it came through).
//
//	loadgen serve -listen 127.0.0.1:18080
//	loadgen -target 127.0.0.1:18080 -proxy 127.0.0.1:8000 -mode newconn -c 64 -d 5s
//
// Modes: newconn opens a connection and does the SOCKS5 handshake for every
// request (rotation: each request may leave through another upstream);
// keepalive opens one tunnel per worker and sends every request over it.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/proxypool/proxypool/internal/socks"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		if err := serve(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen serve:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// Result is loadgen's JSON output.
type Result struct {
	Mode        string  `json:"mode"`
	Conc        int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	RPS         float64 `json:"rps"`
	P50MS       float64 `json:"p50_ms"`
	P99MS       float64 `json:"p99_ms"`
	Exits       int     `json:"distinct_exits"`
	PerSecond   []int   `json:"per_second"`        // successful requests per second
	ErrPerSec   []int   `json:"errors_per_second"` // failed requests per second
	FirstErrors []string
}

func run(args []string) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	target := fs.String("target", "127.0.0.1:18080", "target host:port")
	proxy := fs.String("proxy", "", "SOCKS5 proxy host:port; empty: straight to the target")
	mode := fs.String("mode", "newconn", "newconn | keepalive")
	conc := fs.Int("c", 64, "concurrent workers")
	dur := fs.Duration("d", 5*time.Second, "duration")
	timeout := fs.Duration("timeout", 5*time.Second, "per-request timeout")
	user := fs.String("user", "", "SOCKS5 username")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *mode != "newconn" && *mode != "keepalive" {
		return fmt.Errorf("unknown mode %q", *mode)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *dur)
	defer cancel()
	start := time.Now()
	nsec := int(dur.Seconds()+0.999) + 1
	type workerOut struct {
		lat   []time.Duration
		ok    []int
		errs  []int
		exits map[string]bool
		first []string
	}
	outs := make([]workerOut, *conc)
	var wg sync.WaitGroup
	req := []byte("GET /ip HTTP/1.1\r\nHost: " + *target + "\r\n\r\n")
	reqClose := []byte("GET /ip HTTP/1.1\r\nHost: " + *target + "\r\nConnection: close\r\n\r\n")
	cl := socks.Client{User: *user}
	for w := range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := &outs[w]
			o.ok, o.errs, o.exits = make([]int, nsec), make([]int, nsec), map[string]bool{}
			var c net.Conn
			var br *bufio.Reader
			fail := func(err error) {
				sec := min(int(time.Since(start).Seconds()), nsec-1)
				o.errs[sec]++
				if len(o.first) < 3 {
					o.first = append(o.first, err.Error())
				}
				if c != nil {
					c.Close()
					c = nil
				}
			}
			for ctx.Err() == nil {
				t0 := time.Now()
				if c == nil {
					var err error
					c, err = open(*target, *proxy, cl, *timeout)
					if err != nil {
						if ctx.Err() == nil {
							fail(err)
						}
						c = nil
						continue
					}
					br = bufio.NewReaderSize(c, 1024)
				}
				c.SetDeadline(time.Now().Add(*timeout))
				r := req
				if *mode == "newconn" {
					r = reqClose
				}
				exit, err := roundTrip(c, br, r)
				if err != nil {
					if ctx.Err() == nil {
						fail(err)
					} else {
						c.Close()
						c = nil
					}
					continue
				}
				sec := min(int(time.Since(start).Seconds()), nsec-1)
				o.ok[sec]++
				o.lat = append(o.lat, time.Since(t0))
				o.exits[exit] = true
				if *mode == "newconn" {
					c.Close()
					c = nil
				}
			}
			if c != nil {
				c.Close()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	res := Result{Mode: *mode, Conc: *conc, Seconds: el, PerSecond: make([]int, nsec), ErrPerSec: make([]int, nsec)}
	var lat []time.Duration
	exits := map[string]bool{}
	for _, o := range outs {
		lat = append(lat, o.lat...)
		for i := range nsec {
			res.PerSecond[i] += o.ok[i]
			res.ErrPerSec[i] += o.errs[i]
			res.Errors += o.errs[i]
		}
		for e := range o.exits {
			exits[e] = true
		}
		if len(res.FirstErrors) < 5 {
			res.FirstErrors = append(res.FirstErrors, o.first...)
		}
	}
	slices.Sort(lat)
	res.Requests = len(lat)
	res.RPS = float64(len(lat)) / el
	if len(lat) > 0 {
		res.P50MS = ms(lat[len(lat)/2])
		res.P99MS = ms(lat[len(lat)*99/100])
	}
	res.Exits = len(exits)
	return json.NewEncoder(os.Stdout).Encode(res)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func open(target, proxy string, cl socks.Client, timeout time.Duration) (net.Conn, error) {
	if proxy == "" {
		return net.DialTimeout("tcp", target, timeout)
	}
	c, err := net.DialTimeout("tcp", proxy, timeout)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	if err := cl.Connect(c, target); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// roundTrip writes one request and reads one Content-Length response,
// returning its body (the exit address).
func roundTrip(c net.Conn, br *bufio.Reader, req []byte) (string, error) {
	if _, err := c.Write(req); err != nil {
		return "", err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return "", fmt.Errorf("reading status: %w", err)
	}
	if len(line) < 12 || string(line[9:12]) != "200" {
		return "", fmt.Errorf("status %q", line)
	}
	n := -1
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return "", fmt.Errorf("reading header: %w", err)
		}
		if len(h) <= 2 {
			break
		}
		if len(h) > 16 && (h[0]|0x20) == 'c' && string(h[:15]) == "Content-Length:" {
			n, _ = strconv.Atoi(string(trim(h[15:])))
		}
	}
	if n < 0 || n > 256 {
		return "", fmt.Errorf("bad content length %d", n)
	}
	var b [256]byte
	if _, err := io.ReadFull(br, b[:n]); err != nil {
		return "", fmt.Errorf("reading body: %w", err)
	}
	return string(b[:n]), nil
}

func trim(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// serve is the target: it answers each request with the peer's IP and
// keeps connections alive unless asked to close.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:18080", "address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	for {
		c, err := ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serveConn(c)
	}
}

func serveConn(c net.Conn) {
	defer c.Close()
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(host)) + "\r\n\r\n" + host)
	respClose := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(host)) + "\r\n\r\n" + host)
	br := bufio.NewReaderSize(c, 2048)
	for {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		closeAfter := false
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
			if len(line) >= 17 && (string(line[:17]) == "Connection: close" || string(line[:17]) == "connection: close") {
				closeAfter = true
			}
		}
		if closeAfter {
			c.Write(respClose)
			return
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}
