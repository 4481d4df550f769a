package manager

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/proxypool/proxypool/internal/control"
	"github.com/proxypool/proxypool/internal/store"
)

// BenchmarkListPage pages through 100k upstreams (PROXYPOOL_BENCH_ROWS
// would make it bigger; the default keeps it short).
func BenchmarkListPage(b *testing.B) {
	ctx := context.Background()
	st, err := store.Open(ctx, b.TempDir()+"/pool.db", store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Add(ctx, "bulk", plainUpstreams(b, 100000)...); err != nil {
		b.Fatal(err)
	}
	m := New(Options{Store: st})
	defer m.Close()
	b.Run("store-5000", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := st.List(ctx, store.Filter{Limit: 5000, Offset: (i * 5000) % 100000}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("manager-5000+json", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			p, err := m.List(ctx, control.ListQuery{Limit: 5000, Offset: (i * 5000) % 100000})
			if err != nil || p.Total != 100000 {
				b.Fatal(err, p.Total)
			}
			if _, err := json.Marshal(p.Records); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("manager-country-filter", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := m.List(ctx, control.ListQuery{Country: "US", State: "healthy", Limit: 500}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
