package pool

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// slowLoader is a memLoader whose loads take a while and are counted.
type slowLoader struct {
	*memLoader
	took  time.Duration
	loads atomic.Int32
}

func (s *slowLoader) Healthy(ctx context.Context) ([]upstream.Record, error) {
	s.loads.Add(1)
	time.Sleep(s.took)
	return s.memLoader.Healthy(ctx)
}

// TestReloadGap: a store that changes all the time (a PoolChanged every
// 10 ms) does not keep the gateway reloading: reloads are spaced by the
// larger of MinReloadGap and ReloadDuty × the load time, and the last
// change is still picked up once the gap has passed.
func TestReloadGap(t *testing.T) {
	tests := []struct {
		name     string
		took     time.Duration
		minGap   time.Duration
		maxLoads int32 // over the 1 s storm, initial load excluded
	}{
		{"fast loads: the minimum gap", 5 * time.Millisecond, 200 * time.Millisecond, 7},
		{"slow loads: duty-bound", 60 * time.Millisecond, 50 * time.Millisecond, 5}, // 4 × 60 ms = 240 ms apart
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &memLoader{}
			m.set([]upstream.Record{rec(1, "US", "1.1.1.1")})
			sl := &slowLoader{memLoader: m, took: tc.took}
			notify := make(chan struct{}, 1)
			p, err := New(Options{Loader: sl, Notify: notify, PollInterval: time.Hour, MinReloadGap: tc.minGap})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := p.Load(ctx); err != nil {
				t.Fatal(err)
			}
			sl.loads.Store(0)
			go p.Run(ctx)
			storm := time.Now()
			for i := 2; time.Since(storm) < time.Second; i++ {
				m.set([]upstream.Record{rec(i, "US", "1.1.1.1")})
				select {
				case notify <- struct{}{}:
				default:
				}
				time.Sleep(10 * time.Millisecond)
			}
			n := sl.loads.Load()
			if n < 2 || n > tc.maxLoads {
				t.Errorf("%d reloads during a 1 s storm of ~100 changes; want 2..%d", n, tc.maxLoads)
			}
			want, _ := m.Version(ctx)
			deadline := time.Now().Add(2 * time.Second)
			for p.Version() != want {
				if time.Now().After(deadline) {
					t.Fatalf("the last change (version %d) was never loaded; pool at %d", want, p.Version())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestOnLoadReportsEachLoad: every load from the store is reported with
// the version and size it brought, so a gateway's metrics say which
// pool it serves.
func TestOnLoadReportsEachLoad(t *testing.T) {
	type load struct {
		version uint64
		size    int
	}
	m := &memLoader{}
	var got []load
	p, err := New(Options{Loader: m, OnLoad: func(v uint64, n int, _ time.Duration) { got = append(got, load{v, n}) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	steps := [][]upstream.Record{
		{rec(1, "US", "1.1.1.1")},
		{rec(1, "US", "1.1.1.1"), rec(2, "DE", "2.2.2.2"), rec(3, "NL", "3.3.3.3")},
		nil,
	}
	for i, recs := range steps {
		m.set(recs)
		if err := p.Load(ctx); err != nil {
			t.Fatal(err)
		}
		v, _ := m.Version(ctx)
		if want := (load{v, len(recs)}); len(got) != i+1 || got[i] != want {
			t.Fatalf("after load %d: OnLoad heard %v, want last %v", i+1, got, want)
		}
	}
}
