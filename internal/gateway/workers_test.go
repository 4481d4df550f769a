package gateway

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestWorkersReuseAndStop(t *testing.T) {
	before := runtime.NumGoroutine()
	w := newWorkers(4)
	var wg sync.WaitGroup
	for round := 0; round < 3; round++ {
		for i := 0; i < 10; i++ {
			wg.Add(1)
			w.run(wg.Done)
		}
		wg.Wait()
	}
	// after the bursts at most maxIdle goroutines wait for work
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before+4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine() - before; n > 4 {
		t.Fatalf("%d goroutines left waiting, want at most 4", n)
	}
	// a waiting worker takes the next task
	done := make(chan struct{})
	w.run(func() { close(done) })
	<-done
	w.stop()
	w.stop() // idempotent
	for runtime.NumGoroutine() > before && time.Now().Before(deadline.Add(2*time.Second)) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine() - before; n > 0 {
		t.Fatalf("%d worker goroutines still running after stop", n)
	}
}
