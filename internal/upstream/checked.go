package upstream

import "time"

// TargetResult is one named target check (probe.targets) made through
// one upstream: what internal/checks produces and the store keeps.
type TargetResult struct {
	ID        string // upstream
	Target    string // probe.targets name
	OK        bool
	Detail    string // why it failed ("status 403", "body matches …"); "" when OK
	LatencyMS float64
	At        time.Time // when it was checked
	Until     time.Time // when the result stops counting (its TTL)
}

// SpeedResult is one speed check (probe.speed) through one upstream.
type SpeedResult struct {
	ID       string
	Down, Up float64 // bytes/s; Up 0 when not measured
	Bytes    int64   // moved by the check, both ways
	At       time.Time
}
