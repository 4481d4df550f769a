package source

import (
	"context"
	"errors"
	"sync"

	"github.com/proxypool/proxypool/internal/upstream"
)

// memSink is a small in-memory Sink with the store's semantics (a source's
// set of upstreams is replaced by each UpsertSource; errors keep it), used
// until the real store can be wired in these tests.
type memSink struct {
	mu      sync.Mutex
	meta    map[string]upstream.SourceMeta
	lists   map[string]map[string]upstream.Upstream // source → id → upstream
	upserts map[string]int
	errs    map[string][]error
}

func newMemSink() *memSink {
	return &memSink{
		meta:    map[string]upstream.SourceMeta{},
		lists:   map[string]map[string]upstream.Upstream{},
		upserts: map[string]int{},
		errs:    map[string][]error{},
	}
}

var errNotFound = errors.New("not found")

func (s *memSink) SourceMeta(_ context.Context, name string) (upstream.SourceMeta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.meta[name]
	if !ok {
		return m, errNotFound
	}
	return m, nil
}

func (s *memSink) UpsertSource(_ context.Context, meta upstream.SourceMeta, ups []upstream.Upstream) (upstream.SourceSummary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.lists[meta.Name]
	next := map[string]upstream.Upstream{}
	sum := upstream.SourceSummary{Source: meta.Name}
	for _, u := range ups {
		if _, dup := next[u.ID]; dup {
			continue
		}
		next[u.ID] = u
		if _, ok := old[u.ID]; ok {
			sum.Seen++
		} else {
			sum.New++
		}
	}
	for id := range old {
		if _, ok := next[id]; !ok {
			sum.Gone++
		}
	}
	meta.Total = len(next)
	s.lists[meta.Name] = next
	s.meta[meta.Name] = meta
	s.upserts[meta.Name]++
	return sum, nil
}

func (s *memSink) RecordSourceError(_ context.Context, meta upstream.SourceMeta, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.meta[meta.Name]; ok {
		meta.Total = old.Total
	}
	s.meta[meta.Name] = meta
	s.errs[meta.Name] = append(s.errs[meta.Name], err)
	return nil
}

func (s *memSink) ids(name string) map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]bool{}
	for id := range s.lists[name] {
		out[id] = true
	}
	return out
}

func (s *memSink) upsertCount(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upserts[name]
}

func (s *memSink) errCount(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.errs[name])
}
