package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// ReplaceRelays replaces the stored Tor relay list with relays in one
// transaction.
func (s *Store) ReplaceRelays(ctx context.Context, relays []upstream.Relay) error {
	now := ms(time.Now())
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		if _, err := tx.ExecContext(ctx, "DELETE FROM relays"); err != nil {
			return false, err
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO relays (fingerprint, nickname, address, or_port,
			exit_addrs, country, flags, bandwidth, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (fingerprint) DO UPDATE SET nickname = excluded.nickname, address = excluded.address,
			or_port = excluded.or_port, exit_addrs = excluded.exit_addrs, country = excluded.country,
			flags = excluded.flags, bandwidth = excluded.bandwidth, updated = excluded.updated`)
		if err != nil {
			return false, err
		}
		for i, r := range relays {
			key := r.Fingerprint
			if key == "" {
				// CSV exports carry no fingerprint: the relay is keyed by
				// its OR address, read back without a fingerprint.
				if r.Address == "" {
					return false, fmt.Errorf("relay %d (%s): neither fingerprint nor address", i, r.Nickname)
				}
				key = addrKeyPrefix + net.JoinHostPort(r.Address, strconv.Itoa(r.ORPort))
			}
			exits, _ := json.Marshal(nonNil(r.ExitAddrs))
			flags, _ := json.Marshal(nonNil(r.Flags))
			if _, err := ins.ExecContext(ctx, key, r.Nickname, r.Address, r.ORPort, string(exits), r.Country,
				string(flags), r.Bandwidth, now); err != nil {
				return false, fmt.Errorf("relay %s: %w", key, err)
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("replacing relays: %w", err)
	}
	return nil
}

// addrKeyPrefix marks the key of a relay stored without a fingerprint
// (no fingerprint is 40 hex digits starting with it).
const addrKeyPrefix = "addr:"

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Relays returns the stored Tor relays by fingerprint.
func (s *Store) Relays(ctx context.Context) ([]upstream.Relay, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT fingerprint, nickname, address, or_port, exit_addrs, country, flags,
		bandwidth FROM relays ORDER BY fingerprint`)
	if err != nil {
		return nil, fmt.Errorf("reading relays: %w", err)
	}
	defer rows.Close()
	var out []upstream.Relay
	for rows.Next() {
		var r upstream.Relay
		var exits, flags string
		if err := rows.Scan(&r.Fingerprint, &r.Nickname, &r.Address, &r.ORPort, &exits, &r.Country, &flags, &r.Bandwidth); err != nil {
			return nil, fmt.Errorf("reading relays: %w", err)
		}
		if err := json.Unmarshal([]byte(exits), &r.ExitAddrs); err != nil {
			return nil, fmt.Errorf("relay %s: exit addresses: %w", r.Fingerprint, err)
		}
		if err := json.Unmarshal([]byte(flags), &r.Flags); err != nil {
			return nil, fmt.Errorf("relay %s: flags: %w", r.Fingerprint, err)
		}
		if strings.HasPrefix(r.Fingerprint, addrKeyPrefix) {
			r.Fingerprint = ""
		}
		if len(r.ExitAddrs) == 0 {
			r.ExitAddrs = nil
		}
		if len(r.Flags) == 0 {
			r.Flags = nil
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
