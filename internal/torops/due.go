package torops

import (
	"fmt"
	"time"
)

// Due says whether a scheduled generation (the timer's `proxypoold torgen
// --due`) has work: never discovered, tor.refresh passed since the last
// discovery, or the config edited since it. reason says which, or when the
// next one is due, for the run's one log line.
func Due(lastDiscovery time.Time, refresh time.Duration, configEdited, now time.Time) (due bool, reason string) {
	switch {
	case lastDiscovery.IsZero():
		return true, "no discovery recorded yet"
	case configEdited.After(lastDiscovery):
		return true, fmt.Sprintf("the config was edited %s after the last discovery", configEdited.Sub(lastDiscovery).Round(time.Second))
	case refresh <= 0:
		return false, "tor.refresh is 0: only the config's edits and the SLO guard's requests regenerate"
	}
	age := now.Sub(lastDiscovery)
	if age >= refresh {
		return true, fmt.Sprintf("last discovery %s ago, tor.refresh %s", age.Round(time.Second), refresh)
	}
	return false, fmt.Sprintf("last discovery %s ago; next due in %s (tor.refresh %s)", age.Round(time.Second), (refresh - age).Round(time.Second), refresh)
}
