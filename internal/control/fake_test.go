package control

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/proxypool/proxypool/internal/upstream"
)

// fakeManager is a tiny in-memory Manager: plain proxy URIs only.
type fakeManager struct {
	mu      sync.Mutex
	recs    map[string]upstream.Record
	removed map[string]upstream.Record // what Remove took, for Restore
	jobs    int
	// callers are the Callers List found in its context, in call order
	callers []Caller
}

var _ Manager = (*fakeManager)(nil)

func newFake() *fakeManager {
	return &fakeManager{recs: map[string]upstream.Record{}, removed: map[string]upstream.Record{}}
}

func parseURI(s string) (upstream.Upstream, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Host == "" {
		return upstream.Upstream{}, fmt.Errorf("%q is not a proxy URI: %w", s, ErrInvalid)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return upstream.Upstream{}, fmt.Errorf("%q: %v: %w", s, err, ErrInvalid)
	}
	p, _ := strconv.Atoi(port)
	up, err := upstream.New(map[string]any{"type": u.Scheme, "server": host, "port": p})
	if err != nil {
		return upstream.Upstream{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return up, nil
}

func (f *fakeManager) add(uri string, state upstream.State) (string, bool, error) {
	up, err := parseURI(uri)
	if err != nil {
		return "", false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	_, had := f.recs[up.ID]
	if !had {
		f.recs[up.ID] = upstream.Record{Upstream: up, Status: upstream.Status{State: state}}
	}
	return up.ID, !had, nil
}

func (f *fakeManager) List(ctx context.Context, q ListQuery) (ListPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := CallerFrom(ctx); ok {
		f.callers = append(f.callers, c)
	}
	var all []upstream.Record
	for _, r := range f.recs {
		if q.State == "" || r.State == q.State {
			all = append(all, r)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	page := ListPage{Total: len(all)}
	if q.Offset < len(all) {
		page.Records = all[q.Offset:min(len(all), q.Offset+q.Limit)]
	}
	return page, nil
}

func (f *fakeManager) Status(ctx context.Context) (Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := Status{Version: 7, States: map[upstream.State]int{}}
	for _, r := range f.recs {
		st.States[r.State]++
	}
	return st, nil
}

func (f *fakeManager) Add(ctx context.Context, uri string) (string, bool, error) {
	return f.add(uri, upstream.Unknown)
}

func (f *fakeManager) Remove(ctx context.Context, idOrURI string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := idOrURI
	if up, err := parseURI(idOrURI); err == nil && strings.Contains(idOrURI, "://") {
		id = up.ID
	}
	if _, ok := f.recs[id]; !ok {
		return 0, fmt.Errorf("upstream %s: %w", idOrURI, ErrNotFound)
	}
	f.removed[id] = f.recs[id]
	delete(f.recs, id)
	return 1, nil
}

func (f *fakeManager) Import(ctx context.Context, text string) (ImportReport, error) {
	var rep ImportReport
	for i, line := range strings.Split(text, "\n") {
		l := ImportLine{Line: i + 1}
		switch t := strings.TrimSpace(line); {
		case t == "" || strings.HasPrefix(t, "#"):
			l.Skipped = true
			rep.Skipped++
		default:
			id, created, err := f.add(t, upstream.Unknown)
			if err != nil {
				l.Error = err.Error()
				rep.Failed++
			} else {
				l.OK, l.ID, l.New = true, id, created
				rep.OK++
				if created {
					rep.New++
				}
			}
		}
		rep.Lines = append(rep.Lines, l)
	}
	return rep, nil
}

func (f *fakeManager) job(kind string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs++
	return fmt.Sprintf("%s-%d", kind, f.jobs)
}

func (f *fakeManager) Check(ctx context.Context, ids []string) (string, error) {
	return f.job("check"), nil
}
func (f *fakeManager) Refresh(ctx context.Context) (string, error)     { return f.job("refresh"), nil }
func (f *fakeManager) TorGenerate(ctx context.Context) (string, error) { return f.job("torgen"), nil }

func (f *fakeManager) Export(ctx context.Context, format string) ([]byte, error) {
	page, _ := f.List(ctx, ListQuery{State: upstream.Healthy, Limit: MaxListLimit})
	var b strings.Builder
	for _, r := range page.Records {
		b.WriteString(r.Addr() + "\n")
	}
	return []byte(b.String()), nil
}

func (f *fakeManager) TorStatus(ctx context.Context) ([]TorInstance, error) {
	return []TorInstance{{Port: 9060, Group: "us", Unit: "tor@9060.service", State: "active"}}, nil
}

func (f *fakeManager) TorNewnym(ctx context.Context, port int) error {
	if port != 0 && port != 9060 {
		return fmt.Errorf("no tor instance on port %d: %w", port, ErrNotFound)
	}
	return nil
}

func (f *fakeManager) Restore(ctx context.Context, idsOrURIs []string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, id := range idsOrURIs {
		if up, err := parseURI(id); err == nil && strings.Contains(id, "://") {
			id = up.ID
		}
		if r, ok := f.removed[id]; ok {
			f.recs[id] = r
			delete(f.removed, id)
			n++
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("none of %v is removed: %w", idsOrURIs, ErrNotFound)
	}
	return n, nil
}
