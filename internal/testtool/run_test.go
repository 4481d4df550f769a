package testtool

import (
	"context"
	"sync/atomic"
	"testing"
)

// TestGo: what Go started has its context cancelled, and is waited for,
// when the test that started it ends.
func TestGo(t *testing.T) {
	var stopped atomic.Bool
	t.Run("starts", func(t *testing.T) {
		Go(t, "blocker", func(ctx context.Context) error {
			<-ctx.Done()
			stopped.Store(true)
			return ctx.Err() // the cancellation is not a failure
		})
		if stopped.Load() {
			t.Fatal("stopped before the test ended")
		}
	})
	if !stopped.Load() {
		t.Fatal("the goroutine was not cancelled and waited for when its test ended")
	}
}
