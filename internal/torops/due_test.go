package torops

import (
	"strings"
	"testing"
	"time"
)

func TestDue(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	hour := time.Hour
	for _, c := range []struct {
		name         string
		last, edited time.Time
		refresh      time.Duration
		want         bool
		reason       string
	}{
		{"never discovered", time.Time{}, now.Add(-48 * hour), 6 * hour, true, "no discovery recorded"},
		{"fresh", now.Add(-2 * hour), now.Add(-48 * hour), 6 * hour, false, "next due in 4h0m0s"},
		{"refresh passed", now.Add(-6 * hour), now.Add(-48 * hour), 6 * hour, true, "tor.refresh 6h0m0s"},
		{"config edited since", now.Add(-2 * hour), now.Add(-hour), 6 * hour, true, "config was edited 1h0m0s after"},
		{"refresh 0 and nothing edited", now.Add(-100 * hour), now.Add(-200 * hour), 0, false, "tor.refresh is 0"},
		{"refresh 0, config edited", now.Add(-100 * hour), now.Add(-hour), 0, true, "config was edited"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, reason := Due(c.last, c.refresh, c.edited, now)
			if got != c.want || !strings.Contains(reason, c.reason) {
				t.Errorf("Due = %v, %q; want %v, containing %q", got, reason, c.want, c.reason)
			}
		})
	}
}
