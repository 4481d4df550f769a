package upstream

import "strings"

// Relay is a Tor relay as discovered from Onionoo, a CSV export or a
// control port.
type Relay struct {
	Fingerprint string   `json:"fingerprint"` // 40 hex, upper case
	Nickname    string   `json:"nickname"`
	Address     string   `json:"address"` // OR address (IP)
	ORPort      int      `json:"or_port"`
	ExitAddrs   []string `json:"exit_addresses,omitempty"`
	Country     string   `json:"country"`
	Flags       []string `json:"flags"`
	Bandwidth   int64    `json:"bandwidth"`
}

// HasFlag reports whether the relay carries flag f (case-insensitive).
func (r Relay) HasFlag(f string) bool {
	for _, x := range r.Flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// UsableExit: Exit, Running, Valid and not BadExit.
func (r Relay) UsableExit() bool {
	return r.HasFlag("Exit") && r.HasFlag("Running") && r.HasFlag("Valid") && !r.HasFlag("BadExit")
}
