package upstream

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"time"
)

// Entry is an upstream as a gateway serves it: what a pick is made by and
// what a dial needs. A gateway holds 100k of them and dials few, so the
// options stay as the store keeps them (JSON) until a dial decodes them
// once (dial caches what it builds by ID), and options that say nothing
// beyond type, server and port are not held at all.
type Entry struct {
	ID     string
	Type   Kind
	Server string
	Port   int
	Group  string // explicit group (tor instances); empty for list/link upstreams
	Caps   Caps   // what the last OK check proved; zero from Upstream.Entry
	// Options is the options mapping as stored JSON, or "" when it holds
	// only type, server, port and name (Decode rebuilds those).
	Options string
}

// Entry is u as a gateway serves it. The error is for options that do
// not encode as JSON, which only a hand-built Upstream can hold.
func (u Upstream) Entry() (Entry, error) {
	e := Entry{ID: u.ID, Type: u.Type, Server: u.Server, Port: u.Port, Group: u.Group}
	if BareOptions(u.Options) {
		return e, nil
	}
	b, err := json.Marshal(u.Options)
	if err != nil {
		return Entry{}, fmt.Errorf("upstream %s: encoding options: %w", u.ID, err)
	}
	e.Options = string(b)
	return e, nil
}

// Decode returns the full options mapping, decoded from Options or, when
// there are none, made of type, server and port. Each call decodes anew.
func (e Entry) Decode() (map[string]any, error) {
	if e.Options == "" {
		return map[string]any{"type": string(e.Type), "server": e.Server, "port": e.Port}, nil
	}
	m, err := DecodeOptions(e.Options)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", e.ID, err)
	}
	return m, nil
}

// Addr is "server:port" (IPv6 in brackets).
func (e Entry) Addr() string { return net.JoinHostPort(e.Server, strconv.Itoa(e.Port)) }

// String is a short human label: "socks5 1.2.3.4:1080".
func (e Entry) String() string { return string(e.Type) + " " + e.Addr() }

// BareOptions reports whether options m say nothing beyond what an
// Entry's own fields carry (type, server, port; a name only labels):
// such an Entry holds none.
func BareOptions(m map[string]any) bool {
	for k := range m {
		switch k {
		case "type", "server", "port", "name":
		default:
			return false
		}
	}
	return true
}

// Served is one servable upstream as a gateway's pool is built from it
// (store.GatewayHealthy): the Choice a pick returns, and what the pool
// groups by (Sources) and re-admits an ejected upstream by (LastCheck).
type Served struct {
	Choice
	Sources   []string
	LastCheck time.Time
	// Targets are the named target checks (probe.targets) this upstream
	// passed, sorted by name, each with when its result expires; a
	// target not listed failed, was never checked or expired before the
	// load. Loads share one slice between upstreams passing the same set.
	Targets []TargetPass
}

// TargetPass is one passed target check and when its result expires.
type TargetPass struct {
	Name  string    `json:"name"`
	Until time.Time `json:"until"`
}

// Passes reports whether ts holds a result for target that is still
// valid at now.
func Passes(ts []TargetPass, target string, now time.Time) bool {
	for _, t := range ts {
		if t.Name == target {
			return now.Before(t.Until)
		}
	}
	return false
}

// Served is r as a gateway's pool is built from it (see Upstream.Entry
// for the error).
func (r *Record) Served() (Served, error) {
	e, err := r.Upstream.Entry()
	if err != nil {
		return Served{}, err
	}
	e.Caps = r.Caps
	return Served{Choice: Choice{Entry: e, ExitIP: r.ExitIP, Country: r.Country, LatencyMS: r.LatencyMS,
		Quality: r.Quality},
		Sources: r.Sources, LastCheck: r.LastCheck}, nil
}
