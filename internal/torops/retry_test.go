package torops

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/torgen"
	"github.com/proxypool/proxypool/internal/upstream"
)

// flakyRelays fails its first fails discoveries (the network not up yet),
// then lists what inner lists.
type flakyRelays struct {
	inner torgen.RelaySource
	fails int32
	calls atomic.Int32
}

func (f *flakyRelays) Relays(ctx context.Context) ([]upstream.Relay, error) {
	if f.calls.Add(1) <= f.fails {
		return nil, errors.New("dial tcp: lookup onionoo.torproject.org: no such host")
	}
	return f.inner.Relays(ctx)
}

// TestSupervisorRetriesAFailedDiscovery: a discovery that fails at start
// is tried again after a short backoff, not at the next tor.refresh (an
// hour here): twice failing, the third try starts the instances.
func TestSupervisorRetriesAFailedDiscovery(t *testing.T) {
	tor, _ := testTor(t, t.TempDir(), "grouped", 1, 2, 19180, false, time.Now)
	flaky := &flakyRelays{inner: tor.o.Relays, fails: 2}
	tor.o.Relays = flaky
	run := &torgen.DryRun{}
	sup := &Supervisor{t: tor, runner: run, wait: func() {}, retry: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- sup.Run(ctx, time.Hour) }()
	defer func() { cancel(); <-done }()
	for len(run.Wanted()) == 0 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no instance 10s after start; %d discoveries tried", flaky.calls.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := flaky.calls.Load(); n != 3 {
		t.Errorf("instances started after %d discoveries, want 3 (2 failed)", n)
	}
	t.Logf("instances %v after %v", run.Wanted(), time.Since(start).Round(time.Millisecond))
}

func TestRetryDelay(t *testing.T) {
	for _, tt := range []struct {
		fails int
		want  time.Duration
	}{
		{0, 6 * time.Hour}, {1, 5 * time.Second}, {2, 10 * time.Second}, {3, 20 * time.Second},
		{12, 5 * time.Second << 11}, {13, 5 * time.Second << 12}, {14, 6 * time.Hour}, {100, 6 * time.Hour},
	} {
		if got := RetryDelay(tt.fails, FirstRetry, 6*time.Hour); got != tt.want {
			t.Errorf("after %d failures: %v, want %v", tt.fails, got, tt.want)
		}
	}
}
