package top

import "testing"

func TestHistQuantile(t *testing.T) {
	h := &hist{bounds: []float64{0.1, 0.5, 1}, counts: []float64{50, 90, 100}, total: 100}
	for _, tt := range []struct{ q, want float64 }{{0.5, 0.1}, {0.25, 0.05}, {0.7, 0.3}, {0.95, 0.75}, {1, 1}} {
		if got := h.quantile(tt.q); got == nil || *got < tt.want-1e-9 || *got > tt.want+1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if (&hist{}).quantile(0.5) != nil {
		t.Error("empty histogram has a quantile")
	}
}
