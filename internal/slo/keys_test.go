package slo

import (
	"context"
	"strings"
	"testing"
)

// TestPoolFloors proves slo.min-healthy and slo.min-exits: the whole pool
// below either floor is shown below and acted on (its first step, a
// re-check); at or above both it is left alone.
func TestPoolFloors(t *testing.T) {
	tests := []struct {
		name  string
		pool  Floor
		below bool
	}{
		{"min-healthy met", Floor{MinHealthy: 7}, false},
		{"min-healthy missed", Floor{MinHealthy: 8}, true},
		{"min-exits met", Floor{MinExits: 3}, false},
		{"min-exits missed", Floor{MinExits: 4}, true},
		{"no floor", Floor{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &world{counts: map[string]Count{PoolName: {Healthy: 7, Exits: 3}}}
			g, _, actions := newGuard(t, w, newClock(), Options{Pool: tt.pool})
			if err := g.Check(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := statusOf(g, PoolName).Below; got != tt.below {
				t.Errorf("7 healthy over 3 exits, floor %+v: below %v, want %v", tt.pool, got, tt.below)
			}
			if acted := len(*actions) > 0; acted != tt.below {
				t.Errorf("floor %+v: actions %s, want some: %v", tt.pool, strings.Join(*actions, ", "), tt.below)
			}
		})
	}
}
