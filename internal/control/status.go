package control

// The parts of Status that proxypoolctl status shows beyond the counts.

// ExitCounts count distinct exit IPs: many list entries share one exit.
type ExitCounts struct {
	Distinct int `json:"distinct"` // distinct exit IPs ever learnt
	Healthy  int `json:"healthy"`  // those of servable upstreams
}

// SourceReputation is how useful one source has been.
type SourceReputation struct {
	Source         string  `json:"source"`
	Listed         int     `json:"listed"`          // upstreams it lists now
	HealthyNow     int     `json:"healthy_now"`     // servable upstreams it lists now
	EverHealthy    int     `json:"ever_healthy"`    // upstreams it listed that were ever healthy
	HealthySeconds float64 `json:"healthy_seconds"` // cumulative time its upstreams spent healthy
}

// GroupFloor is one group's (or, with Group "", the pool's) standing
// against its floor of healthy upstreams and distinct exits.
type GroupFloor struct {
	Group      string `json:"group"`
	Healthy    int    `json:"healthy"`
	Exits      int    `json:"exits"`
	MinHealthy int    `json:"min_healthy"`
	MinExits   int    `json:"min_exits"`
	Below      bool   `json:"below"`
	LastAction string `json:"last_action,omitempty"` // what the guard did last, in words
}
