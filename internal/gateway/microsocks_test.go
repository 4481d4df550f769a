package gateway_test

import (
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/dial"
	"github.com/proxypool/proxypool/internal/gateway"
	"github.com/proxypool/proxypool/internal/socks"
	"github.com/proxypool/proxypool/internal/socks/sockstest"
	"github.com/proxypool/proxypool/internal/upstream"
)

// onePicker always picks the same upstream, with the Caps a snapshot
// would carry.
type onePicker struct{ ch upstream.Choice }

func (p onePicker) Pick(*upstream.Selector) (upstream.Choice, error) { return p.ch, nil }
func (onePicker) Observe(upstream.CheckResult)                       {}

// TestMicrosocksUpstream: clients reach a target through the gateway
// whose upstream is microsocks, which reads one message per read and
// drops the rest, with and without auth, on the event loops and on the
// goroutine path (TestGoroutinePath). An upstream whose snapshot claims
// CapPipeline but stalls costs one fallback, after which the gateway does
// not pipeline to it: the next tunnels open without the stall.
func TestMicrosocksUpstream(t *testing.T) {
	echo, err := net.Listen("tcp", "127.64.2.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	base := 24100
	if os.Getenv(goroutinesEnv) != "" {
		base = 24200
	}
	tests := []struct {
		name, user, pass string
		caps             upstream.Caps
	}{
		{"no auth", "", "", 0},
		{"auth", "alice", "s3cret", 0},
		{"no auth, snapshot claims pipelining", "", "", upstream.CapPipeline},
		{"auth, snapshot claims pipelining", "alice", "s3cret", upstream.CapPipeline},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := sockstest.Microsocks(t, "127.64.2.2", base+i, tt.user, tt.pass)
			host, port, _ := net.SplitHostPort(ms)
			m := map[string]any{"type": "socks5", "server": host, "port": port}
			if tt.user != "" {
				m["username"], m["password"] = tt.user, tt.pass
			}
			e, err := upstream.MustNew(m).Entry()
			if err != nil {
				t.Fatal(err)
			}
			e.Caps = tt.caps
			d := dial.New(dial.Options{})
			defer d.Close()
			opts := gateway.Options{
				Picker:   onePicker{upstream.Choice{Entry: e, LatencyMS: 1}},
				Dialer:   d,
				Classify: dial.Classify,
				MaxTries: 1,
			}
			opts.GoroutinesOnly = os.Getenv(goroutinesEnv) != ""
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ready := make(chan struct{})
			opts.OnReady = func() { close(ready) }
			gw, err := gateway.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- gw.Run(ctx, map[string][]net.Listener{"gateway": {ln}}) }()
			defer func() { cancel(); <-done }()
			<-ready
			for round := range 3 {
				start := time.Now()
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(8 * time.Second))
				if err := (socks.Client{}).Connect(c, echo.Addr().String()); err != nil {
					c.Close()
					t.Fatalf("round %d: CONNECT through the gateway to microsocks: %v", round, err)
				}
				msg := "ping " + strconv.Itoa(round)
				io.WriteString(c, msg)
				b := make([]byte, len(msg))
				_, err = io.ReadFull(c, b)
				c.Close()
				if err != nil || string(b) != msg {
					t.Fatalf("round %d: echo %q, %v", round, b, err)
				}
				if took := time.Since(start); round > 0 && took > 500*time.Millisecond {
					t.Errorf("round %d took %v: the gateway still pipelines to an upstream that stalled on it", round, took)
				}
			}
		})
	}
}
