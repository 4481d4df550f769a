package clashbackend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/proxypool/proxypool/internal/clashapi"
	"github.com/proxypool/proxypool/internal/top"
)

// MetricsGateway reads a gateway in another process (proxy-gateway.service
// under systemd) from its metrics endpoint (metrics.gateway-listen): its
// byte totals and resident memory. The endpoint lists no tunnels, so
// there are none to show or close.
type MetricsGateway struct {
	URL    string // http://127.0.0.1:9465/metrics
	Client *http.Client
}

var _ Gateway = (*MetricsGateway)(nil)

// ErrNoTunnels answers a close: the gateway's tunnels are in its process.
var ErrNoTunnels = errors.New("the gateway runs in another process: its tunnels cannot be listed or closed from here")

// Stats scrapes the gateway's metrics.
func (m *MetricsGateway) Stats(ctx context.Context) (clashapi.GatewayStats, error) {
	c := m.Client
	if c == nil {
		c = &http.Client{Timeout: 5 * time.Second}
	}
	s, err := top.Scrape(ctx, c, m.URL)
	if err != nil {
		return clashapi.GatewayStats{}, fmt.Errorf("reading the gateway's numbers: %w", err)
	}
	up, _ := s.Sum("proxypool_gateway_bytes_total", "direction", "up")
	down, _ := s.Sum("proxypool_gateway_bytes_total", "direction", "down")
	rss, _ := s.Sum("process_resident_memory_bytes")
	return clashapi.GatewayStats{UpTotal: int64(up), DownTotal: int64(down), Memory: uint64(rss)}, nil
}

// CloseConns cannot reach the other process's tunnels.
func (m *MetricsGateway) CloseConns(ctx context.Context, ids ...string) error { return ErrNoTunnels }
