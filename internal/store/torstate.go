package store

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"
)

// settingTorPassword holds the control password torgen hashes into every
// systemd tor instance's torrc and the probe authenticates with.
const settingTorPassword = "tor.control-password"

// settingTorDiscovered is when the last plan was recorded (unix ms): the
// time of the last relay discovery, for the freshness gauge.
const settingTorDiscovered = "tor.discovered"

// TorDiscovered returns when the last tor plan was recorded (zero: never).
func (s *Store) TorDiscovered(ctx context.Context) (time.Time, error) {
	v, ok, err := s.Setting(ctx, settingTorDiscovered)
	if err != nil || !ok {
		return time.Time{}, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("reading setting %s %q: %w", settingTorDiscovered, v, err)
	}
	return time.UnixMilli(n), nil
}

// TorGroup is the SLO guard's state of one tor group, shared by the probe
// (which raises the budget) and torgen (which plans within it).
type TorGroup struct {
	// Budget is how many instances the group may run; 0: the floors'.
	Budget int
	// Unused is how many of the group's slots the last plan left without
	// an instance (exits nobody uses yet): "anything to add?".
	Unused int
	// Planned is how many instances the last plan gave the group; Short
	// how many of its share (floor, tor-instances, budget, or at least
	// one) it went without because tor.max-instances was taken.
	Planned, Short int
	// Usable is how many usable exits the last discovery found for the
	// group, whether or not an instance uses them.
	Usable int
}

// TorGroups returns every tor group's stored state (none: empty).
func (s *Store) TorGroups(ctx context.Context) (map[string]TorGroup, error) {
	rows, err := s.rdb.QueryContext(ctx, "SELECT grp, budget, unused, planned, short, usable FROM tor_groups")
	if err != nil {
		return nil, fmt.Errorf("reading tor groups: %w", err)
	}
	defer rows.Close()
	out := map[string]TorGroup{}
	for rows.Next() {
		var g string
		var t TorGroup
		if err := rows.Scan(&g, &t.Budget, &t.Unused, &t.Planned, &t.Short, &t.Usable); err != nil {
			return nil, fmt.Errorf("reading tor groups: %w", err)
		}
		out[g] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading tor groups: %w", err)
	}
	return out, nil
}

// SetTorBudget stores how many instances group may run.
func (s *Store) SetTorBudget(ctx context.Context, group string, n int) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		_, err := tx.ExecContext(ctx, `INSERT INTO tor_groups (grp, budget, updated) VALUES (?, ?, ?)
			ON CONFLICT (grp) DO UPDATE SET budget = excluded.budget, updated = excluded.updated`, group, n, ms(time.Now()))
		return false, err
	})
	if err != nil {
		return fmt.Errorf("storing tor group %s's budget: %w", group, err)
	}
	return nil
}

// SetTorUnused records the last plan's unused slots per group; a group
// not in unused has none left.
func (s *Store) SetTorUnused(ctx context.Context, unused map[string]int) error {
	plan := make(map[string]TorGroup, len(unused))
	for g, n := range unused {
		plan[g] = TorGroup{Unused: n}
	}
	return s.SetTorPlan(ctx, plan)
}

// SetTorPlan records the last plan per group: its unused slots, planned
// instances and shortfall (each group's Budget is left as it is); a group
// not in plan has none of them.
func (s *Store) SetTorPlan(ctx context.Context, plan map[string]TorGroup) error {
	now := ms(time.Now())
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (bool, error) {
		if _, err := tx.ExecContext(ctx, `UPDATE tor_groups SET unused = 0, planned = 0, short = 0, usable = 0, updated = ?
			WHERE unused != 0 OR planned != 0 OR short != 0 OR usable != 0`, now); err != nil {
			return false, err
		}
		for g, p := range plan {
			if _, err := tx.ExecContext(ctx, `INSERT INTO tor_groups (grp, unused, planned, short, usable, updated) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (grp) DO UPDATE SET unused = excluded.unused, planned = excluded.planned, short = excluded.short,
				usable = excluded.usable, updated = excluded.updated`, g, p.Unused, p.Planned, p.Short, p.Usable, now); err != nil {
				return false, err
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value, updated) VALUES (?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated`, settingTorDiscovered, strconv.FormatInt(now, 10), now)
		return false, err
	})
	if err != nil {
		return fmt.Errorf("storing the tor plan's groups: %w", err)
	}
	return nil
}

// TorControlPassword returns the tor control password, storing
// newPassword() first when there is none; two processes racing agree on
// one. A read-only store without one, or a nil newPassword (a dry run),
// returns "".
func (s *Store) TorControlPassword(ctx context.Context, newPassword func() string) (string, error) {
	if pw, ok, err := s.Setting(ctx, settingTorPassword); err != nil || ok {
		return pw, err
	}
	if s.ReadOnly() || newPassword == nil {
		return "", nil
	}
	return s.SetSettingIfAbsent(ctx, settingTorPassword, newPassword())
}
