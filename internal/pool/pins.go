package pool

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/proxypool/proxypool/internal/upstream"
)

// pin sends a group's requests to one upstream until a time.
type pin struct {
	id    string
	until time.Time
}

// Pin makes every pick for group ("" for the whole pool) take the
// upstream id until ttl passes, while it is servable and fits the
// request; otherwise picks go on as before. id "" unpins. The upstream
// must be a member of the group now (upstream.ErrNoUpstream otherwise).
func (p *Pool) Pin(group, id string, ttl time.Duration) error {
	s := p.snap.Load()
	if id != "" {
		v, known := s.viewFor(group, "")
		if !known {
			return fmt.Errorf("pinning %q: %w %q", group, upstream.ErrUnknownGroup, group)
		}
		i, ok := s.byID[id]
		if !ok || !slices.Contains(v.members, i) {
			return fmt.Errorf("pinning %q to %s: %w among its members", group, id, upstream.ErrNoUpstream)
		}
	}
	p.pinMu.Lock()
	defer p.pinMu.Unlock()
	next := map[string]pin{}
	now := time.Now()
	if old := p.pins.Load(); old != nil {
		for g, pn := range *old {
			if now.Before(pn.until) {
				next[g] = pn
			}
		}
	}
	delete(next, group)
	if id != "" {
		next[group] = pin{id: id, until: now.Add(ttl)}
	}
	if len(next) == 0 {
		p.pins.Store(nil)
		return nil
	}
	p.pins.Store(&next)
	return nil
}

// Pinned returns the upstream group is pinned to and until when, or "".
func (p *Pool) Pinned(group string) (string, time.Time) {
	if m := p.pins.Load(); m != nil {
		if pn, ok := (*m)[group]; ok && time.Now().Before(pn.until) {
			return pn.id, pn.until
		}
	}
	return "", time.Time{}
}

// pinned is the pick a pin makes for sel, -1 for none. A pin costs a
// pick one atomic load while no group is pinned.
func (p *Pool) pinned(s *snapshot, sel *upstream.Selector) int32 {
	m := p.pins.Load()
	if m == nil || sel.Country != "" {
		return -1
	}
	pn, ok := (*m)[sel.Group]
	if !ok || !time.Now().Before(pn.until) {
		return -1
	}
	if i, ok := s.byID[pn.id]; ok && usable(s, i, sel) {
		return i
	}
	return -1
}

// Members returns up to limit IDs of group's servable upstreams ("" for
// the whole pool), lowest latency first, and how many it has in all; ok
// is false for a group neither configured nor carried by an upstream.
func (p *Pool) Members(group string, limit int) (ids []string, total int, ok bool) {
	s := p.snap.Load()
	v, known := s.viewFor(group, "")
	if !known {
		return nil, 0, false
	}
	idx := slices.Clone(v.members)
	slices.SortFunc(idx, func(a, b int32) int {
		return cmp.Or(cmp.Compare(s.entries[a].latency(), s.entries[b].latency()),
			cmp.Compare(s.entries[a].choice.ID, s.entries[b].choice.ID))
	})
	if limit > 0 && len(idx) > limit {
		idx = idx[:limit]
	}
	ids = make([]string, len(idx))
	for k, i := range idx {
		ids[k] = s.entries[i].choice.ID
	}
	return ids, v.n, true
}

// GroupNames are the configured groups, in config order.
func (p *Pool) GroupNames() []string { return slices.Clone(*p.names.Load()) }

// prunePins drops the pins s no longer backs: a group neither configured
// nor carried by an upstream, or an upstream s holds outside its group
// (one s does not hold, being down now, keeps its pin: membership is
// checked again when it is pinned anew).
func (p *Pool) prunePins(s *snapshot) {
	p.pinMu.Lock()
	defer p.pinMu.Unlock()
	old := p.pins.Load()
	if old == nil {
		return
	}
	next := map[string]pin{}
	for g, pn := range *old {
		v, known := s.viewFor(g, "")
		if !known {
			p.log.WithField("GROUP", g).Info("pin dropped: the group is gone")
			continue
		}
		if i, ok := s.byID[pn.id]; ok && !slices.Contains(v.members, i) {
			p.log.WithField("GROUP", g).Infof("pin dropped: %s is no longer a member", pn.id)
			continue
		}
		next[g] = pn
	}
	if len(next) == 0 {
		p.pins.Store(nil)
		return
	}
	p.pins.Store(&next)
}
