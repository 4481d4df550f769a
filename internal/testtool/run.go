package testtool

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Go runs f (a server, a daemon's subcommand) in a goroutine with a
// context that ends with t: Cleanup cancels it, then fails t when f
// returns an error other than the cancellation or does not return within
// 10 s, so a test never leaks what it started.
func Go(t testing.TB, what string, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v", what, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not stop within 10s of cancel", what)
		}
	})
}
