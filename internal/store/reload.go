package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Reload is what one process made of its last config reload: which
// process (Component: probe, gateway, run; PID), how many reloads it
// applied since it started (Generation), when, why it kept the running
// config (Error, "" when the new one applied) and which changed keys it
// applies only at its next restart (Restart). proxypoolctl status shows
// it, and `proxypoold reload` waits for the generation it asked for.
type Reload struct {
	Component  string    `json:"component"`
	PID        int       `json:"pid"`
	Generation uint64    `json:"generation"`
	At         time.Time `json:"at"`
	Error      string    `json:"error,omitempty"`
	Restart    []string  `json:"restart,omitempty"`
}

const reloadPrefix = "reload."

// RecordReload stores r as its component's last reload.
func (s *Store) RecordReload(ctx context.Context, r Reload) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding the reload of %s: %w", r.Component, err)
	}
	return s.SetSetting(ctx, reloadPrefix+r.Component, string(b))
}

// Reloads returns every component's last reload, by component name.
func (s *Store) Reloads(ctx context.Context) ([]Reload, error) {
	rows, err := s.rdb.QueryContext(ctx, "SELECT key, value FROM settings WHERE key >= ? AND key < ?", reloadPrefix, reloadPrefix[:len(reloadPrefix)-1]+"/")
	if err != nil {
		return nil, fmt.Errorf("reading the last reloads: %w", err)
	}
	defer rows.Close()
	var out []Reload
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("reading the last reloads: %w", err)
		}
		var r Reload
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			return nil, fmt.Errorf("reading the last reload of %s: %w", strings.TrimPrefix(k, reloadPrefix), err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the last reloads: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Component < out[j].Component })
	return out, nil
}
