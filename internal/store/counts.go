package store

import (
	"context"
	"database/sql"
	"fmt"
)

// Counts summarize the pool for status output and metrics.
type Counts struct {
	Total       int            `json:"total"`   // in the pool: removed and retired upstreams are only in ByState
	Healthy     int            `json:"healthy"` // servable
	ByState     map[string]int `json:"by_state"`
	BySource    map[string]int `json:"by_source"`    // upstreams listed, per source
	ByCountry   map[string]int `json:"by_country"`   // servable upstreams per exit country
	ByType      map[string]int `json:"by_type"`      // all upstreams per protocol
	ByAnonymity map[string]int `json:"by_anonymity"` // servable upstreams per anonymity level
	ByGroup     map[string]int `json:"by_group"`     // upstreams with an explicit group (tor instances)
	ByClass     map[string]int `json:"by_class"`     // servable upstreams per exit class ("" unknown)
	// DistinctExits counts the distinct exit IPs ever learnt; HealthyExits
	// those of servable upstreams (many list entries share one exit).
	DistinctExits int `json:"distinct_exits"`
	HealthyExits  int `json:"healthy_exits"`
}

// Counts returns the pool summary from one consistent snapshot.
func (s *Store) Counts(ctx context.Context) (Counts, error) {
	c := Counts{}
	tx, err := s.rdb.BeginTx(ctx, nil)
	if err != nil {
		return c, fmt.Errorf("counting upstreams: %w", err)
	}
	defer tx.Rollback()
	groups := []struct {
		dst *map[string]int
		q   string
	}{
		{&c.ByState, "SELECT state, count(*) FROM upstreams GROUP BY state"},
		{&c.BySource, "SELECT x.source, count(*) FROM upstream_sources x JOIN upstreams u ON u.id = x.upstream_id WHERE " + inPool + " GROUP BY x.source"},
		{&c.ByCountry, "SELECT country, count(*) FROM upstreams u WHERE country <> '' AND " + servable + " GROUP BY country"},
		{&c.ByType, "SELECT type, count(*) FROM upstreams u WHERE " + inPool + " GROUP BY type"},
		{&c.ByAnonymity, "SELECT anonymity, count(*) FROM upstreams u WHERE anonymity <> '' AND " + servable + " GROUP BY anonymity"},
		{&c.ByGroup, "SELECT grp, count(*) FROM upstreams u WHERE grp <> '' AND " + inPool + " GROUP BY grp"},
		{&c.ByClass, "SELECT class, count(*) FROM upstreams u WHERE " + servable + " GROUP BY class"},
	}
	for _, g := range groups {
		m, err := countBy(ctx, tx, g.q)
		if err != nil {
			return c, fmt.Errorf("counting upstreams: %w", err)
		}
		*g.dst = m
	}
	err = tx.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(`+servableInt+`), 0),
		count(DISTINCT nullif(exit_ip, '')),
		count(DISTINCT CASE WHEN `+servable+` THEN nullif(exit_ip, '') END) FROM upstreams u WHERE `+inPool).
		Scan(&c.Total, &c.Healthy, &c.DistinctExits, &c.HealthyExits)
	if err != nil {
		return c, fmt.Errorf("counting upstreams: %w", err)
	}
	return c, nil
}

func countBy(ctx context.Context, tx *sql.Tx, q string) (map[string]int, error) {
	rows, err := tx.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	m := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		m[k] = n
	}
	return m, rows.Err()
}
